"""Debian's `docker-registry` (distribution 2.x) on a free loopback port, storing in a given folder.

    with registry(Path("build/registry")) as address:   # "127.0.0.1:PORT"
        ...docker push address/oncology/oncology-webservice:TAG...

The storage folder outlives the registry: serving the same folder again (another test, the podman
play) offers the same images by the same digests. Plain HTTP on loopback, no authentication
(container engines treat 127.0.0.0/8 as an insecure registry by default). The process is stopped
by its PID, also on failure. `python -m ops.registry STORAGE` serves until interrupted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ops.loopback import free_port, serving

BINARY = "docker-registry"
CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


@contextmanager
def registry(storage: Path, *, timeout: float = 30.0) -> Iterator[str]:
    """Run a registry storing in `storage` (created if missing); yield its "127.0.0.1:PORT"."""
    binary = shutil.which(BINARY)
    if binary is None:
        raise RuntimeError(f"{BINARY} is not installed (Debian: apt-get install docker-registry)")
    storage = storage.resolve()
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="registry-") as scratch:
        config = Path(scratch) / "config.yml"
        config.write_text(CONFIG.format(storage=storage, port=port), encoding="utf-8")
        # The API root answers 200 once the registry serves (distribution's version check).
        command = [binary, "serve", str(config)]
        log = Path(scratch) / "registry.log"
        with serving(command, port=port, ready_path="/v2/", log=log, timeout=timeout):
            yield f"127.0.0.1:{port}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("storage", type=Path, help="the registry's storage folder")
    args = parser.parse_args()
    with registry(args.storage) as address:
        print(f"registry: serving {args.storage} on {address} (Ctrl-C stops it)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
