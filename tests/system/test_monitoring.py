"""Monitoring: the training reference in the model and its gauges, the Prometheus rules (promtool),
the Kubernetes component and dashboard, and drift detected end to end on a real Prometheus."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from flask.testing import FlaskClient

from harness.live_server import ROOT, LiveServer, live_server
from oncology_model import Classifier
from oncology_model.datamodel import FEATURES
from oncology_model.dataset import load_dataset
from oncology_model.drift import PROBABILITY_BUCKETS, VALUE_LABELS
from oncology_model.integrity import METADATA_FILE
from tests.helpers import scrape
from tests.system.prometheus import (
    PROMTOOL,
    RULES,
    Prometheus,
    ensure_prometheus,
    prometheus,
    short_rules,
)
from webservice import metrics
from webservice.service import Service

RULES_TEST = ROOT / "monitoring" / "rules_test.yaml"
COMPONENT = ROOT / "k8s" / "components" / "monitoring"
DASHBOARD = COMPONENT / "dashboard.json"
PSI_ALERT = 0.2


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def label_value(value: float) -> str:
    return "null" if np.isnan(value) else str(int(value))


# --- the reference, recorded by training and exported by the service ---------------------------


def test_model_records_the_training_distribution(classifier: Classifier) -> None:
    reference = classifier.drift_reference
    assert reference is not None, "retrain: the model has no drift_reference (make train)"
    data = load_dataset()
    assert reference.rows == data.n_rows == 699
    for j, feature in enumerate(FEATURES):
        counts = Counter(label_value(v) for v in data.X[:, j])
        expected = {label: round(counts[label] / 699, 6) for label in VALUE_LABELS}
        assert reference.feature_values[feature] == expected, feature
        assert sum(reference.feature_values[feature].values()) == pytest.approx(1, abs=1e-5)
    assert reference.feature_values["bare_nuclei"]["null"] == round(16 / 699, 6)
    assert reference.malignant_prevalence == round(241 / 699, 6)
    malignant = classifier.malignant_probabilities(data.X)
    predicted = np.mean(classifier.labels(malignant))
    assert reference.predicted_malignant_ratio == pytest.approx(predicted, abs=1e-6)
    assert reference.probability_buckets == PROBABILITY_BUCKETS
    cumulative = [np.mean(malignant <= bound) for bound in PROBABILITY_BUCKETS] + [1.0]
    assert reference.probability_cumulative == pytest.approx(cumulative, abs=1e-6)


def test_metrics_export_the_reference_and_readiness(
    client: FlaskClient, classifier: Classifier
) -> None:
    samples = scrape(client)
    reference = classifier.drift_reference
    assert reference is not None
    for feature in FEATURES:
        for value in VALUE_LABELS:
            name = f'oncology_reference_feature_ratio{{feature="{feature}",value="{value}"}}'
            assert samples[name] == reference.feature_values[feature][value]
            # Received values exist from start-up, at zero if none came: drift sees what's missing.
            received = f'oncology_feature_values_total{{feature="{feature}",value="{value}"}}'
            assert received in samples
    assert samples["oncology_reference_malignant_prevalence"] == reference.malignant_prevalence
    predicted = samples["oncology_reference_predicted_malignant_ratio"]
    assert predicted == reference.predicted_malignant_ratio
    assert samples["oncology_ready"] == 1

    def les(prefix: str) -> dict[str, float]:
        return {
            name.split('le="')[1].split('"')[0]: value
            for name, value in samples.items()
            if name.startswith(prefix)
        }

    reference_buckets = les("oncology_reference_malignant_probability_bucket_ratio{")
    # The same `le` labels as the live histogram, so that Prometheus can compare them bucket by
    # bucket.
    assert set(reference_buckets) == set(les("oncology_malignant_probability_bucket{"))
    assert reference_buckets["+Inf"] == 1.0
    assert list(reference_buckets.values()) == list(reference.probability_cumulative)


def test_a_worker_without_a_model_reports_not_ready(tmp_path: Path, app: Any) -> None:
    try:
        Service(artifacts_dir=str(tmp_path))
        assert metrics.READY._value.get() == 0
    finally:
        metrics.record_ready(app.extensions["oncology"].ready)


def test_a_model_without_reference_serves_and_says_drift_is_not_monitored(
    artifacts_copy: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = artifacts_copy / METADATA_FILE
    metadata = json.loads(path.read_text())
    del metadata["drift_reference"]
    path.write_text(json.dumps(metadata))
    capfd.readouterr()
    service = Service(artifacts_dir=str(artifacts_copy))
    assert service.ready
    warning = capfd.readouterr().out
    assert "has no drift reference" in warning and "retrain" in warning


# --- the rules, with Prometheus's own tool ------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    ensure_prometheus()
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for rule in alert_rules():
        name = rule["alert"]
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == name}
        assert outcomes == {True, False}, f"{name}: tested firing and not firing"


def test_every_alert_has_its_runbook_in_the_monitoring_page() -> None:
    """Each alert's `runbook_url` is its own section of the docs' monitoring page, saying when
    it fires and what to do (the built site's anchors: tests/system/test_docs.py)."""
    page = (ROOT / "docs" / "monitoring.md").read_text()
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"monitoring/#{name.lower()}", name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        section = page.split(f"\n### {name}\n", 1)[1].split("\n#", 1)[0]
        assert "**When:**" in section and "**What to do:**" in section, name


def test_short_rules_change_only_windows_and_durations() -> None:
    source = RULES.read_text()
    original = yaml.safe_load(source)
    short = yaml.safe_load(short_rules(source, window="8s", hold="2s"))
    pairs = [
        (a, b)
        for g1, g2 in zip(original["groups"], short["groups"], strict=True)
        for a, b in zip(g1["rules"], g2["rules"], strict=True)
    ]
    assert any("[1h]" in a["expr"] for a, _ in pairs)
    for a, b in pairs:
        assert b["expr"] == re.sub(r"\[\d+[smhdwy]\]", "[8s]", a["expr"])
        assert {k: v for k, v in a.items() if k not in ("expr", "for")} == {
            k: v for k, v in b.items() if k not in ("expr", "for")
        }
        assert b.get("for") == ("2s" if "for" in a else None)


# --- the Kubernetes component -------------------------------------------------------------------


def kubectl_kustomize(directory: Path) -> list[dict[str, Any]]:
    output = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return list(yaml.safe_load_all(output))


def test_prometheus_rule_holds_the_same_rules() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "ops.prometheus_rule", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert generated.returncode == 0, generated.stdout
    rule = yaml.safe_load((COMPONENT / "prometheus-rule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_component_adds_monitoring_to_the_service_stack(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    # kustomize takes relative paths only.
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(ROOT / "k8s", overlay)],
                "components": [os.path.relpath(COMPONENT, overlay)],
            }
        )
    )
    documents = {d["kind"]: d for d in kubectl_kustomize(overlay)}
    assert {"Deployment", "Service", "PodMonitor", "PrometheusRule", "ConfigMap"} <= set(documents)
    assert {d["kind"] for d in kubectl_kustomize(COMPONENT)} == {
        "PodMonitor",
        "PrometheusRule",
        "ConfigMap",
    }

    pod = documents["Deployment"]["spec"]["template"]
    monitor = documents["PodMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {port["name"] for port in pod["spec"]["containers"][0]["ports"]}
    assert [e["port"] for e in monitor["podMetricsEndpoints"]] == ["http"] and "http" in ports
    assert monitor["podMetricsEndpoints"][0]["path"] == "/metrics"
    # The pods protect /metrics with their metrics tokens file: Prometheus must send a token.
    env = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert "ONCOLOGY_METRICS_TOKENS_FILE" in env
    assert monitor["podMetricsEndpoints"][0]["authorization"]["type"] == "Bearer"
    # The job name the rules select (`up{job="oncology-webservice"}`) is the pods' jobLabel.
    assert pod["metadata"]["labels"][monitor["jobLabel"]] == "oncology-webservice"
    assert 'job="oncology-webservice"' in RULES.read_text()

    dashboard = documents["ConfigMap"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = dashboard["data"].values()
    assert json.loads(content) == json.loads(DASHBOARD.read_text())


def test_dashboard_shows_what_operators_need() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = " ".join(dashboard_queries())
    for metric in (
        "oncology_http_requests_total",  # requests
        "oncology:http_request_duration_seconds:p99",  # latency
        "oncology:http_requests:server_error_ratio",  # errors
        "oncology_predictions_total",  # diagnoses by class
        "oncology_malignant_probability_bucket",  # probability histogram
        "oncology:feature:psi",  # drift per feature
        "oncology_model_info",  # model version per pod
        "oncology_prediction_records_dropped_total",  # answers not on record
        "oncology_prediction_records_pending",  # the record's buffers
        "oncology:sensitivity:ratio7d",  # realized quality by track
        "oncology:estimated_sensitivity:ratio1h",  # estimated quality (CBPE)
    ):
        assert metric in queries, metric
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]


# --- end to end: the service, a real Prometheus, drift on one feature ----------------------------

WINDOW = "8s"  # instead of 1h and 5m
HOLD = "2s"  # instead of each alert's `for:`
SHIFTED = "clump_thickness"


def as_tumor(row: np.ndarray) -> dict[str, int | None]:
    return {
        name: None if np.isnan(value) else int(value)
        for name, value in zip(FEATURES, row, strict=True)
    }


class Traffic:
    """Batches of training rows sent to the service in a thread, shifted on one feature on
    demand, with a single prediction and a contract error now and then."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        data = load_dataset()
        self.rows, self.labels = data.X, data.y
        self.shift = False
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def post(self, path: str, body: Any) -> int:
        request = urllib.request.Request(
            self.server.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                self.answer = json.loads(response.read())
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError as error:
            self.errors.append(f"{path}: {error}")
            return 0

    def run(self) -> None:
        random = np.random.default_rng(11)
        column = FEATURES.index(SHIFTED)
        sent = 0
        while not self.stop.is_set():
            chosen = random.integers(0, len(self.rows), 25)
            rows = self.rows[chosen].copy()
            if self.shift:  # a lab that scores clump thickness 4 points higher
                rows[:, column] = np.minimum(rows[:, column] + 4, 10)
            tumors = [as_tumor(row) for row in rows]
            statuses = [self.post("/v1/predictions/batch", {"tumors": tumors})]
            sent += 1
            if sent % 5 == 0 and statuses[0] == 200:  # their confirmed outcomes: the UCI labels
                outcomes = [
                    {
                        "prediction_id": answer["prediction_id"],
                        "source": "UCI label",
                        "outcome": "malignant" if self.labels[i] else "benign",
                    }
                    for answer, i in zip(self.answer["predictions"], chosen, strict=True)
                ]
                statuses.append(self.post("/v1/outcomes", {"outcomes": outcomes}))
            if sent % 10 == 0:
                statuses.append(self.post("/v1/predictions", tumors[0]))
            if sent % 20 == 0:
                statuses.append(self.post("/v1/predictions", {**tumors[0], "mitoses": 11}))
            self.errors += [f"status {s}" for s in statuses if s not in (0, 200, 422)]
            time.sleep(0.02)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)


def eventually(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    """The first truthy result of `check`, polled until `timeout`."""
    started = time.monotonic()
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Prometheus]]:
    root = tmp_path_factory.mktemp("monitoring")
    rules = short_rules(RULES.read_text(), window=WINDOW, hold=HOLD)
    with (
        live_server(root) as server,
        prometheus(root / "prometheus", target=f"127.0.0.1:{server.port}", rules=rules) as prom,
    ):
        yield server, prom


@pytest.mark.slow
def test_drift_on_one_feature_is_detected_and_alerted(
    monitored: tuple[LiveServer, Prometheus],
) -> None:
    server, prom = monitored

    def page_once_all_ready() -> str:
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
            page = str(response.read().decode())
        return page if "oncology_ready 1.0" in page else ""

    # /readyz answered once one worker was ready; on a loaded machine the other may still be
    # loading its model (oncology_ready is the minimum over the workers, 0 until all are ready).
    page = eventually(page_once_all_ready, what="every worker ready")
    # Before any prediction, every worker's series are there at zero (all workers combined).
    for feature in FEATURES:
        for value in VALUE_LABELS:
            series = f'oncology_feature_values_total{{feature="{feature}",value="{value}"}} 0.0'
            assert series in page
    for prediction in ("benign", "malignant"):
        assert f'oncology_predictions_total{{prediction="{prediction}"}} 0.0' in page
    for bound in ("0.01", "0.5", "+Inf"):
        assert f'oncology_malignant_probability_bucket{{le="{bound}"}} 0.0' in page

    with Traffic(server) as traffic:
        # Training-like traffic: every feature's PSI is low once the window holds enough tumors
        # (on a few hundred, sampling noise alone reaches a PSI of about 0.05).
        def psi_when_enough() -> dict[str, float] | None:
            volume = prom.values("oncology:predictions:increase", "")
            psi = prom.values("oncology:feature:psi", "feature")
            return psi if volume.get("", 0) >= 1000 and len(psi) == len(FEATURES) else None

        steady = eventually(psi_when_enough, what="PSI of all nine features")
        assert max(steady.values()) < 0.1, steady

        def psi_when_drifted() -> dict[str, float] | None:
            psi = prom.values("oncology:feature:psi", "feature")
            return psi if psi.get(SHIFTED, 0) > PSI_ALERT else None

        traffic.shift = True
        shifted = eventually(psi_when_drifted, what=f"PSI of {SHIFTED} above {PSI_ALERT}")
        others = {k: v for k, v in shifted.items() if k != SHIFTED}
        assert len(others) == len(FEATURES) - 1 and max(others.values()) < 0.1, shifted

        def drift_alerts() -> list[dict[str, Any]]:
            return [a for a in prom.alerts() if a["labels"]["alertname"] == "FeatureDrift"]

        raised = eventually(drift_alerts, what="FeatureDrift pending or firing")
        assert [a["labels"]["feature"] for a in raised] == [SHIFTED]
        assert raised[0]["state"] in ("pending", "firing")
        assert raised[0]["annotations"]["runbook_url"] == "monitoring/#featuredrift"

        active = {a["labels"]["alertname"] for a in prom.alerts()}
        assert not active & {"NoReadyPod", "High5xxRatio", "MultipleModelVersions"}, active
        assert prom.values("oncology:ready_pods:count", "") == {"": 1.0}
        assert 0 < prom.values("oncology:malignant_probability:ks_distance", "")[""] <= 1

        # Every dashboard query parses and returns data from this Prometheus.
        empty = [expr for expr in dashboard_queries() if not prom.query(expr)]
        assert not empty, empty
    assert not traffic.errors, traffic.errors[:5]
