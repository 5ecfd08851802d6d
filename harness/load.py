"""Load and process helpers shared by the benchmark and the reliability suite: wrk, a Python
client that records every request, and /proc readings."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def need_wrk() -> str:
    """wrk's path; it is installed by `make system-packages`, never here."""
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    raise SystemExit("wrk is needed: run `make system-packages` (Debian: apt-get install wrk)")


def wrk_script(
    path: Path, body: dict[str, Any] | None, headers: dict[str, str] | None = None
) -> Path:
    """A wrk Lua script that POSTs `body` as JSON (or GETs when None), with `headers`."""
    script = path.with_suffix(".lua")
    lines = [f'wrk.headers["{name}"] = "{value}"' for name, value in (headers or {}).items()]
    if body is not None:
        payload = json.dumps(body, separators=(",", ":")).replace("\\", "\\\\").replace("'", "\\'")
        lines += [
            'wrk.method = "POST"',
            f"wrk.body = '{payload}'",
            'wrk.headers["Content-Type"] = "application/json"',
        ]
    script.write_text("".join(line + "\n" for line in lines))
    return script


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(url: str, script: Path, *, connections: int, seconds: int) -> dict[str, float]:
    """req/s, p50/p99 in ms, and the count of non-2xx answers and socket errors."""
    output = subprocess.run(
        [
            "wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s",
            "--latency", "-s", str(script), url,
        ],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
    ).stdout  # fmt: skip

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        assert match, output
        return float(match.group(1)) * _UNITS[match.group(2)]

    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        assert match, output
        return float(match.group(1))

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return {
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "requests": number(r"(\d+) requests in"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
    }


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (the launcher, nginx and gunicorn with their workers)."""
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [pid, *(grandchild for child in children for grandchild in process_tree(int(child)))]


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match, status
    return int(match.group(1)) / 1024


@dataclass
class Outcome:
    """One request as the client saw it."""

    request_id: str
    started: float
    ended: float
    status: int | None  # None: no answer (refused, reset, timed out)
    error: str = ""


@dataclass
class Recorder:
    """Threads sending requests one after another, each recorded with its own request id.

    Bounded twice: by `max_requests` in total and by `seconds`; `stop()` ends it early.
    """

    port: int
    requests: list[tuple[str, bytes]]  # (path, JSON body), cycled
    threads: int = 16
    seconds: float = 10.0
    max_requests: int = 200_000
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (a token)
    prefix: str = "rel"  # of the request ids: runs against one server must not share ids
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> list[Outcome]:
        workers = [threading.Thread(target=self._loop, args=(n,)) for n in range(self.threads)]
        deadline = threading.Timer(self.seconds, self._stop.set)
        deadline.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        deadline.cancel()
        return self.outcomes

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, number: int) -> None:
        sent = 0
        while not self._stop.is_set():
            with self._lock:
                if len(self.outcomes) >= self.max_requests:
                    return
            path, body = self.requests[sent % len(self.requests)]
            request_id = f"{self.prefix}-{number}-{sent}"
            sent += 1
            started = time.monotonic()
            status, error = None, ""
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                headers = {
                    **self.headers,
                    "Content-Type": "application/json",
                    "X-Request-ID": request_id,
                }
                connection.request("POST", path, body, headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except OSError as exc:
                error = type(exc).__name__
            except http.client.HTTPException as exc:
                error = type(exc).__name__
            finally:
                connection.close()
            outcome = Outcome(request_id, started, time.monotonic(), status, error)
            with self._lock:
                self.outcomes.append(outcome)
            if error == "ConnectionRefusedError":
                time.sleep(0.01)  # the server is gone or restarting: do not spin
