"""Servers the ops tools run on loopback: a free port, a wait until one answers, a stop by PID."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(port: int, path: str) -> bool:
    """True when GET `path` on 127.0.0.1:`port` answers 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextmanager
def serving(
    command: Sequence[str], *, port: int, ready_path: str, log: Path, timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` (its output in `log`) until GET `ready_path` on `port` answers 200, yield
    the process, then stop it by its PID (SIGTERM, SIGKILL after 10 s), also on failure."""
    with log.open("wb") as output:
        process = subprocess.Popen(list(command), stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not answers(port, ready_path):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{Path(command[0]).name} did not answer on 127.0.0.1:{port}:\n"
                    + log.read_text(errors="replace")[-2000:]
                )
            time.sleep(0.1)
        yield process
    finally:
        stop(process, timeout=10)


def stop(process: subprocess.Popen[bytes], *, timeout: float) -> int:
    """Stop `process` by its PID: SIGTERM, SIGKILL after `timeout` s; its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)
