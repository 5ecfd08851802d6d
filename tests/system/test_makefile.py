"""What a new user meets first: `make help`, what `make run` installs, and a clean git tree."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make(*args: str) -> str:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_help_shows_real_values_and_no_colour_when_piped() -> None:
    text = make("help")
    assert "$(" not in text
    assert "\033[" not in text
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version
    assert f"oncology-webservice-training:{version.group(1)}" in text
    lines = dict(line.split(None, 1) for line in text.strip().splitlines())
    assert {"run", "test", "train", "lint", "install"} <= set(lines)
    assert "registry.example/x:" in make("help", "tag=registry.example/x")


def test_run_installs_only_what_serving_needs() -> None:
    """`make run` depends on the serving install only: no training, test or lint tools."""
    plan = make("-n", "-B", "run")
    assert "--categories packages" in plan
    assert "train" not in plan.replace("oncology_model/training", "")
    assert "dev-packages" not in plan
    assert "-m webservice.serve" in plan


def test_train_writes_the_bundled_model_with_a_fixed_date() -> None:
    plan = make("-n", "train").replace("\\\n", " ")
    assert re.search(
        r"SOURCE_DATE_EPOCH=\d+ .*-m oncology_model.training_cli\s+--out oncology_model/artifacts",
        plan,
    ), plan


def test_tool_caches_are_ignored_not_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", ".schemathesis", ".hypothesis", ".pytest_cache"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert tracked == ""
    for cache in (".schemathesis/default/cache/x.json", ".hypothesis/x", ".pytest_cache/x"):
        subprocess.run(["git", "check-ignore", "-q", cache], cwd=ROOT, check=True)
