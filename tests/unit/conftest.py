"""Unit tests run in one process: no server, no network, no subprocess. This fixture refuses
them, so that a test that needs one fails here and belongs in tests/service or tests/system."""

from __future__ import annotations

import socket
import subprocess
from typing import Any

import pytest


def _refused(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(
            f"a unit test may not {what}: move it to tests/service or tests/system"
        )

    return refuse


@pytest.fixture(autouse=True)
def in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess.Popen, "__init__", _refused("start a subprocess"))
    monkeypatch.setattr(socket.socket, "connect", _refused("open a network connection"))
    monkeypatch.setattr(socket.socket, "bind", _refused("listen on a port"))
