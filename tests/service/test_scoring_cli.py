"""oncology-predict as a command on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from bench.scoring import generate


def test_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    source = tmp_path / "cases.data"
    generate(source, 300)
    piped = subprocess.run(
        [sys.executable, "-m", "oncology_model.scoring", str(source)],
        capture_output=True, check=True,
    )  # fmt: skip
    assert b"\r" not in piped.stderr and len(piped.stdout.splitlines()) == 301
    controller, terminal = pty.openpty()
    try:
        command = [sys.executable, "-m", "oncology_model.scoring", str(source)]
        subprocess.run([*command, "-o", str(tmp_path / "o")], stderr=terminal, check=True)
        shown = os.read(controller, 65536)
    finally:
        os.close(controller)
        os.close(terminal)
    assert b"\r[" in shown and b"300 records" in shown
