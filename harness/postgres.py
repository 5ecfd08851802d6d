"""A real PostgreSQL (Debian's `postgresql` package) on a free loopback port, in a temporary
folder, run as a non-root user (PostgreSQL refuses root): for the record's tests, the bench and
`make k8s-play`. Stopped and removed on exit; `stop` and `start` make an outage."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from ops.loopback import free_port

USER = "oncology"  # the database role; trusted on loopback only
DATABASE = "oncology"


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl (Debian keeps them off PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@dataclass
class Postgres:
    bin: Path
    data: Path
    port: int
    owner: str | None  # the system user that runs it when we are root

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.owner, "--"] if self.owner else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off -c max_connections=200"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.data / "server.log"),
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop it (`fast`: connections cut, as when a database goes away; `immediate`)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A started PostgreSQL with an empty database `oncology` owned by the role `oncology`."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError(
            "PostgreSQL is missing: run `make system-packages` (or apt-get install postgresql)"
        )
    owner = None
    if os.geteuid() == 0:
        owner = "postgres" if _user_exists("postgres") else "nobody"
    folder = Path(tempfile.mkdtemp(prefix="oncology-postgres-"))
    data = folder / "data"
    data.mkdir()
    if owner:
        shutil.chown(folder, owner)
        shutil.chown(data, owner)
    server = Postgres(bin_dir, data, free_port(), owner)
    try:
        server._run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            "-A",
            "trust",
            "-N",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
        )
        server.start()
        try:
            server._run(
                str(bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-U",
                USER,
                DATABASE,
            )
            yield server
        finally:
            with suppress(subprocess.CalledProcessError):  # already stopped by the test
                server.stop("immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
