"""Is it right? The whole loop on real servers: PostgreSQL holding the record, a stable and a
canary service writing into it, the real Prometheus scraping both, the terminal commands.

The canary serves a model that misses cancers: trained on the bundled rows with the malignant ones
of clump thickness below 7 labelled benign (a lab whose protocol hid them). It passes every check
serving makes (hashes, the seed tumor's self-check); only outcomes show what is wrong with it. The
699 bundled rows go to each track as cases, their known classes come back as outcomes, and:
the quality report gives exactly the confusion counts computed here, with intervals equal to
scipy's; the verdict is WAIT on a few outcomes and ROLL BACK on all; Prometheus shows each track's
sensitivity and SensitivityBelowValidation goes pending for the canary alone; the stable track's
confirmed cases, exported, train a model the release gate accepts, and its metadata names the
export's manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import binomtest

from harness.live_server import ROOT, LiveServer, live_server
from harness.postgres import running_postgres
from oncology_model.datamodel import FEATURES
from oncology_model.dataset import bundled_data_path, load_dataset
from tests.system.prometheus import RULES, prometheus, short_rules
from tests.system.test_monitoring import eventually

FEW = 20  # cases per track before the first look: too few to judge either way


def missing_cancers_model(work: Path) -> Path:
    """A model trained to call the malignant tumors of clump thickness below 7 benign."""
    lines = []
    for line in bundled_data_path().read_text().splitlines():
        cells = line.split(",")
        if cells[-1] == "4" and int(cells[1]) < 7:
            cells[-1] = "2"
        lines.append(",".join(cells))
    data = work / "missing-cancers.data"
    data.write_text("\n".join(lines) + "\n")
    return train(work / "missing-cancers", data)


def train(out: Path, data: Path) -> Path:
    run("oncology_model.training_cli", "--data", str(data), "--out", str(out), "--no-report",
        "--candidates", "logistic_regression")  # fmt: skip
    return out


def run(module: str, *args: str, env: dict[str, str] | None = None, code: int = 0) -> str:
    """`python -m module args`; its standard output, after checking its exit code."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == code, f"{module} {args}: exit {done.returncode}\n{done.stderr}"
    return done.stdout + done.stderr


def call(server: LiveServer, path: str, body: Any | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # nosec B310: loopback
        return json.loads(response.read())


def as_tumors(rows: np.ndarray) -> list[dict[str, int | None]]:
    return [
        {name: None if np.isnan(v) else int(v) for name, v in zip(FEATURES, row, strict=True)}
        for row in rows
    ]


def send_cases_and_outcomes(server: LiveServer, rows: np.ndarray, truth: np.ndarray) -> list[bool]:
    """The rows as cases, then their classes as outcomes; what the service called malignant."""
    answers = call(server, "/v1/predictions/batch", {"tumors": as_tumors(rows)})["predictions"]
    outcomes = [
        {
            "prediction_id": answer["prediction_id"],
            "outcome": "malignant" if malignant else "benign",
            "source": "histology",
        }
        for answer, malignant in zip(answers, truth, strict=True)
    ]
    summary = call(server, "/v1/outcomes", {"outcomes": outcomes})["summary"]
    assert summary["applied"] == len(rows), summary
    return [answer["prediction"] == "malignant" for answer in answers]


def confusion(called: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    return {
        "tp": int((called & truth).sum()),
        "fp": int((called & ~truth).sum()),
        "fn": int((~called & truth).sum()),
        "tn": int((~called & ~truth).sum()),
    }


def assert_wilson_as_scipy(figure: dict[str, Any], k: int, n: int) -> None:
    reference = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert figure["value"] == pytest.approx(k / n)
    assert (figure["low"], figure["high"]) == pytest.approx(
        (reference.low, reference.high), abs=1e-9
    )


@pytest.mark.slow
def test_outcomes_judge_the_canary_and_confirmed_cases_train_the_next_model(
    tmp_path: Path,
) -> None:
    data = load_dataset()
    truth = data.y.astype(bool)
    degraded = missing_cancers_model(tmp_path)
    rules = short_rules(RULES.read_text(), window="2m", hold="1s")
    with running_postgres() as database:
        record = {"ONCOLOGY_DATABASE_URL": database.url}
        (tmp_path / "stable").mkdir()
        (tmp_path / "canary").mkdir()
        with (
            live_server(tmp_path / "stable", env={**record, "ONCOLOGY_TRACK": "stable"}) as stable,
            live_server(
                tmp_path / "canary",
                env={**record, "ONCOLOGY_TRACK": "canary", "ONCOLOGY_ARTIFACTS_DIR": str(degraded)},
            ) as canary,
            prometheus(
                tmp_path / "prom",
                target=[f"127.0.0.1:{stable.port}", f"127.0.0.1:{canary.port}"],
                rules=rules,
            ) as prom,
        ):
            servers = {"stable": stable, "canary": canary}
            # Prometheus counts an increase from a series' first sample: let it see them at zero.
            eventually(
                lambda: len(prom.values("oncology_confirmed_cases_total", "track")) == 2,
                what="both tracks' confirmed-case series",
            )
            called = {
                track: send_cases_and_outcomes(server, data.X[:FEW], truth[:FEW])
                for track, server in servers.items()
            }
            early = run("webservice.records.quality_cli", "compare", env=record, code=3)
            assert "WAIT" in early and "needed: candidate" in early, early

            for track, server in servers.items():
                called[track] += send_cases_and_outcomes(server, data.X[FEW:], truth[FEW:])
            expected = {track: confusion(np.array(c), truth) for track, c in called.items()}
            assert expected["canary"]["fn"] > 3 * expected["stable"]["fn"]  # it misses cancers

            report = call(stable, "/v1/quality")
            on_terminal = json.loads(run("webservice.records.quality_cli", "--json", env=record))
            for groups in (report["groups"], on_terminal["groups"]):
                assert {group["track"]: group["confusion"] for group in groups} == expected
            for group in report["groups"]:
                counts = expected[group["track"]]
                tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
                realized = group["realized"]
                assert_wilson_as_scipy(realized["sensitivity"], tp, tp + fn)
                assert_wilson_as_scipy(realized["specificity"], tn, tn + fp)
                assert_wilson_as_scipy(realized["ppv"], tp, tp + fp)
                assert_wilson_as_scipy(realized["npv"], tn, tn + fn)
            verdict = run("webservice.records.quality_cli", "compare", env=record, code=4)
            assert "ROLL BACK" in verdict, verdict

            wanted = {
                track: counts["tp"] / (counts["tp"] + counts["fn"])
                for track, counts in expected.items()
            }

            def sensitivity_of_both() -> dict[str, float]:
                # Once every outcome is scraped: the rule's ratio of increases (extrapolated alike).
                found = prom.values("oncology:sensitivity:ratio7d", "track")
                close = found.keys() == wanted.keys() and all(
                    found[track] == pytest.approx(value, abs=0.005)
                    for track, value in wanted.items()
                )
                return found if close else {}

            eventually(sensitivity_of_both, what=f"each track's sensitivity: {wanted}")

            def raised() -> list[dict[str, Any]]:
                return [
                    alert
                    for alert in prom.alerts()
                    if alert["labels"]["alertname"] == "SensitivityBelowValidation"
                ]

            alerts = eventually(raised, what="SensitivityBelowValidation pending or firing")
            assert [alert["labels"]["track"] for alert in alerts] == ["canary"]

        # The stable track's confirmed cases back into training, through the release gate.
        (tmp_path / "cases").mkdir()
        cases = tmp_path / "cases" / "cases.csv"
        said = run(
            "webservice.records.cases", "export", "--track", "stable", "-o", str(cases), env=record
        )
        assert "exported 699 confirmed cases (458 benign, 241 malignant)" in said
    manifest = json.loads((tmp_path / "cases" / "cases.csv.manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(cases.read_bytes()).hexdigest()
    assert manifest["rows_per_class"] == {"benign": 458, "malignant": 241}
    assert manifest["query"]["track"] == "stable"
    exported = load_dataset(path=cases)
    assert np.array_equal(exported.X, data.X, equal_nan=True)  # as sent, in the order answered
    assert np.array_equal(exported.y, data.y)

    retrained = train(tmp_path / "retrained", tmp_path / "cases")  # the folder: manifest skipped
    metadata = json.loads((retrained / "metadata.json").read_text())
    assert metadata["training_data"]["manifests"] == [manifest]
    gate = run(
        "oncology_model.compare",
        "--candidate",
        str(retrained),
        "--holdout",
        str(cases),  # the gate reads the export too (both models saw these rows: optimistic)
        "--json",
        str(tmp_path / "gate.json"),
    )
    assert "ACCEPTED" in gate, gate
