"""Start the real server on a free loopback port, wait until ready, stop it by PID.

The service runs as everywhere else (`python -m webservice.serve`: nginx in front, gunicorn
behind it); another app (the bench's floor) runs on gunicorn alone."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.loopback import free_port, stop

ROOT = Path(__file__).resolve().parents[1]


def access_records(log: str) -> list[dict[str, Any]]:
    """The service's JSON access-log records in a server log, one per answered request.

    Records end at "\n" only: a client's path may hold characters that `str.splitlines` also
    breaks at (U+0085, U+2028...), which JSON leaves unescaped."""
    return [
        json.loads(line)
        for line in log.split("\n")
        if line.startswith('{"ts"') and '"event":"request"' in line
    ]


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]  # webservice.serve, or gunicorn for another app
    port: int
    log: Path
    ready_path: str = "/readyz"
    front: bool = True
    grpc_port: int = 0  # the gRPC service's (webservice.serve's), 0: none

    @property
    def grpc_target(self) -> str:
        """host:port for a gRPC channel."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def gunicorn_pid(self) -> int:
        """gunicorn's master: the process itself, or the launcher's gunicorn child."""
        if not self.front:
            return self.process.pid
        for child in children(self.process.pid):
            if b"gunicorn" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        raise RuntimeError("no gunicorn under the launcher")

    def workers(self) -> list[int]:
        """gunicorn's workers, oldest first."""
        return children(self.gunicorn_pid)

    def grpc_pids(self) -> list[int]:
        """The gRPC processes beside gunicorn (`webservice.serve`'s GRPC_WORKERS)."""
        return [
            pid
            for pid in children(self.process.pid)
            if b"webservice.grpcserver" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, path: str) -> int:
        try:
            # An http:// URL on loopback built here (B310 warns of file:/ and custom schemes).
            with urllib.request.urlopen(self.url + path, timeout=2) as response:  # nosec B310
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    def access_log(self) -> list[dict[str, Any]]:
        """The service's JSON access-log records so far, one per answered request."""
        return access_records(self.log.read_text(errors="replace"))

    def wait_ready(self, timeout: float = 30) -> float:
        """Seconds until the ready path answered 200; fails if the server exits or times out."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()[-2000:]}")
            try:
                if self.status(self.ready_path) == 200 and self.grpc_listening():
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.01)
        raise TimeoutError(f"not ready in {timeout} s: {self.log.read_text()[-2000:]}")

    def grpc_listening(self) -> bool:
        """The gRPC port takes connections (True without one)."""
        if not self.grpc_port:
            return True
        try:
            socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, SIGKILL after `timeout` s; the exit code."""
        return stop(self.process, timeout=timeout)


# What an operator must never see from a healthy start: a gunicorn, app (JSON) or ONNX Runtime line
# at warning level or above, a Python warning or traceback.
ALARMING_LINE = re.compile(
    r'\[(ERROR|WARNING|CRITICAL)\]|"level": ?"(error|warning|critical)"|\[[WEF]:onnxruntime'
    r"|Warning: |Traceback \(most recent call last\)"
)


def children(pid: int) -> list[int]:
    """The direct children of `pid`."""
    found = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [int(child) for child in found]


def log_problems(text: str) -> list[str]:
    """Lines of a server log an operator would take for trouble, and lines with ANSI codes."""
    return [line for line in text.splitlines() if ALARMING_LINE.search(line) or "\x1b" in line]


SERVICE_APP = "webservice:create_app()"


@contextmanager
def live_server(
    log_dir: Path,
    *,
    workers: int = 2,
    env: dict[str, str] | None = None,
    wait: bool = True,
    app: str = SERVICE_APP,
    ready_path: str = "/readyz",
    front: bool | None = None,
) -> Iterator[LiveServer]:
    """`app` served on a free port: the service as `make run` serves it (nginx in front of
    gunicorn, `webservice.serve`), any other app (or the service with `front=False`, for the
    bench's comparison) on gunicorn alone."""
    port = free_port()
    log = log_dir / f"server-{port}.log"
    environment = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "WORKERS": str(workers)}
    # The prediction record beside the log, unless the caller (or the test session) names one:
    # never the working directory's default, which would grow with every run.
    environment.setdefault(
        "ONCOLOGY_DATABASE_URL", f"sqlite:///{log_dir / f'records-{port}.sqlite3'}"
    )
    environment.update(env or {})
    front = app == SERVICE_APP if front is None else front
    grpc_port = 0
    if front:  # the gRPC service beside it, on a free port of its own unless the caller says
        environment.setdefault("GRPC_PORT", str(free_port()))
        grpc_port = 0 if environment["GRPC_PORT"] == "off" else int(environment["GRPC_PORT"])
    if front:
        command = [sys.executable, "-m", "webservice.serve"]
    else:
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    server = LiveServer(process, port, log, ready_path, front, grpc_port)
    try:
        if wait:
            server.wait_ready()
        yield server
    finally:
        server.stop()
