"""`python -m webservice.serve`: the service as it runs everywhere (`make run`, the image, the pod):
nginx in front (`webservice.front`), gunicorn behind it on a Unix socket, and beside them the
Open Inference Protocol's gRPC service (`webservice.grpcserver`) on GRPC_PORT (8081; `off`: none),
GRPC_WORKERS processes (1) sharing the port.

Start: the settings are checked first (`config.startup_problem`: one line and exit 1, before
anything listens), and that GRPC_PORT is free; gunicorn starts, migrates the record's database
and binds its socket; then nginx listens on HOST:PORT and the gRPC processes on HOST:GRPC_PORT.
Stop (SIGTERM, SIGINT): nginx stops accepting and finishes every request it holds, which
gunicorn answers, while the gRPC processes refuse new calls and answer those under way; then
gunicorn stops as it always does. SIGHUP reloads nginx and gunicorn (gunicorn replaces its
workers). When any process exits on its own, the others are stopped and the exit is non-zero.
nginx's lines about the answers it gave itself are counted into
`oncology_front_answers_total{reason}` (prometheus-client's multiprocess folder, which the
workers' /metrics reads, as it reads the gRPC processes' metrics) and written on to stdout.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import IO, Any

from webservice.config import load_config, startup_problem

# Light: neither Flask, the model nor prometheus-client, which must see its folder set first.
from webservice.front import UPSTREAM_SOCKET, FrontSettings, nginx_config

NGINX = os.environ.get("ONCOLOGY_NGINX", "nginx")
GUNICORN_CONFIG = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"
APP = "webservice:create_app()"
SOCKET_WAIT_SECONDS = 30


def main() -> int:
    problem = startup_problem()
    if problem:
        print(f"oncology-serve: cannot start: {problem}", file=sys.stderr)
        return 1
    if shutil.which(NGINX) is None:
        print(
            f"oncology-serve: cannot start: {NGINX} is not installed "
            "(Debian: apt-get install nginx)",
            file=sys.stderr,
        )
        return 1
    # nginx's configuration, temporary files and gunicorn's socket: TMPDIR (a disk in the pod).
    run_dir = Path(tempfile.mkdtemp(prefix="oncology-serve-"))
    run_dir.chmod(0o755)  # nginx's workers (as `nobody` when started by root) reach the socket
    # The metrics of every process, in memory (WORKER_TMP_DIR, as gunicorn's heartbeat files).
    # /dev/shm: a per-container tmpfs; mkdtemp makes a private folder in it (B108 warns of /tmp).
    shared_memory = os.environ.get("WORKER_TMP_DIR", "/dev/shm")  # nosec B108
    metrics_dir = tempfile.mkdtemp(prefix="oncology-metrics-", dir=shared_memory)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    grpc = grpc_settings()
    if isinstance(grpc, str):
        print(f"oncology-serve: cannot start: {grpc}", file=sys.stderr)
        return 1
    try:
        return Launcher(run_dir, grpc).run()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def grpc_settings(environ: Mapping[str, str] = os.environ) -> tuple[int, int] | str:
    """(GRPC_PORT, GRPC_WORKERS), (0, 0) with GRPC_PORT=off, or why they cannot work."""
    text = environ.get("GRPC_PORT", "8081")
    if text == "off":
        return 0, 0
    workers = environ.get("GRPC_WORKERS", "1")
    if not text.isdigit() or not 0 < int(text) < 65536:
        return f"GRPC_PORT={text!r} is not a port: expected 1 to 65535, or off"
    if not workers.isdigit() or int(workers) < 1:
        return f"GRPC_WORKERS={workers!r} is not valid: expected a whole number above 0"
    host = environ.get("HOST", "127.0.0.1")
    # Its processes share the port (SO_REUSEPORT), which would also share it with another
    # server already there: a plain bind first says whether the port is free.
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        probe.bind((host, int(text)))
    except OSError as error:
        return f"GRPC_PORT {text} on {host} cannot be used ({error.strerror}): another server?"
    finally:
        probe.close()
    return int(text), int(workers)


class Launcher:
    """gunicorn, nginx and the gRPC processes as one service: started in order, stopped in
    order."""

    def __init__(self, run_dir: Path, grpc: tuple[int, int] = (0, 0)) -> None:
        self.run_dir = run_dir
        self.grpc_port, self.grpc_workers = grpc
        self.stopping = threading.Event()
        self.reload = threading.Event()
        self.gunicorn: subprocess.Popen[bytes] | None = None
        self.nginx: subprocess.Popen[bytes] | None = None
        self.grpc: list[subprocess.Popen[bytes]] = []

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        socket = self.run_dir / UPSTREAM_SOCKET
        # A model in a bucket: gunicorn's master downloads it and writes here what its workers
        # then load (the local copy, or why it failed), for the gRPC processes to load the same.
        handover = self.run_dir / "model-handover.json"
        environment = {
            **os.environ,
            "BIND": f"unix:{socket}",
            "ONCOLOGY_MODEL_HANDOVER": str(handover),
        }
        # Each child in a session of its own: Ctrl-C in a terminal reaches the launcher only,
        # which then stops them in order, as for SIGTERM.
        self.gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), APP],
            env=environment,
            start_new_session=True,
        )
        if not self._wait_for(socket):
            return self._stop(self.gunicorn.poll() or 1)
        config = self.run_dir / "nginx.conf"
        config.write_text(nginx_config_text(self.run_dir))
        self.nginx = subprocess.Popen(
            [NGINX, "-e", "stderr", "-p", str(self.run_dir), "-c", str(config),
             "-g", "daemon off;"],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        counter = threading.Thread(
            target=count_front_answers, args=(self.nginx.stdout,), name="front-log", daemon=True
        )
        counter.start()
        # The record's database is migrated (gunicorn's master did it before binding its socket).
        grpc_environment = {
            **os.environ,
            "GRPC_PORT": str(self.grpc_port),
            "GRPC_REUSE_PORT": "1" if self.grpc_workers > 1 else "0",
            "ONCOLOGY_DB_MIGRATE": "false",
        }
        if handover.exists():
            grpc_environment.update(json.loads(handover.read_text()))
        self.grpc = [
            subprocess.Popen(
                [sys.executable, "-m", "webservice.grpcserver"],
                env=grpc_environment,
                start_new_session=True,
            )
            for _ in range(self.grpc_workers)
        ]
        while not self.stopping.is_set():
            if self.reload.is_set():
                self.reload.clear()
                self.gunicorn.send_signal(signal.SIGHUP)
                self.nginx.send_signal(signal.SIGHUP)
            for process in (self.gunicorn, self.nginx, *self.grpc):
                if process.poll() is not None:
                    name = (
                        "gunicorn"
                        if process is self.gunicorn
                        else "nginx"
                        if process is self.nginx
                        else "the gRPC server"
                    )
                    print(f"oncology-serve: {name} exited ({process.returncode})", file=sys.stderr)
                    return self._stop(process.returncode or 1)
            self.stopping.wait(0.2)
        code = self._stop(0)
        counter.join(timeout=5)
        return code

    def _count_unrecorded(self) -> None:
        """Count what each exited gRPC process answered but never wrote to the record (killed
        before it could), as gunicorn's master does for its workers."""
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not folder:
            return
        from webservice.records.writer import unrecorded

        for process in self.grpc:
            lost = unrecorded(process.pid, folder) if process.poll() is not None else 0
            if lost:
                from webservice.metrics import RECORDS_LOST

                RECORDS_LOST.inc(lost)
                print(
                    f"oncology-serve: gRPC process {process.pid} stopped without writing {lost} "
                    "answered tumors to the prediction record",
                    file=sys.stderr,
                )

    def _wait_for(self, socket: Path) -> bool:
        """Until gunicorn listens on `socket`; False when it exits or a stop is asked first."""
        deadline = time.monotonic() + SOCKET_WAIT_SECONDS
        assert self.gunicorn is not None
        while time.monotonic() < deadline and not self.stopping.is_set():
            if self.gunicorn.poll() is not None:
                return False
            if socket.exists():
                return True
            time.sleep(0.01)
        return False

    def _stop(self, code: int) -> int:
        """nginx and the gRPC processes first, together (nginx finishes what it holds, which
        needs gunicorn), then gunicorn."""
        grace = graceful_timeout() + 5
        first = [(self.nginx, signal.SIGQUIT), *((p, signal.SIGTERM) for p in self.grpc)]
        for group in (first, [(self.gunicorn, signal.SIGTERM)]):
            stopping = [p for p, graceful in group if p is not None and p.poll() is None]
            for process, graceful in group:
                if process in stopping:
                    process.send_signal(graceful)
            deadline = time.monotonic() + grace
            for process in stopping:
                try:
                    process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._count_unrecorded()
        return code

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload.set()


def graceful_timeout() -> int:
    """Seconds a stop may take for requests under way: gunicorn's setting, nginx's too."""
    return int(os.environ.get("GRACEFUL_TIMEOUT", "20"))


def open_files_limit() -> int:
    """The hard limit on open files, which nginx (unprivileged) may raise its own up to."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else hard


def nginx_config_text(run_dir: Path) -> str:
    """nginx.conf for this environment's settings."""
    settings = load_config()
    return nginx_config(
        FrontSettings(
            host=os.environ.get("HOST", "127.0.0.1"),
            port=int(os.environ.get("PORT", "8080")),
            run_dir=run_dir,
            max_body_bytes=settings["MAX_BODY_BYTES"],
            header_timeout=settings["HEADER_TIMEOUT"],
            body_timeout=settings["BODY_TIMEOUT"],
            max_connections=settings["MAX_CONNECTIONS"],
            max_requests_in_progress=settings["MAX_REQUESTS_IN_PROGRESS"],
            upstream_timeout=int(os.environ.get("GUNICORN_TIMEOUT", "30")) + 5,
            shutdown_timeout=graceful_timeout(),
            max_open_files=open_files_limit(),
        )
    )


def count_front_answers(lines: IO[bytes] | None) -> None:
    """Count each answer nginx gave itself by its reason, and pass its line on to stdout."""
    if lines is None:
        return
    from prometheus_client import Counter

    answers = Counter(
        "oncology_front_answers_total",
        "Requests the front (nginx) answered itself, without the service: timeout (a client too "
        "slow with its headers or body), body-too-large, busy (too many requests in progress), "
        "bad-request, client-closed, upstream-unavailable (gunicorn not listening), front-error",
        ["reason"],
    )
    for line in iter(lines.readline, b""):
        try:
            record: dict[str, Any] = json.loads(line)
            answers.labels(str(record.get("reason", "other"))).inc()
        except ValueError:
            pass  # not one of its JSON lines: passed on as it is
        os.write(1, line)


if __name__ == "__main__":
    sys.exit(main())
