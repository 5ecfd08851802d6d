"""`make interop`: the real tritonclient and kserve clients against the live service, over REST
and gRPC.

The clients live in their own virtual environment, build/interop (made once from
ops/interop-requirements.txt, pinned); the service runs from the project's environment on free
loopback ports, as `make run` serves it, with a second one behind a tokens file for the token
checks, and both are stopped by their PIDs. The checks themselves are in ops/interop_clients.py,
run once for tritonclient and once for kserve (their gRPC messages cannot share a process).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from harness.live_server import live_server
from webservice.tokens import new_token

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
    token, line = new_token("interop")
    with tempfile.TemporaryDirectory() as logs:
        tokens = Path(logs) / "tokens"
        tokens.write_text(line + "\n")
        guarded_env = {"ONCOLOGY_TOKENS_FILE": str(tokens), "ONCOLOGY_RECORDS": "off"}
        with (
            live_server(Path(logs), workers=2) as server,
            live_server(Path(logs), workers=1, env=guarded_env) as guarded,
        ):
            codes = [
                subprocess.run(
                    [str(python), str(ROOT / "ops" / "interop_clients.py"), family, server.url,
                     server.grpc_target, guarded.grpc_target],
                    env={**os.environ, "INTEROP_TOKEN": token},
                    capture_output=True,
                    text=True,
                    check=False,
                )
                for family in ("triton", "kserve")
            ]  # fmt: skip
    passed = failed = 0
    for result in codes:
        for line in result.stdout.splitlines():
            counts = re.fullmatch(r"interop: (\d+) passed, (\d+) failed", line)
            if counts:
                passed, failed = passed + int(counts[1]), failed + int(counts[2])
            else:
                print(line)
        if result.returncode and not result.stdout.strip().endswith("failed"):
            print(result.stderr[-4000:])
            failed += 1
    print(f"interop: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
