"""`make reliability`: the service's worst day, against the real gunicorn server on loopback.

1. soak: single and batch predictions at 32 connections for 60 s: no non-2xx answer, no socket
   error, worker RSS growing by less than 10% from the first to the last 10 s;
2. worker crash: SIGKILL a worker under load: at most its in-flight request fails, errors stop
   within 2 s, gunicorn replaces the worker;
3. reload and shutdown: SIGHUP under load loses no request; SIGTERM under load answers every
   request a worker accepted and the server exits within the graceful timeout; slow clients
   (`reliability.slow_clients`: 300 dripping headers, 100 dripping bodies, 30 s) fail no ordinary
   prediction and keep their p99 within 5x the unloaded one;
4. bad input: schemathesis (all checks, 1,000+ cases) on the live /swagger.json, and hostile
   bodies: no 5xx, every error in problem+json, still ready afterwards; hostile authentication
   (tokens on): wrong scheme, empty, huge, many tokens or headers, a token in the query string:
   401/400 and never a token echoed or logged, a near-miss token costs the server the same time
   as a far-miss one (medians), and schemathesis with a token finds every declared operation
   refusing requests without it;
5. bad artifacts: a tampered, truncated or missing model: `oncology-verify` exits 1 naming the
   file, the service stays unready and never predicts.

Every load is bounded in requests and time and targets 127.0.0.1 only. Each check prints its
figures; any breach makes the run exit 1. Logs go to build/reliability/.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.live_server import LiveServer, live_server
from harness.load import Recorder, need_wrk, rss_mb, run_wrk, wrk_script
from oncology_model.integrity import ONNX_FILE, bundled_artifacts_dir
from oncology_model.verify import SEED_TUMOR
from reliability.slow_clients import slow_client_attack

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "reliability"
# How schemathesis sends the batch endpoint's tumors as text/csv.
CSV_HOOKS = ROOT / "tests" / "schemathesis_hooks.py"
SEED = SEED_TUMOR.to_dict()
SINGLE = ("/v1/predictions", json.dumps(SEED).encode())
BATCH = ("/v1/predictions/batch", json.dumps({"tumors": [SEED] * 1000}).encode())
SOAK_SECONDS = 60
MIN_SCHEMATHESIS_CASES = 1000


class Breach(AssertionError):
    """A reliability target was missed."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Breach(message)


def workers_of(server: LiveServer) -> list[int]:
    return server.workers()


def logged_request_ids(server: LiveServer) -> set[str]:
    return {record["request_id"] for record in server.access_log()}


# --- slow clients ----------------------------------------------------------------------------


def slow_clients() -> dict[str, Any]:
    """300 connections dripping headers and 100 dripping bodies for 30 s: ordinary predictions
    all answered, p99 within 5x unloaded; healthy afterwards; the front counted its timeouts."""
    with live_server(OUT, workers=2) as server:
        figures = slow_client_attack(server.port, SINGLE[1], BATCH[1])
        expect(server.status("/readyz") == 200, "not ready after the slow clients")
        metrics = _get(server.port, "/metrics")[1]
        timeouts = re.search(r'oncology_front_answers_total\{reason="timeout"\} (\d+)', metrics)
        figures["front_timeouts_counted"] = int(timeouts.group(1)) if timeouts else 0
    expect(figures["passed"], f"ordinary predictions suffered: {figures}")
    expect(figures["front_timeouts_counted"] > 0, "the front counted no timeout")
    return figures


# --- 1. soak ---------------------------------------------------------------------------------


def soak() -> dict[str, Any]:
    with live_server(OUT, workers=2) as server:
        single = wrk_script(OUT / "soak-single", SEED)
        batch = wrk_script(OUT / "soak-batch", {"tumors": [SEED] * 100})
        # Warm-up (not measured): first-use allocations (caches, the metrics flusher's thread
        # arena) are a one-time step, not growth.
        run_wrk(server.url + "/v1/predictions/batch", batch, connections=8, seconds=5)
        samples: dict[int, list[tuple[float, float]]] = {pid: [] for pid in workers_of(server)}
        results: dict[str, dict[str, float]] = {}

        def load(name: str, path: str, script: Path, connections: int) -> None:
            results[name] = run_wrk(
                server.url + path, script, connections=connections, seconds=SOAK_SECONDS
            )

        runs = [
            threading.Thread(target=load, args=("single", "/v1/predictions", single, 24)),
            threading.Thread(target=load, args=("batch", "/v1/predictions/batch", batch, 8)),
        ]
        started = time.monotonic()
        for run in runs:
            run.start()
        while any(run.is_alive() for run in runs):
            elapsed = time.monotonic() - started
            for pid in samples:
                try:
                    samples[pid].append((elapsed, rss_mb(pid)))
                except FileNotFoundError:
                    raise Breach(f"worker {pid} died during the soak") from None
            time.sleep(1)
        for run in runs:
            run.join()
    growth, rss = {}, {}
    for pid, points in samples.items():
        first = [mb for t, mb in points if t <= 10]
        last = [mb for t, mb in points if t >= SOAK_SECONDS - 10]
        rss[pid] = (round(sum(first) / len(first), 1), round(sum(last) / len(last), 1))
        growth[pid] = rss[pid][1] / rss[pid][0] - 1
    figures = {
        "seconds": SOAK_SECONDS,
        "connections": 32,
        "single_rps": round(results["single"]["rps"]),
        "single_p99_ms": results["single"]["p99_ms"],
        "batch100_rps": round(results["batch"]["rps"]),
        "requests": int(results["single"]["requests"] + results["batch"]["requests"]),
        "non_2xx": int(results["single"]["non_2xx"] + results["batch"]["non_2xx"]),
        "socket_errors": int(
            results["single"]["socket_errors"] + results["batch"]["socket_errors"]
        ),
        "rss_mb_first_last_10s": {str(pid): mb for pid, mb in rss.items()},
        "rss_growth_pct": {str(pid): round(g * 100, 2) for pid, g in growth.items()},
    }
    expect(figures["non_2xx"] == 0, f"{figures['non_2xx']} non-2xx answers")
    expect(figures["socket_errors"] == 0, f"{figures['socket_errors']} socket errors")
    expect(all(g < 0.10 for g in growth.values()), f"RSS grew too much: {growth}")
    return figures


# --- 2. worker crash -------------------------------------------------------------------------


def worker_crash() -> dict[str, Any]:
    with live_server(OUT, workers=2) as server:
        recorder = Recorder(server.port, [SINGLE, SINGLE, SINGLE, BATCH], threads=16, seconds=8)
        thread = threading.Thread(target=recorder.run)
        thread.start()
        time.sleep(3)
        victim = workers_of(server)[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        thread.join()
        replaced = len(workers_of(server)) == 2 and victim not in workers_of(server)
        still_ready = server.status("/readyz") == 200
    failed = [o for o in recorder.outcomes if o.status != 200]
    late = [o for o in failed if o.started > killed_at + 2]
    figures = {
        "requests": len(recorder.outcomes),
        "failed": len(failed),
        "failed_after_2s": len(late),
        "last_failure_after_kill_s": round(
            max((o.ended - killed_at for o in failed), default=0), 3
        ),
        "worker_replaced": replaced,
    }
    # A sync worker holds one connection at a time: its in-flight request is all it can lose.
    expect(len(failed) <= 1, f"{len(failed)} requests failed: {[o.error for o in failed]}")
    expect(not late, f"{len(late)} requests failed more than 2 s after the kill")
    expect(replaced, "gunicorn did not replace the killed worker")
    expect(still_ready, "not ready after the crash")
    return figures


# --- 3. reload and shutdown ------------------------------------------------------------------


def reload_under_load() -> dict[str, Any]:
    with live_server(OUT, workers=2) as server:
        before = set(workers_of(server))
        recorder = Recorder(server.port, [SINGLE, SINGLE, BATCH], threads=16, seconds=8)
        thread = threading.Thread(target=recorder.run)
        thread.start()
        time.sleep(3)
        server.process.send_signal(signal.SIGHUP)
        thread.join()
        after = set(workers_of(server))
    failed = [o for o in recorder.outcomes if o.status != 200]
    renewed = not (before & after)
    figures = {
        "requests": len(recorder.outcomes),
        "failed": len(failed),
        "workers_renewed": renewed,
    }
    expect(not failed, f"{len(failed)} requests failed across SIGHUP: {failed[:3]}")
    expect(renewed, "SIGHUP did not replace the workers")
    return figures


def shutdown_under_load() -> dict[str, Any]:
    graceful = 10
    with live_server(OUT, workers=2, env={"GRACEFUL_TIMEOUT": str(graceful)}) as server:
        recorder = Recorder(server.port, [BATCH, SINGLE], threads=16, seconds=6)
        thread = threading.Thread(target=recorder.run)
        thread.start()
        time.sleep(2)
        term_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(graceful + 10)
        exited_after = time.monotonic() - term_at
        recorder.stop()
        thread.join()
        accepted = logged_request_ids(server)
        exit_code = server.process.returncode
    by_id = {o.request_id: o for o in recorder.outcomes}
    lost = [i for i in accepted if i in by_id and by_id[i].status != 200]
    in_flight = [o for o in recorder.outcomes if o.started < term_at < o.ended and o.status == 200]
    refused = [o for o in recorder.outcomes if o.status is None]
    unaccounted = [o for o in refused if o.request_id in accepted]
    figures = {
        "requests": len(recorder.outcomes),
        "accepted_by_workers": len(accepted & by_id.keys()),
        "completed_while_stopping": len(in_flight),
        "refused_after_stop": len(refused),
        "exit_s": round(exited_after, 3),
        "exit_code": exit_code,
    }
    expect(not lost and not unaccounted, f"accepted requests without an answer: {lost[:3]}")
    expect(exited_after <= graceful, f"exited after {exited_after:.1f} s > {graceful} s")
    expect(exit_code == 0, f"gunicorn exited with {exit_code}")
    return figures


# --- 4. bad input ----------------------------------------------------------------------------


def run_schemathesis(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    """schemathesis with every check against the live document, sending CSV bodies through the
    project's serializer (CSV_HOOKS), in OUT: it keeps a cache (.schemathesis/) where it runs."""
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")), "run",
            f"{server.url}/swagger.json", "--checks", "all", "--no-color", *args,
        ],
        capture_output=True, text=True, timeout=600, check=False, cwd=OUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(CSV_HOOKS)},
    )  # fmt: skip


def schemathesis_run() -> dict[str, Any]:
    """Runs with successive seeds until MIN_SCHEMATHESIS_CASES cases: hypothesis stops an
    operation early once it finds nothing new, so one run's count varies."""
    cases, runs, codes = 0, 0, []
    with live_server(OUT, workers=2) as server:
        while cases < MIN_SCHEMATHESIS_CASES and runs < 5:
            runs += 1
            result = run_schemathesis(
                server, "--max-examples", "500", "--workers", "2", "--seed", str(20261120 + runs)
            )
            log = OUT / f"schemathesis-{runs}.log"
            log.write_text(result.stdout + result.stderr)
            codes.append(result.returncode)
            expect(result.returncode == 0, f"schemathesis found issues: see {log}")
            match = re.search(r"(\d+) generated", result.stdout)
            cases += int(match.group(1)) if match else 0
        still_ready = server.status("/readyz") == 200
        server_errors = _count_5xx(server)
    figures = {"cases": cases, "runs": runs, "exit_codes": codes, "server_5xx": server_errors}
    expect(cases >= MIN_SCHEMATHESIS_CASES, f"only {cases} cases")
    expect(server_errors == 0, f"{server_errors} answers were 5xx")
    expect(still_ready, "not ready after schemathesis")
    return figures


def _count_5xx(server: LiveServer) -> int:
    return sum(record["status"] >= 500 for record in server.access_log())


def _raw(port: int, head: bytes, body: bytes = b"", *, whole_body_first: bool = True) -> bytes:
    """Send raw bytes; return the raw answer (empty when the connection was cut). The heads
    ask for `Connection: close`: the front keeps HTTP/1.1 connections open otherwise."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head)
        if whole_body_first:
            connection.sendall(body)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def _post_head(content_type: str, length: int, path: str = "/v1/predictions") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: reliability\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


def hostile_corpus() -> dict[str, Any]:
    json_type = "application/json"
    bodies: dict[str, tuple[str, bytes]] = {
        "truncated JSON": (json_type, json.dumps(SEED).encode()[:40]),
        "deep nesting": (json_type, b"[" * 100_000 + b"]" * 100_000),
        "deep object nesting": (json_type, b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        "huge integer": (json_type, json.dumps({**SEED, "mitoses": 10**400}).encode()),
        "huge exponent": (
            json_type,
            json.dumps(SEED).replace('"mitoses": 1', '"mitoses": 1e400').encode(),
        ),
        "NaN literal": (
            json_type,
            json.dumps(SEED).replace('"mitoses": 1', '"mitoses": NaN').encode(),
        ),
        "Infinity literal": (
            json_type,
            json.dumps(SEED).replace('"mitoses": 1', '"mitoses": -Infinity').encode(),
        ),
        "UTF-8 garbage": (json_type, b"\xff\xfe\xfd" + os.urandom(64)),
        "invalid surrogate": (json_type, b'{"clump_thickness": "\\ud800"}'),
        "duplicate keys": (json_type, json.dumps(SEED)[:-1].encode() + b', "mitoses": 99}'),
        "empty body": (json_type, b""),
        "null": (json_type, b"null"),
        "array of tumors": (json_type, json.dumps([SEED]).encode()),
        "string": (json_type, b'"tumor"'),
        "text/plain": ("text/plain", json.dumps(SEED).encode()),
        "form": ("application/x-www-form-urlencoded", b"clump_thickness=4"),
        "xml": ("application/xml", b"<tumor/>"),
        "no content type": ("", json.dumps(SEED).encode()),
        "10,001 tumors": (json_type, json.dumps({"tumors": [SEED] * 10_001}).encode()),
        "batch of nulls": (json_type, json.dumps({"tumors": [None] * 1000}).encode()),
    }
    figures: dict[str, Any] = {}
    with live_server(OUT, workers=2) as server:
        statuses: dict[str, int] = {}
        for name, (content_type, body) in bodies.items():
            path = (
                "/v1/predictions/batch"
                if "tumors" in name or "batch" in name
                else "/v1/predictions"
            )
            head = _post_head(content_type, len(body), path).replace(b"Content-Type: \r\n", b"")
            statuses[name] = _check_problem(name, _raw(server.port, head, body))
        huge = 100 * 1024 * 1024
        answer = _raw(server.port, _post_head(json_type, huge), b"x" * huge)
        statuses["100 MB body, sent whole"] = _check_problem("100 MB body", answer)
        answer = _raw(server.port, _post_head(json_type, huge), whole_body_first=False)
        statuses["100 MB body, waiting for the answer"] = _check_problem("100 MB early", answer)
        chunked = (
            b"POST /v1/predictions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        piece = b"x" * 65536
        chunks = (b"%x\r\n" % len(piece) + piece + b"\r\n") * 80 + b"0\r\n\r\n"  # 5 MiB
        statuses["5 MiB chunked body"] = _check_problem(
            "chunked", _raw(server.port, chunked, chunks)
        )
        for method in ("GET", "PUT", "DELETE"):
            request = f"{method} /v1/predictions HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n"
            answer = _raw(server.port, request.encode())
            statuses[f"{method} /v1/predictions"] = _check_problem(method, answer)
        statuses["unknown path"] = _check_problem(
            "404", _raw(server.port, b"GET /admin HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
        )
        ready = server.status("/readyz") == 200
        figures["statuses"] = statuses
        figures["server_5xx"] = _count_5xx(server)
        figures["ready_after"] = ready
    expect(figures["server_5xx"] == 0, "a hostile body caused a 5xx")
    expect(ready, "not ready after the hostile corpus")
    return figures


def _check_problem(name: str, answer: bytes) -> int:
    expect(answer.startswith(b"HTTP/1.1 "), f"{name}: no HTTP answer: {answer[:80]!r}")
    status = int(answer[9:12])
    head, _, body = answer.partition(b"\r\n\r\n")
    expect(status < 500, f"{name}: {status}")
    if status >= 400:
        expect(
            b"content-type: application/problem+json" in head.lower(), f"{name}: not problem+json"
        )
        problem = json.loads(body)
        expect(
            set(problem) == {"type", "title", "status", "detail", "errors"}, f"{name}: {problem}"
        )
        expect(b"Traceback" not in body, f"{name}: a stack trace")
    return status


def hostile_auth() -> dict[str, Any]:
    from webservice.tokens import new_token

    token, line = new_token("reliability")
    tokens_file = OUT / "tokens"
    tokens_file.write_text(line + "\n")
    near = token[:-1] + ("A" if token[-1] != "A" else "B")  # one character off
    far = new_token("other")[0]
    body = json.dumps(SEED).encode()
    cases: dict[str, list[str]] = {
        "no Authorization": [],
        "Basic scheme": ["Authorization: Basic cmVsaWFiaWxpdHk6c2VjcmV0"],
        "Bearer without a token": ["Authorization: Bearer"],
        "Bearer, empty token": ["Authorization: Bearer "],
        "lower-case scheme, wrong token": [f"Authorization: bearer {far}"],
        "near-miss token": [f"Authorization: Bearer {near}"],
        "token without a scheme": [f"Authorization: {token}"],
        "8,000-byte token": ["Authorization: Bearer " + "x" * 8000],
        "50 tokens in one header": [
            "Authorization: " + ", ".join([f"Bearer {far}"] * 49 + [f"Bearer {token}"])
        ],
        "Latin-1 bytes in the token": ["Authorization: Bearer caf\xe9"],
    }
    figures: dict[str, Any] = {}
    presented = [token, near, far]
    with live_server(OUT, workers=2, env={"ONCOLOGY_TOKENS_FILE": str(tokens_file)}) as server:
        statuses: dict[str, int] = {}
        for name, headers in cases.items():
            head = _post_head("application/json", len(body)).replace(
                b"\r\n\r\n", "".join(f"\r\n{h}" for h in headers).encode("latin-1") + b"\r\n\r\n"
            )
            answer = _raw(server.port, head, body)
            statuses[name] = _check_problem(name, answer)
            expect(statuses[name] == 401, f"{name}: {statuses[name]} instead of 401")
            expect(b'WWW-Authenticate: Bearer realm="oncology"' in answer, f"{name}: no challenge")
            expect(not any(t.encode() in answer for t in presented), f"{name}: a token echoed")
        # Authorization is a singleton field (RFC 9110): the front refuses a request that sends
        # it twice as malformed, before anything reads a token.
        head = _post_head("application/json", len(body)).replace(
            b"\r\n\r\n",
            "".join(f"\r\nAuthorization: Bearer {token}" for _ in range(50)).encode() + b"\r\n\r\n",
        )
        answer = _raw(server.port, head, body)
        statuses["50 Authorization headers"] = _check_problem("50 headers", answer)
        expect(statuses["50 Authorization headers"] == 400, "50 Authorization headers: not 400")
        expect(token.encode() not in answer, "50 Authorization headers: a token echoed")
        query = f"/v1/predictions?access_token={token}"
        answer = _raw(server.port, _post_head("application/json", len(body), query), body)
        statuses["token in the query string"] = _check_problem("query", answer)
        expect(statuses["token in the query string"] == 400, "a query-string token was not 400")
        # Over the front's header limit (8 KiB a line): nginx refuses it before gunicorn sees it.
        oversized = _post_head("application/json", len(body)).replace(
            b"\r\n\r\n", b"\r\nAuthorization: Bearer " + b"x" * 20_000 + b"\r\n\r\n"
        )
        answer = _raw(server.port, oversized, body)
        expect(answer.startswith(b"HTTP/1.1 4"), f"20 KB header: {answer[:40]!r}")
        statuses["20,000-byte token (the front's limit)"] = int(answer[9:12])
        answer = _raw(
            server.port,
            _post_head("application/json", len(body)).replace(
                b"\r\n\r\n", f"\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
            ),
            body,
        )
        statuses["valid token"] = _check_problem("valid", answer)
        expect(statuses["valid token"] == 200, f"a valid token got {statuses['valid token']}")
        figures["statuses"] = statuses
        # The document's security declarations against the server: schemathesis's ignored_auth
        # check replays each case without the token and expects a 401.
        result = run_schemathesis(
            server, "--max-examples", "50", "--header", f"Authorization: Bearer {token}",
            "--seed", "20261121",
        )  # fmt: skip
        (OUT / "schemathesis-auth.log").write_text(result.stdout + result.stderr)
        figures["schemathesis_exit"] = result.returncode
        expect(
            result.returncode == 0, f"schemathesis with tokens on: see {OUT}/schemathesis-auth.log"
        )
        figures["server_5xx"] = _count_5xx(server)
        figures["ready_after"] = server.status("/readyz") == 200
        log = server.log.read_bytes()
    expect(figures["server_5xx"] == 0, "a hostile Authorization caused a 5xx")
    expect(figures["ready_after"], "not ready after the hostile authentication cases")
    expect(not any(t.encode() in log for t in presented), "a token appears in the server log")
    # One worker: with two, which worker takes which request adds more noise than a leak would.
    with live_server(OUT, workers=1, env={"ONCOLOGY_TOKENS_FILE": str(tokens_file)}) as server:
        timing = _timing_probe(server, {"near-miss": near, "far-miss": far})
    figures["timing_ms"] = timing
    gap = abs(timing["near-miss"] - timing["far-miss"])
    expect(
        gap <= 0.2 * max(timing.values()),
        f"near-miss and far-miss tokens differ by {gap:.3f} ms (medians {timing})",
    )
    return figures


def _timing_probe(
    server: LiveServer, tokens: dict[str, str], rounds: int = 300
) -> dict[str, float]:
    """Median server time (ms, from the access log) to refuse each token, requests interleaved."""
    ids: dict[str, list[str]] = {name: [] for name in tokens}
    body = json.dumps(SEED).encode()
    for i in range(rounds):
        order = list(tokens.items())
        if i % 2:
            order.reverse()  # neither token always goes first
        for name, token in order:
            request_id = f"timing-{name}-{i}"
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                connection.request("POST", "/v1/predictions", body, {
                    "Content-Type": "application/json", "Authorization": f"Bearer {token}",
                    "X-Request-ID": request_id,
                })  # fmt: skip
                status = connection.getresponse().status
            finally:
                connection.close()
            expect(status == 401, f"timing probe: {name} got {status}")
            ids[name].append(request_id)
    time.sleep(0.5)
    durations = {r["request_id"]: r["duration_ms"] for r in server.access_log()}
    return {
        name: round(statistics.median(durations[i] for i in found), 4)
        for name, found in ids.items()
    }


# --- 5. bad artifacts ------------------------------------------------------------------------


def bad_artifacts() -> dict[str, Any]:
    damage: dict[str, Callable[[Path], object]] = {
        "tampered": lambda path: path.write_bytes(_flip_middle_byte(path.read_bytes())),
        "truncated": lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
        "missing": lambda path: path.unlink(),
    }
    figures: dict[str, Any] = {}
    for name, harm in damage.items():
        directory = OUT / f"artifacts-{name}"
        shutil.rmtree(directory, ignore_errors=True)
        shutil.copytree(bundled_artifacts_dir(), directory)
        harm(directory / ONNX_FILE)
        verify = subprocess.run(
            [str(Path(sys.executable).with_name("oncology-verify")), "--artifacts", str(directory)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        expect(verify.returncode == 1, f"{name}: oncology-verify exited {verify.returncode}")
        expect(
            ONNX_FILE in verify.stderr, f"{name}: the CLI did not name the file: {verify.stderr}"
        )
        env = {"ONCOLOGY_ARTIFACTS_DIR": str(directory)}
        with live_server(OUT, workers=1, env=env, wait=False) as server:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if server.status("/healthz") == 200:
                        break
                except OSError:
                    time.sleep(0.05)
            ready = _get(server.port, "/readyz")
            predicted = _post(server.port, "/v1/predictions", json.dumps(SEED).encode())
        expect(ready[0] == 503, f"{name}: /readyz answered {ready[0]}")
        expect(ONNX_FILE in ready[1], f"{name}: /readyz does not name the file: {ready[1]}")
        expect(predicted[0] == 503, f"{name}: a prediction was served ({predicted[0]})")
        figures[name] = {
            "cli_exit": verify.returncode,
            "readyz": ready[0],
            "predictions": predicted[0],
            "message": json.loads(ready[1])["detail"][:120],
        }
    return figures


def _flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def _get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _post(port: int, path: str, body: bytes) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "soak": soak,
    "worker crash": worker_crash,
    "reload (SIGHUP) under load": reload_under_load,
    "shutdown (SIGTERM) under load": shutdown_under_load,
    "slow clients": slow_clients,
    "schemathesis on the live server": schemathesis_run,
    "hostile bodies": hostile_corpus,
    "hostile authentication": hostile_auth,
    "bad artifacts": bad_artifacts,
}


def main() -> int:
    need_wrk()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    selected = sys.argv[1:] or list(CHECKS)
    breaches = []
    started = time.monotonic()
    results: dict[str, Any] = {}
    for name in selected:
        check_started = time.monotonic()
        try:
            figures = CHECKS[name]()
            verdict = "passed"
        except Breach as breach:
            figures = {"breach": str(breach)}
            verdict = "FAILED"
            breaches.append(name)
        results[name] = figures
        print(f"reliability: {name}: {verdict} in {time.monotonic() - check_started:.0f} s")
        for key, value in figures.items():
            print(f"    {key}: {value}")
    (OUT / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"reliability: all checks took {time.monotonic() - started:.0f} s")
    print(f"reliability: {len(selected) - len(breaches)} passed, {len(breaches)} failed")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
