"""Models and data in a bucket, end to end, on a real S3 API (moto's server, `harness/s3.py`),
through the commands as a user runs them: a model trained from a bucket prefix is written back
to the bucket, accepted by the gate reading both models from the bucket, served by `make run`
from the bucket (its answers name its version) and refused at start when an object is altered;
a scored file streams from bucket to bucket in bounded memory; the report lands in the bucket.
Credentials reach the commands through the environment only, and no output shows them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.scoring import generate
from harness.live_server import LiveServer
from harness.s3 import S3Server, running_s3
from oncology_model.dataset import bundled_data_path
from oncology_model.integrity import METADATA_FILE, ONNX_FILE, bundled_artifacts_dir
from ops.loopback import free_port
from tests.helpers import SEED_JSON

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "oncology-models"
BUNDLED_VERSION = json.loads((bundled_artifacts_dir() / METADATA_FILE).read_text())["model_version"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3(tmp_path_factory.mktemp("s3")) as server:
        server.bucket(BUCKET)
        yield server


def environment(s3: S3Server, **changes: str) -> dict[str, str]:
    """A clean environment for a command: PATH, the store's variables, `changes`."""
    return {
        "PATH": os.environ["PATH"],
        "SOURCE_DATE_EPOCH": "1795219200",
        "ONCOLOGY_STORAGE_TIMEOUT": "5",
        **s3.environment(),
        **changes,
    }


def run(
    module: str, *args: str, env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=600,
    )  # fmt: skip


def top_level() -> dict[str, str]:
    """This environment as a top-level shell's: not a sub-make's of `make test`."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}


def keys(s3: S3Server, prefix: str) -> dict[str, dict[str, Any]]:
    """The objects under `prefix`: key -> their listing entry."""
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"]: item for page in pages for item in page.get("Contents", [])}


def put(s3: S3Server, key: str, data: bytes) -> None:
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=data)


def publish_bundled(s3: S3Server, prefix: str) -> str:
    """The bundled model's files under `prefix` (as a training would put them); its URL."""
    for path in sorted(bundled_artifacts_dir().iterdir()):
        if path.suffix in (".json", ".onnx", ".joblib"):
            put(s3, prefix + path.name, path.read_bytes())
    return f"s3://{BUCKET}/{prefix}"


def assert_no_secret(s3: S3Server, *outputs: str) -> None:
    for output in outputs:
        assert s3.secret not in output and s3.key_id not in output


@pytest.fixture(scope="module")
def trained(s3: S3Server) -> dict[str, Any]:
    """A model trained from the bucket's data/ prefix into its models/ prefix: two data files,
    a hidden object and one in a "subfolder", both not data, which must be skipped."""
    lines = bundled_data_path().read_text().splitlines()
    put(s3, "data/a.data", ("\n".join(lines[:400]) + "\n").encode())
    put(s3, "data/b.data", ("\n".join(lines[400:680]) + "\n").encode())
    put(s3, "data/.hidden", b"not data\n")
    put(s3, "data/old/skipped.data", b"not data either\n")
    result = run(
        "oncology_model.training_cli",
        "--data", f"s3://{BUCKET}/data/",
        "--out", f"s3://{BUCKET}/models/",
        "--candidates", "logistic_regression",
        env=environment(s3),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = [k for k in keys(s3, "models/") if k.endswith("/" + METADATA_FILE)]
    assert len(found) == 1, found
    version = found[0].split("/")[1]
    return {"version": version, "url": f"s3://{BUCKET}/models/{version}/", "run": result}


def test_a_model_trained_from_a_bucket_prefix_lands_under_its_version(
    s3: S3Server, trained: dict[str, Any]
) -> None:
    version = trained["version"]
    assert version != BUNDLED_VERSION  # 680 of the 699 rows: another model
    stored = keys(s3, f"models/{version}/")
    names = {key.removeprefix(f"models/{version}/") for key in stored}
    assert {METADATA_FILE, ONNX_FILE, "model.joblib"} <= names
    assert any(name.startswith("report/") and name.endswith(".json") for name in names)
    assert any(name.startswith("report/") and name.endswith(".png") for name in names)
    assert f"dist/oncology_model-{version}-py3-none-any.whl" in names
    metadata = json.loads(
        s3.client()
        .get_object(Bucket=BUCKET, Key=f"models/{version}/{METADATA_FILE}")["Body"]
        .read()
    )
    sources = json.dumps(metadata["training_data"])  # a.data and b.data; not .hidden, not old/
    assert "a.data" in sources and "b.data" in sources
    assert ".hidden" not in sources and "skipped" not in sources
    for name, content_type in ((METADATA_FILE, "application/json"), ("report/", None)):
        if content_type:
            head = s3.client().head_object(Bucket=BUCKET, Key=f"models/{version}/{name}")
            assert head["ContentType"] == content_type
    pngs = [k for k in stored if k.endswith(".png")]
    assert s3.client().head_object(Bucket=BUCKET, Key=pngs[0])["ContentType"] == "image/png"
    assert trained["url"] in trained["run"].stdout
    assert_no_secret(s3, trained["run"].stdout, trained["run"].stderr)


def test_a_version_already_in_the_bucket_is_never_overwritten(
    s3: S3Server, trained: dict[str, Any]
) -> None:
    before = {key: item["ETag"] for key, item in keys(s3, "models/").items()}
    again = run(
        "oncology_model.training_cli",
        "--data", f"s3://{BUCKET}/data/",
        "--out", f"s3://{BUCKET}/models/",
        "--candidates", "logistic_regression", "--no-report", "--no-wheel",
        env=environment(s3),
    )  # fmt: skip
    assert again.returncode == 1
    assert f"model {trained['version']} is already in {trained['url']}" in again.stderr
    assert "never overwritten" in again.stderr
    assert {key: item["ETag"] for key, item in keys(s3, "models/").items()} == before


@pytest.mark.parametrize(
    ("data", "changes", "message"),
    [
        ("s3://no-such-bucket/data/", {}, "the bucket no-such-bucket does not exist"),
        (f"s3://{BUCKET}/nothing-here/", {}, "no objects under s3://oncology-models/nothing-here/"),
        (f"s3://{BUCKET}/data/", {"AWS_SECRET_ACCESS_KEY": "wrong"}, "refused the credentials"),
        (f"s3://{BUCKET}/data/", {"AWS_ACCESS_KEY_ID": "AKIAWRONG"}, "refused the credentials"),
    ],
)
def test_training_from_a_bucket_fails_clearly(
    s3: S3Server, data: str, changes: dict[str, str], message: str
) -> None:
    result = run(
        "oncology_model.training_cli", "--data", data, "--out", f"s3://{BUCKET}/models/",
        env=environment(s3, **changes),
    )  # fmt: skip
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert_no_secret(s3, result.stdout, result.stderr)


def test_a_bad_data_object_is_named_by_its_url(s3: S3Server) -> None:
    put(s3, "bad/a.data", b"1000025,5,1,1,1,2,1,3,1,1,2\n1002945,5,4,4,5,7,10,3,2,1,7\n")
    result = run(
        "oncology_model.training_cli", "--data", f"s3://{BUCKET}/bad/", "--out",
        f"s3://{BUCKET}/models/", env=environment(s3),
    )  # fmt: skip
    assert result.returncode == 1
    assert f"s3://{BUCKET}/bad/a.data, line 2: class '7' is not 2 or 4" in result.stderr


def test_a_data_objects_manifest_is_checked_as_beside_a_file(s3: S3Server) -> None:
    put(s3, "single/cases.data", bundled_data_path().read_bytes())
    put(s3, "single/cases.data.manifest.json", b'{"sha256": "0000"}')
    result = run(
        "oncology_model.training_cli", "--data", f"s3://{BUCKET}/single/cases.data", "--out",
        f"s3://{BUCKET}/models/", env=environment(s3),
    )  # fmt: skip
    assert result.returncode == 1
    assert f"s3://{BUCKET}/single/cases.data does not match its manifest" in result.stderr


def test_the_gate_reads_both_models_and_the_holdout_from_the_bucket(
    s3: S3Server, trained: dict[str, Any]
) -> None:
    baseline = publish_bundled(s3, f"models/{BUNDLED_VERSION}/")
    put(s3, "holdout/bundled.data", bundled_data_path().read_bytes())
    result = run(
        "oncology_model.compare",
        "--candidate", trained["url"],
        "--baseline", baseline,
        "--holdout", f"s3://{BUCKET}/holdout/",
        "--json", f"s3://{BUCKET}/gate/compare.json",
        env=environment(s3),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    stored = s3.client().get_object(Bucket=BUCKET, Key="gate/compare.json")
    assert stored["ContentType"] == "application/json"
    gate = json.loads(stored["Body"].read())
    assert gate["accepted"] is True
    assert gate["candidate"]["model_version"] == trained["version"]
    assert gate["candidate"]["dir"] == trained["url"]
    assert gate["baseline"]["dir"] == baseline


def test_the_gate_refuses_an_altered_model_in_the_bucket(s3: S3Server) -> None:
    altered = publish_bundled(s3, "altered/")
    onnx = (bundled_artifacts_dir() / ONNX_FILE).read_bytes()
    put(s3, "altered/" + ONNX_FILE, onnx[:-1] + bytes([onnx[-1] ^ 1]))
    result = run("oncology_model.compare", "--candidate", altered, env=environment(s3))
    assert result.returncode == 2
    assert f"model artifact {altered}{ONNX_FILE} fails verification" in result.stderr


def served_from(s3: S3Server, url: str, log: Path) -> LiveServer:
    """`make run` with the model at `url`, on a free port."""
    port = free_port()
    env = {
        **top_level(),
        **environment(s3),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "1",
        "ONCOLOGY_ARTIFACTS_DIR": url,
        "ONCOLOGY_DATABASE_URL": f"sqlite:///{log.parent / f'records-{port}.sqlite3'}",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return LiveServer(process, port, log)


def test_make_run_serves_the_trained_model_from_the_bucket(
    s3: S3Server, trained: dict[str, Any], tmp_path: Path
) -> None:
    server = served_from(s3, trained["url"], tmp_path / "run.log")
    process = server.process
    try:
        ready_seconds = server.wait_ready(timeout=60)
        request = urllib.request.Request(
            server.url + "/v1/predictions",
            data=json.dumps(SEED_JSON).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # nosec B310: loopback
            answer = json.loads(response.read())
    finally:
        _stop_make(process)
    assert answer["model_version"] == trained["version"]
    log = (tmp_path / "run.log").read_text()
    line = next(line for line in log.splitlines() if "downloaded from" in line)
    assert f"model {trained['version']} downloaded from {trained['url']}" in line
    seconds = float(line.split(" in ")[-1].split(" s")[0])
    assert 0 < seconds < ready_seconds
    assert_no_secret(s3, log)


def test_make_run_stays_unready_naming_an_altered_object(
    s3: S3Server, trained: dict[str, Any], tmp_path: Path
) -> None:
    prefix = f"tampered/{trained['version']}/"
    source = s3.client()
    for key in keys(s3, f"models/{trained['version']}/"):
        if key.count("/") == 2:  # the model's own files, not report/ and dist/
            name = key.rsplit("/", 1)[1]
            source.copy_object(Bucket=BUCKET, Key=prefix + name, CopySource=f"{BUCKET}/{key}")
    joblib = source.get_object(Bucket=BUCKET, Key=prefix + "model.joblib")["Body"].read()
    put(s3, prefix + "model.joblib", joblib + b"\0")
    url = f"s3://{BUCKET}/{prefix}"
    server = served_from(s3, url, tmp_path / "run.log")
    process = server.process
    try:
        answer = _unready_answer(server)
    finally:
        _stop_make(process)
    assert f"model artifact {url}model.joblib fails verification" in answer["detail"]
    assert "refusing to load it" in (tmp_path / "run.log").read_text()


def _unready_answer(server: LiveServer, timeout: float = 60) -> dict[str, Any]:
    """/readyz's 503 answer once the worker has tried and failed to load its model."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(server.url + "/readyz", timeout=2):  # nosec B310
                raise AssertionError("the service became ready")
        except urllib.error.HTTPError as error:
            answer: dict[str, Any] = json.loads(error.read())
            if "failed to load" in answer.get("detail", ""):
                return answer
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(server.log.read_text()[-2000:])


def _stop_make(process: subprocess.Popen[bytes]) -> None:
    """Stop `make run` and the launcher under it: SIGTERM to their process group."""
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_scored_file_streams_from_bucket_to_bucket_in_bounded_memory(
    s3: S3Server, tmp_path: Path
) -> None:
    small, large = tmp_path / "small.data", tmp_path / "large.data"
    generate(small, 1_000)
    generate(large, 1_200_000)
    put(s3, "cases/small.data", small.read_bytes())
    put(s3, "cases/large.data", large.read_bytes())
    peaks = {}
    for name in ("small", "large"):
        result = run_measured(
            s3, f"s3://{BUCKET}/cases/{name}.data", "-o", f"s3://{BUCKET}/scored/{name}.csv",
            "--block-lines", "4096",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        peaks[name] = int(result.stderr.rsplit("peak-rss-kb ", 1)[1])
    scored = s3.client().get_object(Bucket=BUCKET, Key="scored/large.csv")
    assert scored["ContentType"] == "text/csv"
    lines = scored["Body"].read().splitlines()
    assert len(lines) == 1_200_001 and lines[0].endswith(
        b"prediction,malignant_probability,imputed"
    )
    size_mb = large.stat().st_size / 1e6
    grown_mb = (peaks["large"] - peaks["small"]) / 1e3
    # The input and the scored output are each larger than what the command grew by.
    assert size_mb > 30 and grown_mb < size_mb / 2, (size_mb, grown_mb)


def run_measured(
    s3: S3Server, *args: str, changes: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """oncology-predict, its peak resident memory appended to its stderr."""
    code = (
        "import resource, sys\n"
        "from oncology_model.scoring import main\n"
        "code = main(sys.argv[1:])\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(f'peak-rss-kb {peak}', file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True, text=True, env=environment(s3, **(changes or {})), cwd=ROOT,
        timeout=600,
    )  # fmt: skip


def test_a_bad_record_leaves_nothing_in_the_bucket(s3: S3Server, tmp_path: Path) -> None:
    cases = tmp_path / "cases.data"
    generate(cases, 50_000)
    put(s3, "cases/bad.data", cases.read_bytes() + b"1,2,3,4,5,6,7,8,9,99,2\n")
    put(s3, "scored/existing.csv", b"an earlier run's output\n")
    result = run_measured(
        s3, f"s3://{BUCKET}/cases/bad.data", "-o", f"s3://{BUCKET}/scored/bad.csv",
        "--block-lines", "4096",
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        "line 50001" in result.stderr
        and f"s3://{BUCKET}/scored/bad.csv was not written" in result.stderr
    )
    assert "scored/bad.csv" not in keys(s3, "scored/")
    assert s3.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    again = run_measured(
        s3, f"s3://{BUCKET}/cases/bad.data", "-o", f"s3://{BUCKET}/scored/existing.csv"
    )
    assert again.returncode == 1
    body = s3.client().get_object(Bucket=BUCKET, Key="scored/existing.csv")["Body"].read()
    assert body == b"an earlier run's output\n"


def test_make_upload_report_puts_the_figures_under_the_model_version(
    s3: S3Server, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.json").write_text('{"chosen": "logistic_regression"}\n')
    (report / "roc.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    gate = tmp_path / "compare.json"
    gate.write_text('{"accepted": true}\n')
    coverage = tmp_path / "coverage"  # what `make coverage` writes
    (coverage / "html").mkdir(parents=True)
    (coverage / "html" / "index.html").write_text("<html></html>\n")
    (coverage / "coverage.json").write_text('{"totals": {"percent_covered": 90.0}}\n')
    result = subprocess.run(
        ["make", "--no-print-directory", "upload-report", f"bucket=s3://{BUCKET}/reports",
         f"report_dir={report}", f"gate_json={gate}", f"coverage_report={coverage}"],
        capture_output=True, text=True, cwd=ROOT, env={**top_level(), **environment(s3)},
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = f"reports/{BUNDLED_VERSION}/"
    stored = keys(s3, prefix)
    types = {
        key.removeprefix(prefix): s3.client().head_object(Bucket=BUCKET, Key=key)["ContentType"]
        for key in stored
    }
    assert types["report/report.json"] == "application/json"
    assert types["report/roc.png"] == "image/png"
    assert types["gate/compare.json"] == "application/json"
    assert types["coverage/html/index.html"] == "text/html; charset=utf-8"
    assert types["coverage/coverage.json"] == "application/json"
    assert_no_secret(s3, result.stdout, result.stderr)


def test_confirmed_cases_export_to_the_bucket_and_train_from_it(
    s3: S3Server, tmp_path: Path
) -> None:
    """`oncology-cases export -o s3://...`: the CSV and its manifest land in the bucket, and a
    training from that prefix checks the manifest and names it in the model's metadata."""
    from tests.conftest import ClosingClient
    from tests.unit.test_cases import TUMORS
    from webservice import create_app

    database = f"sqlite:///{tmp_path / 'record.sqlite3'}"
    app = create_app({"TESTING": True, "DATABASE_URL": database})
    app.test_client_class = ClosingClient
    client = app.test_client()
    answers = client.post("/v1/predictions/batch", json={"tumors": TUMORS * 40}).get_json()
    outcomes = [
        {"prediction_id": answer["prediction_id"], "outcome": outcome, "source": "histology"}
        for answer, outcome in zip(
            answers["predictions"], ["benign", "malignant"] * 40, strict=True
        )
    ]
    assert client.post("/v1/outcomes", json={"outcomes": outcomes}).status_code == 200
    env = environment(s3, ONCOLOGY_DATABASE_URL=database)
    result = run(
        "webservice.records.cases", "export", "-o", f"s3://{BUCKET}/confirmed/cases.csv", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "exported 80 confirmed cases (40 benign, 40 malignant)" in result.stderr
    found = keys(s3, "confirmed/")
    assert set(found) == {"confirmed/cases.csv", "confirmed/cases.csv.manifest.json"}
    csv = s3.client().get_object(Bucket=BUCKET, Key="confirmed/cases.csv")
    assert csv["ContentType"] == "text/csv"
    manifest = json.loads(
        s3.client()
        .get_object(Bucket=BUCKET, Key="confirmed/cases.csv.manifest.json")["Body"]
        .read()
    )
    assert manifest["sha256"] == hashlib.sha256(csv["Body"].read()).hexdigest()
    out = tmp_path / "model"
    trained = run(
        "oncology_model.training_cli", "--data", f"s3://{BUCKET}/confirmed/", "--out", str(out),
        "--no-report", "--candidates", "logistic_regression", env=env,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["training_data"]["manifests"] == [manifest]
    assert_no_secret(s3, result.stdout, result.stderr, trained.stdout, trained.stderr)
    prefix = run("webservice.records.cases", "export", "-o", f"s3://{BUCKET}/confirmed/", env=env)
    assert prefix.returncode == 1 and "is a prefix: name the object" in prefix.stderr
