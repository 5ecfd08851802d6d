"""`make interop`: the real tritonclient and kserve clients against the live gunicorn server.

The clients live in their own virtual environment, build/interop (made once from
ops/interop-requirements.txt, pinned); the service runs from the project's environment on a free
loopback port, as `make run` serves it, and is stopped by its PID. The checks themselves are in
ops/interop_clients.py.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from harness.live_server import live_server

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / "build" / "interop"
REQUIREMENTS = ROOT / "ops" / "interop-requirements.txt"


def environment() -> Path:
    """The clients' interpreter, installing them when the requirements changed."""
    marker = ENV / ".installed"
    wanted = REQUIREMENTS.read_text()
    if not marker.exists() or marker.read_text() != wanted:
        venv.create(ENV, with_pip=True, clear=True)
        pip = [str(ENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
        marker.write_text(wanted)
    return ENV / "bin" / "python"


def main() -> int:
    python = environment()
    with tempfile.TemporaryDirectory() as logs, live_server(Path(logs), workers=2) as server:
        result = subprocess.run(
            [str(python), str(ROOT / "ops" / "interop_clients.py"), server.url], check=False
        )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
