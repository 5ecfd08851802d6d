"""Bearer tokens on the real server: rotation without a restart, a broken tokens file stopping
gunicorn before it listens, the tokens command without a warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.live_server import LiveServer, live_server
from harness.load import process_tree
from tests.helpers import SEED_JSON
from tests.unit.test_auth import (
    ALICE,
    ALICE_LINE,
    BOB,
    BOB_LINE,
    bearer,
    kubernetes_secret,
    write,
)
from webservice.tokens import (
    CHECK_SECONDS,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "{dir}/absent: cannot read the tokens file: No such file or directory"),
        ("folder", "{dir}/folder: cannot read the tokens file: Is a directory"),
        (
            "alice\nbob\n",
            "{dir}/tokens line 1: expected NAME:SHA256HEX[:PERMISSION,...]; {dir}/tokens line 2: "
            "expected NAME:",
        ),
    ],
    ids=["missing", "a-folder", "broken-lines"],
)
def test_gunicorn_refuses_to_start_in_one_line_before_listening(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    if content is None:
        path = tmp_path / "absent"
    elif content == "folder":
        path = tmp_path / "folder"
        path.mkdir()
    else:
        path = write(tmp_path / "tokens", content)
    environment = {**os.environ, "ONCOLOGY_METRICS_TOKENS_FILE": str(path), "PORT": "0"}
    run = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "webservice:create_app()"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1
    log = run.stdout + run.stderr
    assert "Listening at" not in log and "Traceback" not in log, log
    errors = [line for line in log.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, log
    assert "] Cannot start: " + reason.format(dir=tmp_path) in errors[0], log


@pytest.mark.slow
def test_tokens_rotate_on_the_real_server_without_a_restart(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    path = kubernetes_secret(secret, ALICE_LINE + "\n")
    environment = {"ONCOLOGY_TOKENS_FILE": str(path)}
    with live_server(tmp_path, workers=2, env=environment) as server:
        processes = process_tree(server.process.pid)
        assert statuses(server, ALICE) == {200} and statuses(server, BOB) == {401}
        kubernetes_secret(secret, BOB_LINE + "\n")
        # Each worker stats the file at most once a CHECK_SECONDS, on its next request: past
        # that, whichever worker answers has read the new file.
        time.sleep(2 * CHECK_SECONDS + 0.5)
        assert statuses(server, BOB) == {200} and statuses(server, ALICE) == {401}
        kubernetes_secret(secret, f"{BOB_LINE}\nalice {ALICE}\n")  # broken: keep bob's token
        time.sleep(2 * CHECK_SECONDS + 0.5)
        assert statuses(server, BOB) == {200} and statuses(server, ALICE) == {401}
        assert process_tree(server.process.pid) == processes, "no worker was restarted"
        assert server.status("/readyz") == 200
        log = server.log.read_text()
    assert "line 2: expected NAME:SHA256HEX[:PERMISSION,...]; keeping the previous 1 tokens" in log
    for token in (ALICE, BOB):
        assert token not in log


def test_the_module_runs_without_a_warning() -> None:
    run = subprocess.run(
        [sys.executable, "-W", "error", "-m", "webservice.tokens", "new", "reporting"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert run.stderr == ""
    assert "paste it into the file" in run.stdout


def statuses(server: LiveServer, token: str, requests: int = 20) -> set[int]:
    """The statuses of `requests` predictions, each on a new connection (so both workers)."""
    seen = set()
    for _ in range(requests):
        request = urllib.request.Request(
            server.url + "/v1/predictions",
            data=json.dumps(SEED_JSON).encode(),
            headers={"Content-Type": "application/json", **bearer(token)},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                seen.add(response.status)
        except urllib.error.HTTPError as error:
            seen.add(error.code)
    return seen
