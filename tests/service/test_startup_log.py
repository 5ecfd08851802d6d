"""A real gunicorn start as in the pod, where $HOME cannot be written: the log stays clean."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from harness.live_server import live_server, log_problems
from tests.helpers import SEED_JSON

pytestmark = pytest.mark.slow


def test_log_problems_finds_what_an_operator_would_take_for_trouble() -> None:
    clean = "[2026-11-21 20:16:40 +0000] [1146] [INFO] Booting worker with pid: 1155"
    assert log_problems(clean) == []
    for line in (
        "[2026-11-21 20:16:40 +0000] [1146] [ERROR] Control server error: [Errno 30]",
        "[2026-11-21 20:16:40 +0000] [1146] [WARNING] Worker with pid 7 was terminated",
        '{"ts":"x","level":"warning","event":"model"}',
        "2026-11-21 [W:onnxruntime:Default, telemetry_1ds.cc:600 operator()] Failed to persist",
        "\x1b[0;93mcoloured\x1b[m",
        "/x.py:3: UserWarning: something",
    ):
        assert log_problems(f"{clean}\n{line}\n") == [line]


@pytest.mark.parametrize("home", ["unwritable", "writable"])
def test_start_logs_no_error_warning_or_colour_and_writes_nothing_under_home(
    tmp_path: Path, home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Even as root, nothing can be created under a regular file (the pod's HOME is read-only).
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    home_dir = blocker / "home" if home == "unwritable" else tmp_path / "home"
    if home == "writable":
        home_dir.mkdir()
    monkeypatch.setenv("HOME", str(home_dir))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("ORT_DISABLE_TELEMETRY", raising=False)
    with live_server(tmp_path) as server:
        request = urllib.request.Request(
            server.url + "/v1/predictions",
            json.dumps(SEED_JSON).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    log = server.log.read_text(errors="replace")
    assert "Booting worker" in log and "Shutting down: Master" in log, log
    assert log_problems(log) == [], log
    if home == "writable":
        # No control socket, no telemetry device id: the server leaves nothing behind in $HOME.
        assert list(home_dir.rglob("*")) == []
