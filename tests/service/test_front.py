"""The front (nginx before gunicorn, `webservice.serve`): slow clients never hold a worker, and
what the front answers itself is bounded, answered in the service's shapes, logged and counted."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.live_server import ROOT, LiveServer, live_server
from ops.loopback import free_port
from tests.helpers import SEED_JSON

pytestmark = pytest.mark.slow

PREDICTION = json.dumps(SEED_JSON).encode()
HEAD = b"POST /v1/predictions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"


def predict(server: LiveServer, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """One ordinary prediction on a new connection: status, headers, body."""
    request = urllib.request.Request(
        server.url + "/v1/predictions",
        PREDICTION,
        {"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def front_answers(server: LiveServer) -> dict[str, float]:
    """`oncology_front_answers_total` by reason, from /metrics."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("oncology_front_answers_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts


def counted_front_answers(server: LiveServer, reason: str, expected: float) -> float:
    """`front_answers(server)[reason]` once it reaches `expected` (or after 5 s): nginx logs an
    answer just after sending it, and the launcher counts the line after that."""
    deadline = time.monotonic() + 5
    while (count := front_answers(server).get(reason, 0)) < expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return count


def front_lines(server: LiveServer) -> list[dict]:
    return [
        json.loads(line)
        for line in server.log.read_text().splitlines()
        if line.startswith("{") and '"event":"front"' in line
    ]


def closed_within(connection: socket.socket, seconds: float) -> bool:
    """Whether the server closes `connection` (EOF or reset) within `seconds`."""
    connection.settimeout(seconds)
    try:
        while connection.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = {"ONCOLOGY_HEADER_TIMEOUT": "2", "ONCOLOGY_BODY_TIMEOUT": "2"}
    with live_server(tmp_path_factory.mktemp("front"), workers=2, env=settings) as running:
        yield running


def test_slow_clients_hold_no_worker(server: LiveServer) -> None:
    """Eight clients (four times the workers) dripping their headers, eight their bodies: every
    ordinary prediction meanwhile is answered, as gunicorn alone could not (each slow client
    held a worker until it finished)."""
    stop = threading.Event()

    def drip(head: bytes, piece: bytes) -> None:
        with socket.create_connection(("127.0.0.1", server.port)) as connection:
            connection.sendall(head)
            while not stop.wait(0.5):
                try:
                    connection.sendall(piece)
                except OSError:
                    return

    body_head = HEAD + b"Content-Length: 100000\r\n\r\n"
    drippers = [
        threading.Thread(target=drip, args=(HEAD, b"X-Slow: 1\r\n"), daemon=True) for _ in range(8)
    ] + [threading.Thread(target=drip, args=(body_head, b" "), daemon=True) for _ in range(8)]
    for dripper in drippers:
        dripper.start()
    time.sleep(0.5)
    try:
        statuses = [predict(server)[0] for _ in range(20)]
    finally:
        stop.set()
    assert statuses == [200] * 20


def test_a_client_too_slow_with_its_headers_is_cut_off_logged_and_counted(
    server: LiveServer,
) -> None:
    before = front_answers(server).get("timeout", 0)
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(HEAD)  # and never the blank line that ends the headers
        assert closed_within(connection, 10)
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(HEAD + b"Content-Length: 1000\r\n\r\n" + b"{" * 10)  # then stalls
        assert closed_within(connection, 10)
    assert counted_front_answers(server, "timeout", before + 2) == before + 2
    timeouts = [line for line in front_lines(server) if line["reason"] == "timeout"]
    assert timeouts and timeouts[-1]["status"] == 408
    assert timeouts[-1]["path"] == "/v1/predictions"


def test_too_large_a_body_is_refused_before_it_is_read_in_the_services_shape(
    server: LiveServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(
            HEAD + b"Content-Length: 50000000\r\nX-Request-ID: my-case-7\r\n\r\n"
        )  # nothing of the body is sent: the answer comes anyway
        answer = b""
        while part := connection.recv(65536):
            answer += part
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"Content-Type: application/problem+json" in head
    assert b"X-Request-ID: my-case-7" in head
    assert json.loads(body) == {
        "type": "urn:oncology:problem:body-too-large",
        "title": "Request Entity Too Large",
        "status": 413,
        "detail": "The body is 50000000 bytes; the limit is 4194304 bytes.",
        "errors": {"body": "must be at most 4194304 bytes"},
    }
    request = urllib.request.Request(
        server.url + "/v2/models/oncology/infer", b" " * (5 * 1024 * 1024)
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 413
    assert json.loads(refused.value.read()) == {
        "error": "The body is 5242880 bytes; the limit is 4194304 bytes."
    }


def test_what_is_not_http_gets_a_problem_never_an_html_page(server: LiveServer) -> None:
    for request in (b"GARBAGE\r\n\r\n", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            connection.sendall(request)
            answer = b""
            while part := connection.recv(65536):
                answer += part
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"Content-Type: application/problem+json" in head, answer
        problem = json.loads(body)
        assert int(head.split()[1]) == problem["status"] in (400, 414)


def test_request_ids_pass_through_the_front(server: LiveServer) -> None:
    status, headers, _ = predict(server, {"X-Request-ID": "lab-case-42"})
    assert status == 200 and headers["X-Request-ID"] == "lab-case-42"
    assert logged(server, "lab-case-42")
    status, headers, _ = predict(server, {"X-Request-ID": "not valid: spaces"})
    assert status == 200 and headers["X-Request-ID"] != "not valid: spaces"
    assert logged(server, headers["X-Request-ID"])


def logged(server: LiveServer, request_id: str) -> bool:
    """Whether the access log has a line for `request_id`: it is written once the answer is
    sent, so a moment after the client has it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if any(record["request_id"] == request_id for record in server.access_log()):
            return True
        time.sleep(0.05)
    return False


def test_requests_beyond_the_limit_in_progress_are_refused_with_retry_after(
    tmp_path: Path,
) -> None:
    settings = {"ONCOLOGY_MAX_REQUESTS_IN_PROGRESS": "2", "ONCOLOGY_BODY_TIMEOUT": "30"}
    with live_server(tmp_path, workers=1, env=settings) as server:
        holding = []
        for _ in range(2):  # two requests whose bodies never finish
            connection = socket.create_connection(("127.0.0.1", server.port))
            connection.sendall(HEAD + b"Content-Length: 1000\r\n\r\n{")
            holding.append(connection)
        time.sleep(0.3)
        status, headers, body = predict(server)
        for connection in holding:
            connection.close()
        assert status == 503 and headers["Retry-After"] == "1"
        assert headers["Content-Type"] == "application/problem+json"
        assert json.loads(body)["type"] == "urn:oncology:problem:busy"
        assert headers["X-Request-ID"]
        deadline = time.monotonic() + 5
        while predict(server)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert predict(server)[0] == 200
        assert counted_front_answers(server, "busy", 1) == 1


def test_sigterm_answers_the_request_under_way_then_stops_both(tmp_path: Path) -> None:
    with live_server(tmp_path, workers=2) as server:
        processes = [server.gunicorn_pid, *children_named(server, b"nginx")]
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as connection:
            connection.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(PREDICTION))
            connection.sendall(PREDICTION[:10])
            time.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(OSError):  # no new connection is taken
                socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            connection.sendall(PREDICTION[10:])
            answer = b""
            while part := connection.recv(65536):
                answer += part
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert server.process.wait(30) == 0
        for pid in processes:
            assert not Path(f"/proc/{pid}").exists()


def children_named(server: LiveServer, name: bytes) -> list[int]:
    from harness.live_server import children

    return [
        pid
        for pid in children(server.process.pid)
        if name in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_when_gunicorn_dies_the_front_goes_too(tmp_path: Path) -> None:
    with live_server(tmp_path, workers=1) as server:
        nginx = children_named(server, b"nginx")
        Path(f"/proc/{server.gunicorn_pid}")  # exists
        subprocess.run(["kill", "-KILL", str(server.gunicorn_pid)], check=True)
        assert server.process.wait(30) != 0
        assert nginx and not Path(f"/proc/{nginx[0]}").exists()
        assert "gunicorn exited" in server.log.read_text()


def test_a_broken_setting_stops_the_start_in_one_line_before_anything_listens(
    tmp_path: Path,
) -> None:
    port = free_port()
    run = subprocess.run(
        [sys.executable, "-m", "webservice.serve"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin:/usr/sbin", "PORT": str(port),
             "ONCOLOGY_TOKENS_FILE": str(tmp_path / "absent")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr == (
        f"oncology-serve: cannot start: {tmp_path}/absent: cannot read the tokens file: "
        "No such file or directory\n"
    )
    assert run.stdout == ""


def test_the_rendered_configuration_is_valid_nginx(tmp_path: Path) -> None:
    from webservice.serve import nginx_config_text

    (tmp_path / "nginx.conf").write_text(nginx_config_text(tmp_path))
    check = subprocess.run(
        ["nginx", "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr


def test_trace_which_nginx_never_passes_on_is_refused_naming_what_is_allowed(
    server: LiveServer,
) -> None:
    for path, allowed in (("/v1/predictions", "OPTIONS, POST"), ("/healthz", "GET, HEAD, OPTIONS")):
        request = urllib.request.Request(server.url + path, method="TRACE")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 405
        assert refused.value.headers["Allow"] == allowed
        assert json.loads(refused.value.read())["type"] == "urn:oncology:problem:method-not-allowed"


def test_the_connections_fit_the_open_files_the_process_may_have(tmp_path: Path) -> None:
    """Where the hard limit on open files is low (a container's), nginx is not told to raise its
    own past it (an alert at every start) and holds only the connections it can open."""
    from webservice.front import FrontSettings, nginx_config

    settings = FrontSettings(
        host="127.0.0.1", port=8080, run_dir=tmp_path, max_body_bytes=1024, header_timeout=10,
        body_timeout=10, max_connections=4096, max_requests_in_progress=1024,
        upstream_timeout=35, shutdown_timeout=20, max_open_files=1024,
    )  # fmt: skip
    config = nginx_config(settings)
    assert "worker_rlimit_nofile 1024;" in config
    assert "worker_connections 480;" in config
    roomy = nginx_config(replace(settings, max_open_files=1 << 20))
    assert "worker_rlimit_nofile 8256;" in roomy and "worker_connections 4096;" in roomy
