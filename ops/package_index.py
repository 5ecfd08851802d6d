"""pypiserver, a real Python package index, on a free loopback port (for the ship test).

    with package_index(work_dir) as index:
        index.upload_url, index.simple_url, index.username, index.password

pypiserver runs from its own virtual environment (pinned, made once under `work_dir`), serves the
packages folder `work_dir/packages`, requires a login (an htpasswd file with a generated password)
for uploads, never falls back to PyPI, and refuses to overwrite a version it already holds. The
process is stopped by its PID, also on failure.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import venv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ops.loopback import free_port, serving

PYPISERVER = ("pypiserver==2.4.2", "passlib==1.7.4")
USERNAME = "uploader"


@dataclass(frozen=True)
class PackageIndex:
    port: int
    username: str
    password: str

    @property
    def upload_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def simple_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple/"


def server_venv(work_dir: Path) -> Path:
    """The pypiserver virtual environment, created on first use; returns its bin folder."""
    env_dir = work_dir / "pypiserver-venv"
    marker = env_dir / ".installed"
    if not marker.exists() or marker.read_text() != " ".join(PYPISERVER):
        shutil.rmtree(env_dir, ignore_errors=True)
        venv.create(env_dir, with_pip=True)
        pip = subprocess.run(
            [str(env_dir / "bin" / "pip"), "install", "--quiet", *PYPISERVER],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if pip.returncode != 0:
            raise RuntimeError(f"installing {' '.join(PYPISERVER)} failed:\n{pip.stderr}")
        marker.write_text(" ".join(PYPISERVER))
    return env_dir / "bin"


@contextmanager
def package_index(work_dir: Path, *, timeout: float = 30.0) -> Iterator[PackageIndex]:
    """Run pypiserver on loopback with an upload login; yield where it is and the login."""
    bin_dir = server_venv(work_dir)
    packages = work_dir / "packages"
    shutil.rmtree(packages, ignore_errors=True)
    packages.mkdir(parents=True)
    password = secrets.token_urlsafe(18)
    htpasswd = work_dir / "htpasswd"
    subprocess.run(
        [str(bin_dir / "python"), "-c",
         "import sys; from passlib.apache import HtpasswdFile; "
         "f = HtpasswdFile(sys.argv[1], new=True, default_scheme='apr_md5_crypt'); "
         "f.set_password(sys.argv[2], sys.stdin.read()); f.save()",
         str(htpasswd), USERNAME],
        input=password, text=True, check=True,
    )  # fmt: skip
    port = free_port()
    command = [
        str(bin_dir / "pypi-server"), "run", "--host", "127.0.0.1", "--port", str(port),
        "--passwords", str(htpasswd), "--authenticate", "update",
        "--disable-fallback", str(packages),
    ]  # fmt: skip
    log = work_dir / "pypiserver.log"
    with serving(command, port=port, ready_path="/health", log=log, timeout=timeout):
        yield PackageIndex(port, USERNAME, password)
