"""What operators see: request ids, one JSON log line per request, Prometheus metrics."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from harness.live_server import access_records
from tests.helpers import MALIGNANT_JSON, SEED_JSON, delta, log_lines, scrape


def test_request_id_is_echoed_when_valid(client: FlaskClient) -> None:
    response = client.post("/v1/predictions", json=SEED_JSON, headers={"X-Request-ID": "abc-123.x"})
    assert response.headers["X-Request-ID"] == "abc-123.x"


@pytest.mark.parametrize("given", [None, "", "has spaces", "x" * 129, "tab\tin", '"quoted"', "ü"])
def test_request_id_is_generated_when_missing_or_invalid(
    client: FlaskClient, given: str | None
) -> None:
    headers = {"X-Request-ID": given} if given is not None else {}
    response = client.post("/v1/predictions", json=SEED_JSON, headers=headers)
    assigned = response.headers["X-Request-ID"]
    assert assigned != given and re.fullmatch(r"[0-9a-f]{24}", assigned)


def test_request_id_is_on_every_error(client: FlaskClient, app: Flask) -> None:
    answers = [
        client.post("/v1/predictions", json={"mitoses": 1}),
        client.get("/nowhere"),
        client.get("/v1/predictions"),
        client.post("/v1/predictions", data="x", content_type="text/plain"),
        client.post("/v1/predictions", data=b"{" * 10, content_type="application/json"),
    ]
    assert [a.status_code for a in answers] == [422, 404, 405, 415, 400]
    assert all(a.headers.get("X-Request-ID") for a in answers)
    small = Flask.test_client(app)  # same app; 413 comes from the middleware before Flask
    big = small.post(
        "/v1/predictions",
        data=b" " * (app.config["MAX_BODY_BYTES"] + 1),
        content_type="application/json",
    )
    assert big.status_code == 413 and big.headers.get("X-Request-ID")


def test_one_json_log_line_per_request_without_tumor_values(
    client: FlaskClient, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    client.post(
        "/v1/predictions", json={**SEED_JSON, "clump_thickness": 7}, headers={"X-Request-ID": "r-1"}
    )
    lines = log_lines(capfd.readouterr().out)
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "r-1"
    assert line["method"] == "POST" and line["path"] == "/v1/predictions" and line["status"] == 200
    assert line["duration_ms"] > 0
    assert line["model_version"].startswith("1.0.0+")
    assert "clump_thickness" not in json.dumps(line)


def test_a_path_with_unicode_line_separators_stays_one_log_line(
    client: FlaskClient, capfd: pytest.CaptureFixture[str]
) -> None:
    """A client's path may carry U+0085 or U+2028, which JSON leaves unescaped and which
    `str.splitlines` would break a record at: the record still ends at its newline only."""
    capfd.readouterr()
    client.get("/v2/models/%C2%85x%E2%80%A8y")
    output = capfd.readouterr().out
    (record,) = access_records(output)
    assert record["path"].startswith("/v2/models/") and record["path"].endswith("y")
    assert len(output.splitlines()) > len(output.split("\n")) - 1  # splitlines would break it


def test_error_logs_carry_the_request_id(
    app: Flask, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["oncology"], "predictions", explode)
    capfd.readouterr()
    app.test_client().post("/v1/predictions", json=SEED_JSON, headers={"X-Request-ID": "r-500"})
    lines = log_lines(capfd.readouterr().out)
    assert {line.get("request_id") for line in lines} == {"r-500"}
    error = next(line for line in lines if line.get("level") == "error")
    assert "RuntimeError: boom" in error["exception"]


def test_metrics_count_requests_predictions_and_values(client: FlaskClient) -> None:
    before = scrape(client)
    client.post("/v1/predictions", json={**SEED_JSON, "bare_nuclei": None})
    client.post("/v1/predictions/batch", json={"tumors": [MALIGNANT_JSON] * 3})
    client.post("/v1/predictions", json={**SEED_JSON, "mitoses": 11, "mitosis": 1})
    after = scrape(client)
    requests = (
        'oncology_http_requests_total{caller="anonymous",endpoint="/v1/predictions",'
        'method="POST",status="%s"}'
    )
    assert delta(before, after, requests % "200") == 1
    assert delta(before, after, requests % "422") == 1
    assert delta(before, after, 'oncology_predictions_total{prediction="benign"}') == 1
    assert delta(before, after, 'oncology_predictions_total{prediction="malignant"}') == 3
    assert delta(before, after, "oncology_malignant_probability_count") == 4
    assert (
        delta(before, after, 'oncology_feature_values_total{feature="bare_nuclei",value="null"}')
        == 1
    )
    assert delta(before, after, 'oncology_feature_values_total{feature="mitoses",value="10"}') == 3
    assert delta(before, after, 'oncology_rejected_values_total{field="mitoses"}') == 1
    assert delta(before, after, 'oncology_rejected_values_total{field="unknown_field"}') == 1
    assert delta(before, after, "oncology_batch_size_count") == 1
    assert delta(before, after, 'oncology_batch_size_bucket{le="10.0"}') == 1
    latency = (
        'oncology_http_request_duration_seconds_count{endpoint="/v1/predictions",status="200"}'
    )
    assert delta(before, after, latency) == 1


def test_model_info_names_version_and_hash(client: FlaskClient, app: Flask) -> None:
    samples = scrape(client)
    service = app.extensions["oncology"]
    info = [name for name in samples if name.startswith("oncology_model_info{")]
    assert len(info) == 1
    assert f'version="{service.model_version}"' in info[0]
    assert 'onnx_sha256="' + service.card["artifacts"]["model.onnx"] + '"' in info[0]


def test_unknown_paths_share_one_label(client: FlaskClient) -> None:
    for path in ("/a", "/b", "/c/d"):
        client.get(path)
    samples = scrape(client)
    assert not any('endpoint="/a"' in name for name in samples)
    assert any('endpoint="other"' in name for name in samples)


def test_vectorised_histogram_equals_observe_one_by_one() -> None:
    import numpy as np
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from webservice.tally import _observe_many

    bounds = (0.1, 0.5, 0.9)
    one, many = CollectorRegistry(), CollectorRegistry()
    h_one = Histogram("h", "h", buckets=bounds, registry=one)
    h_many = Histogram("h", "h", buckets=bounds, registry=many)
    values = np.array([0.0, 0.1, 0.10001, 0.5, 0.7, 0.9, 0.95, 1.0])
    for value in values:
        h_one.observe(float(value))
    _observe_many(h_many, values)

    def buckets(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if "_bucket" in line or "_count" in line]

    assert buckets(one) == buckets(many)


def test_sigterm_turns_readiness_off_at_once_but_answers_in_flight_work(app: Flask) -> None:
    """gunicorn.conf.py's post_worker_init: SIGTERM marks the service as shutting down."""
    import runpy
    import signal
    from pathlib import Path
    from types import SimpleNamespace

    config = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
    calls: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    service = app.extensions["oncology"]
    try:
        config["post_worker_init"](SimpleNamespace(wsgi=app))
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        signal.raise_signal(signal.SIGTERM)
        assert calls == [signal.SIGTERM]  # gunicorn's own handler still runs
        assert client.get("/readyz").status_code == 503
        assert client.post("/v1/predictions", json=SEED_JSON).status_code == 200
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.shutting_down = False


def test_tally_joins_pending_requests_in_bounded_chunks() -> None:
    import numpy as np

    from webservice.tally import JOIN_ROWS, _joined

    sizes = [1, 3, JOIN_ROWS - 2, 5, 2 * JOIN_ROWS, 1]
    pending = [
        (np.full((n, 9), float(i)), np.full(n, 0.1), np.zeros(n, dtype=bool))
        for i, n in enumerate(sizes)
    ]
    chunks = list(_joined(pending))
    assert sum(len(rows) for rows, _, _ in chunks) == sum(sizes)
    assert all(len(rows) <= JOIN_ROWS or len(rows) == 2 * JOIN_ROWS for rows, _, _ in chunks)
    joined_rows = np.concatenate([rows for rows, _, _ in chunks])
    np.testing.assert_array_equal(joined_rows, np.concatenate([rows for rows, _, _ in pending]))
