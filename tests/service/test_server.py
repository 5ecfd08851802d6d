"""The real gunicorn server on loopback: readiness, predictions, and the 413 a client receives."""

from __future__ import annotations

import json
import runpy
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http import message

from harness.live_server import LiveServer, live_server
from tests.helpers import MALIGNANT_JSON, SEED_JSON

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("gunicorn")) as running:
        yield running


def post(server: LiveServer, path: str, payload: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.url + path,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_serves_single_and_batch_predictions(server: LiveServer) -> None:
    status, body = post(server, "/v1/predictions", SEED_JSON)
    assert status == 200 and body["prediction"] == "benign"
    status, body = post(server, "/v1/predictions/batch", {"tumors": [SEED_JSON, MALIGNANT_JSON]})
    assert status == 200
    assert [p["prediction"] for p in body["predictions"]] == ["benign", "malignant"]


def test_probes_and_docs(server: LiveServer) -> None:
    assert server.status("/healthz") == 200
    assert server.status("/readyz") == 200
    assert server.status("/docs") == 200
    assert server.status("/swagger.json") == 200
    assert server.status("/nowhere") == 404


def raw_post(server: LiveServer, length: int, body: bytes | None) -> bytes:
    """Send headers declaring `length` bytes, then `body` (all of it first) or nothing."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as connection:
        connection.sendall(
            b"POST /v1/predictions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % length
        )
        if body is not None:
            connection.sendall(body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def test_413_reaches_a_client_that_sends_the_whole_body_first(server: LiveServer) -> None:
    size = 20 * 1024 * 1024
    answer = raw_post(server, size, b"x" * size)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"application/problem+json" in answer
    assert b'"status":413' in answer


def test_413_reaches_a_client_waiting_for_an_early_answer(server: LiveServer) -> None:
    answer = raw_post(server, 50 * 1024 * 1024, None)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"4194304" in answer


def test_a_chunked_body_over_the_limit_is_told_it_is_larger_than_the_limit(
    server: LiveServer,
) -> None:
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(
            b"POST /v1/predictions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 80
            + b"0\r\n\r\n"
        )
        answer = b""
        while part := connection.recv(65536):
            answer += part
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"detail":"The body is larger than the limit of 4194304 bytes."' in answer


def test_served_configuration_parses_headers_in_c() -> None:
    """gunicorn.conf.py with the locked packages takes gunicorn's C parser (gunicorn_h1c), not
    the pure-Python one it falls back to silently when the module is missing or a setting
    rules it out."""
    settings = runpy.run_path(str(Path(__file__).parents[2] / "gunicorn.conf.py"))
    config = Config()
    for name, value in settings.items():
        if name in config.settings:
            config.set(name, value)
    assert message._check_fast_parser(config) is True


def test_server_stops_cleanly_by_pid(tmp_path: Path) -> None:
    with live_server(tmp_path, workers=1) as running:
        assert running.status("/readyz") == 200
        code = running.stop()
    assert code == 0


def test_metrics_add_up_across_workers(tmp_path: Path) -> None:
    """prometheus multiprocess mode: /metrics counts what every worker answered."""
    with live_server(tmp_path, workers=2) as running:
        workers = set()
        for _ in range(40):
            request = urllib.request.Request(
                running.url + "/v1/predictions",
                data=json.dumps(MALIGNANT_JSON).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
        time.sleep(1.5)  # each worker flushes its prediction tallies within a second
        with urllib.request.urlopen(running.url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith("oncology_model_info{"):
                workers.add(int(line.split('pid="')[1].split('"')[0]))
        # Every process serving the model: gunicorn's two workers and the gRPC process.
        serving = {*running.workers(), *running.grpc_pids()}
    requests = (
        'oncology_http_requests_total{caller="anonymous",endpoint="/v1/predictions",'
        'method="POST",status="200"}'
    )
    assert f"{requests} 40.0" in text
    assert 'oncology_predictions_total{prediction="malignant"} 40.0' in text
    assert 'oncology_feature_values_total{feature="mitoses",value="10"} 40.0' in text
    assert len(serving) == 3 and workers == serving
