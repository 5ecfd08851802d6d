"""A real S3 API on loopback for the tests: moto's standalone server (`python -m moto.server`,
the S3 REST API over HTTP) on a free port, with its credential checks on, stopped by PID; and
`StallingProxy`, a TCP relay in front of it that stops answering in the middle of a chosen
object's download, as a store that hangs or drops a connection does.

The tests reach both through the real boto3 client and `AWS_ENDPOINT_URL`, as a user would an
S3-compatible store: nothing is patched.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.loopback import free_port, stop

REGION = "us-east-1"
# moto checks credentials (IAM) once this many requests have gone by: the harness makes its user,
# its policy and its key in those, unchecked, and from then on a wrong key is refused.
SETUP_REQUESTS = 3
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def isolated_environment(endpoint: str, key_id: str, secret: str) -> dict[str, str]:
    """The AWS variables a process needs to use the store at `endpoint` with this key, and
    nothing of the machine's own AWS configuration (profiles, instance metadata)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@dataclass
class S3Server:
    process: subprocess.Popen[bytes]
    port: int
    key_id: str
    secret: str = field(repr=False)
    log: Path = field(default=Path())

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(
        self, *, endpoint: str | None = None, secret: str | None = None
    ) -> dict[str, str]:
        """Variables for a process using this store (another endpoint: a proxy in front;
        another secret: wrong credentials)."""
        return isolated_environment(
            endpoint or self.endpoint, self.key_id, self.secret if secret is None else secret
        )

    def client(self) -> Any:
        """A boto3 S3 client with the harness's own key, for setting up and inspecting."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            region_name=REGION,
        )

    def bucket(self, name: str) -> str:
        """Create the bucket `name`; its name."""
        self.client().create_bucket(Bucket=name)
        return name


@contextmanager
def running_s3(log_dir: Path) -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, credentials checked; stopped by PID."""
    import boto3

    port = free_port()
    log = log_dir / f"moto-{port}.log"
    environment = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_answering(process, port, log)
        iam = boto3.client(
            "iam",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",  # nosec B106: moto's unchecked setup requests
            region_name=REGION,
        )
        iam.create_user(UserName="tests")
        iam.put_user_policy(
            UserName="tests", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL)
        )
        key = iam.create_access_key(UserName="tests")["AccessKey"]
        yield S3Server(process, port, key["AccessKeyId"], key["SecretAccessKey"], log)
    finally:
        stop(process, timeout=10)


def _wait_until_answering(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            # Loopback, built here (B310 warns of file:/ and custom schemes).
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2)  # nosec B310
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(
        "moto's S3 server did not start (pip install 'moto[s3,server]', in the dev "
        f"packages: make install):\n{log.read_text(errors='replace')[-2000:]}"
    )


class StallingProxy:
    """A TCP relay on a free loopback port to `target_port`. Once a request naming `trigger`
    (bytes of its request line, e.g. an object's key) goes through a connection, at most
    `allowed` more bytes of answer pass on that connection; then the relay either goes silent,
    the connection left open (`mode="stall"`: a store that hangs), or cuts it (`"cut"`)."""

    def __init__(self, target_port: int, trigger: bytes, *, allowed: int, mode: str = "stall"):
        self.target_port = target_port
        self.trigger = trigger
        self.allowed = allowed
        self.mode = mode
        self.port = free_port()
        self.triggered = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = [self._listener]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="s3-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> StallingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        for sock in self._sockets:
            with suppress(OSError):
                sock.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            armed = threading.Event()
            threading.Thread(
                target=self._requests, args=(client, upstream, armed), daemon=True
            ).start()
            threading.Thread(
                target=self._answers, args=(upstream, client, armed), daemon=True
            ).start()

    def _requests(
        self, client: socket.socket, upstream: socket.socket, armed: threading.Event
    ) -> None:
        with suppress(OSError):
            while data := client.recv(65536):
                if self.trigger in data:
                    armed.set()
                    self.triggered.set()
                upstream.sendall(data)

    def _answers(
        self, upstream: socket.socket, client: socket.socket, armed: threading.Event
    ) -> None:
        budget: int | None = None
        with suppress(OSError):
            while data := upstream.recv(65536):
                if armed.is_set() and budget is None:
                    budget = self.allowed
                if budget is not None:
                    data = data[:budget]
                    budget -= len(data)
                client.sendall(data)
                if budget == 0:
                    if self.mode == "cut":
                        client.shutdown(socket.SHUT_RDWR)
                        client.close()
                    self._stopping.wait()  # silent, the connection held open
                    return
