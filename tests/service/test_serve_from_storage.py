"""The service serving a model straight from a bucket (`ONCOLOGY_ARTIFACTS_DIR=s3://...`), as
`make run` runs it, on a real S3 API (moto's server, `harness/s3.py`): downloaded once at start
and verified before anything loads it, or unready naming what is wrong (a missing bucket or
object, refused credentials, a store that stops answering or drops the connection in the middle
of the download), never a partial model served and nothing left behind on disk."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.live_server import LiveServer, live_server
from harness.s3 import S3Server, StallingProxy, running_s3
from oncology_model.integrity import METADATA_FILE, bundled_artifacts_dir
from tests.helpers import SEED_JSON

pytestmark = pytest.mark.slow

BUCKET = "oncology-serving"
VERSION = json.loads((bundled_artifacts_dir() / METADATA_FILE).read_text())["model_version"]
PREFIX = f"models/{VERSION}/"
URL = f"s3://{BUCKET}/{PREFIX}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3(tmp_path_factory.mktemp("s3")) as server:
        server.bucket(BUCKET)
        for path in sorted(bundled_artifacts_dir().iterdir()):
            if path.suffix in (".json", ".onnx", ".joblib"):
                server.client().put_object(
                    Bucket=BUCKET, Key=PREFIX + path.name, Body=path.read_bytes()
                )
        yield server


@pytest.fixture
def scratch() -> Iterator[Path]:
    """The server's TMPDIR: short (gunicorn's socket path lives there), watched for leftovers."""
    folder = Path(tempfile.mkdtemp(prefix="oncology-s3-"))
    folder.chmod(0o755)  # nginx's workers (as `nobody` under root) reach the socket in it
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def serving_env(s3: S3Server, scratch: Path, url: str = URL, **changes: str) -> dict[str, str]:
    return {
        **s3.environment(),
        "ONCOLOGY_ARTIFACTS_DIR": url,
        "ONCOLOGY_STORAGE_TIMEOUT": "2",
        "TMPDIR": str(scratch),
        **changes,
    }


def get(server: LiveServer, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + path, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # nosec B310: loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def failed_detail(server: LiveServer) -> str:
    """/readyz's reason once the worker is up and has refused its model."""
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status, answer = get(server, "/readyz")
        except OSError:
            status, answer = 0, {}
        if status == 200:
            raise AssertionError("the service became ready")
        detail = str(answer.get("detail", ""))
        if "failed to load" in detail:
            return detail
        time.sleep(0.1)
    raise TimeoutError(server.log.read_text()[-3000:])


def grpc_model_version(server: LiveServer) -> str:
    """The model version the gRPC process serves (ModelMetadata)."""
    import grpc

    from webservice.grpcserver.protocol import inference_stub, pb

    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = inference_stub(channel)
        metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="oncology"), timeout=10)
    return str(metadata.versions[0])


def leftovers(scratch: Path) -> list[str]:
    return sorted(path.name for path in scratch.glob("oncology-model-*"))


def test_serves_the_model_downloaded_from_the_bucket(
    s3: S3Server, tmp_path: Path, scratch: Path
) -> None:
    with live_server(tmp_path, workers=2, env=serving_env(s3, scratch)) as server:
        status, ready = get(server, "/readyz")
        status_prediction, answer = get(server, "/v1/predictions", SEED_JSON)
        assert leftovers(scratch), "the local copy is kept while serving"
        grpc_version = grpc_model_version(server)
    assert status == 200 and ready["model_version"] == VERSION
    assert status_prediction == 200 and answer["model_version"] == VERSION
    assert grpc_version == VERSION  # the gRPC process loads the same local copy
    log = server.log.read_text()
    downloads = [line for line in log.splitlines() if "downloaded from" in line]
    assert len(downloads) == 1, downloads  # once, by gunicorn's master, for all its processes
    assert f"model {VERSION} downloaded from {URL} (3 objects," in downloads[0]
    assert s3.secret not in log
    assert leftovers(scratch) == [], "the local copy is removed at exit"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing bucket", "metadata.json: the bucket no-such-bucket does not exist"),
        ("missing object", "set below"),
        ("wrong credentials", "the object store refused the credentials"),
    ],
)
def test_unready_naming_what_is_wrong(
    s3: S3Server, tmp_path: Path, scratch: Path, case: str, message: str
) -> None:
    url, changes = URL, {}
    if case == "missing bucket":
        url = "s3://no-such-bucket/models/"
    elif case == "missing object":
        url = f"s3://{BUCKET}/incomplete/"
        for name in (METADATA_FILE, "model.onnx"):  # model.joblib never arrived
            s3.client().copy_object(
                Bucket=BUCKET, Key=f"incomplete/{name}", CopySource=f"{BUCKET}/{PREFIX}{name}"
            )
        message = f"model artifact s3://{BUCKET}/incomplete/model.joblib does not exist"
    else:
        changes = {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    env = serving_env(s3, scratch, url, **changes)
    with live_server(tmp_path, workers=1, env=env, wait=False) as server:
        detail = failed_detail(server)
        status, answer = get(server, "/v1/predictions", SEED_JSON)
    assert message in detail
    assert status == 503 and message in answer["detail"]
    log = server.log.read_text()
    assert message in log and "Traceback" not in log and s3.secret not in log
    assert leftovers(scratch) == []


@pytest.mark.parametrize("mode", ["stall", "cut"])
def test_a_store_that_stops_answering_mid_download_leaves_it_unready(
    s3: S3Server, tmp_path: Path, scratch: Path, mode: str
) -> None:
    # model.joblib is 19 kB: its answer's headers and about 1.5 kB of it pass, then nothing.
    with StallingProxy(s3.port, b"model.joblib", allowed=2_000, mode=mode) as proxy:
        env = serving_env(s3, scratch, **s3.environment(endpoint=proxy.endpoint))
        env.update({"ONCOLOGY_ARTIFACTS_DIR": URL, "ONCOLOGY_STORAGE_TIMEOUT": "2"})
        with live_server(tmp_path, workers=1, env=env, wait=False) as server:
            detail = failed_detail(server)
            status, _ = get(server, "/v1/predictions", SEED_JSON)
            on_disk = leftovers(scratch)
        assert proxy.triggered.is_set()
    expected = "stopped answering"
    assert f"model artifact s3://{BUCKET}/{PREFIX}model.joblib" in detail and expected in detail
    assert status == 503
    assert on_disk == [], "no partial model on disk"
    assert "Traceback" not in server.log.read_text()
