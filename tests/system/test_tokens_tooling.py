"""The tokens' tooling around the service: make token, and the tokens files kept out of git."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from webservice.tokens import (
    digest,
)

ROOT = Path(__file__).resolve().parents[2]


def test_make_token_installs_only_what_serving_needs(tmp_path: Path) -> None:
    """In a fresh clone, `make token` installs the serving category, not training or test tools."""
    environment = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    plan = subprocess.run(
        ["make", "--no-print-directory", "--dry-run", "token", "name=x", f"VENV={tmp_path}/venv"],
        cwd=ROOT, env=environment, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "sync --extra-pip-args=--no-compile --categories packages" in plan
    assert "dev-packages" not in plan and "train" not in plan


def test_make_token_prints_a_token_and_its_line() -> None:
    environment = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    output = subprocess.run(
        ["make", "--no-print-directory", "-s", "token", "name=reporting"],
        cwd=ROOT, env=environment, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    token = output.split("\n\n")[1].strip()
    assert f"reporting:{digest(token).hex()}" in output


@pytest.mark.parametrize("name", ["tokens.txt", "metrics-tokens.txt"])
def test_tokens_files_made_by_hand_are_never_committed(name: str) -> None:
    ignored = subprocess.run(["git", "check-ignore", "--quiet", name], cwd=ROOT, check=False)
    assert ignored.returncode == 0, f"{name} is not ignored by git"
