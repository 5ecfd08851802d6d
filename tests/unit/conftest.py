"""Unit tests run in one process: no server, no network, no subprocess. This fixture refuses
them, so that a test that needs one fails here and belongs in tests/service or tests/system."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


def _refused(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(
            f"a unit test may not {what}: move it to tests/service or tests/system"
        )

    return refuse


@pytest.fixture(scope="module", autouse=True)
def in_one_process() -> Iterator[None]:
    """For a whole module, its module-scoped fixtures too (autouse ones are set up first)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", _refused("start a subprocess"))
        patch.setattr(socket.socket, "connect", _refused("open a network connection"))
        patch.setattr(socket.socket, "bind", _refused("listen on a port"))
        yield
