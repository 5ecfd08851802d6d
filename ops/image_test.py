"""`make image-test`: build the real images, and ship a new model the whole way, for real.

Starts a Docker engine of its own when none answers (Debian's docker.io, own data and exec roots,
no bridge, no iptables), builds a stand-in base image when the official one cannot be pulled, and
drives the Makefile's own targets (`make image`, `publish-model`, `publish`, `deploy -n`):

1. `make image`: the default build (trains the bundled data); the container runs read-only as its
   non-root user: readiness time, a prediction, the HEALTHCHECK, the size, the model it serves,
   nginx in front of gunicorn, and predictions answered beside slow clients.
2. New data (the bundled file with every 10th row removed) is trained through the training Job's
   entry point: the training image, read-only, no network, /data mounted read-only, /out written.
3. The release gate accepts that candidate; a degraded one (20 % of the labels flipped) is refused.
   The first image, unchanged, serves the candidate straight from a bucket (moto's S3 server on
   loopback, `harness/s3.py`; its pruned botocore included), and refuses an altered copy: unready,
   naming the object.
4. `make publish-model` uploads the candidate's wheel to pypiserver on loopback (a second upload of
   the same version is refused); a fresh venv outside the tree installs it from there and runs the
   seed's system test.
5. `make image model=DIR` builds around the candidate (a tampered copy fails, naming the file);
   `make publish` pushes both images to Debian's docker-registry on loopback (storage:
   build/registry, kept for the podman play); the local tags are deleted; the image is pulled back
   by the tag `make deploy` would set, run read-only, and must serve the candidate's version.

Everything it starts is stopped by PID or container id, also on failure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import venv
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ops.loopback import free_port
from ops.package_index import package_index
from ops.registry import registry

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_BASE = "python:3.11-slim-bookworm"
STANDIN_BASE = "oncology-standin-python:3.11-bookworm"
ENGINE_DIR = Path("/var/lib/oncology-image-test")
RUN_DIR = Path("/run/oncology-image-test")
# 300 MB until the prediction record, whose database layer adds about 40 MB (SQLAlchemy 29, psycopg
# with its own libpq 13, Alembic 3). boto3, to serve a model from a bucket, adds 10 MB (botocore's
# service descriptions pruned to S3's and STS's in the Dockerfile, 36 without): 336.6 MB measured.
# The gRPC service adds about 20 MB (grpcio's compiled core 17, its Python side and the health
# service 2; protobuf was there for onnxruntime): 355.9 MB measured with both.
MAX_IMAGE_MB = 360
MAX_READY_SECONDS = 3.0
UID = "10001"
WORK = ROOT / "build" / "ship-test"
REGISTRY_STORAGE = ROOT / "build" / "registry"
NAMESPACE = "oncology"
VENV_BIN = ROOT / ".venv" / "bin"
BUNDLED_ARTIFACTS = ROOT / "oncology_model" / "artifacts"


def say(message: str) -> None:
    print(f"image-test: {message}", flush=True)


def docker(
    *args: str, check: bool = True, capture: bool = True, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = None if env is None else {**os.environ, **env}
    return subprocess.run(
        ["docker", *args], check=check, capture_output=capture, text=True, env=environment
    )


def engine_answers() -> bool:
    return docker("version", "--format", "{{.Server.Version}}", check=False).returncode == 0


@contextmanager
def docker_engine() -> Iterator[None]:
    """Use the engine DOCKER_HOST points at, or start a private dockerd and stop it after."""
    if engine_answers():
        yield
        return
    if not shutil.which("dockerd"):
        say("no Docker engine: installing Debian's docker.io")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "docker.io"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    socket = RUN_DIR / "docker.sock"
    log = (RUN_DIR / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            "dockerd",
            f"--data-root={ENGINE_DIR}",
            f"--exec-root={RUN_DIR / 'exec'}",
            f"--pidfile={RUN_DIR / 'dockerd.pid'}",
            f"--host=unix://{socket}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    os.environ["DOCKER_HOST"] = f"unix://{socket}"
    say(f"started dockerd (PID {process.pid})")
    try:
        deadline = time.monotonic() + 60
        while not engine_answers():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: see {RUN_DIR / 'dockerd.log'}")
            time.sleep(0.5)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        say(f"stopped dockerd (PID {process.pid})")


def base_image() -> str:
    """The official base when it can be pulled; otherwise a local stand-in (built once)."""
    if docker("pull", "--quiet", OFFICIAL_BASE, check=False).returncode == 0:
        return OFFICIAL_BASE
    if docker("image", "inspect", STANDIN_BASE, check=False).returncode != 0:
        say(f"{OFFICIAL_BASE} cannot be pulled here: building the stand-in {STANDIN_BASE}")
        subprocess.run([str(ROOT / "ops" / "standin-base.sh"), STANDIN_BASE], check=True)
    else:
        say(f"{OFFICIAL_BASE} cannot be pulled here: using the stand-in {STANDIN_BASE}")
    return STANDIN_BASE


def make(*args: str, check: bool = True, env: Mapping[str, str] | None = None) -> str:
    """Run one of the Makefile's targets as a user would (not as a sub-make of this one)."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }
    result = subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
        env={**environment, **(env or {})},
    )  # fmt: skip
    if check and result.returncode != 0:
        print(result.stdout[-6000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
        raise RuntimeError(f"make {' '.join(args)} failed")
    return result.stdout + result.stderr


def make_image(base: str, model: Path | None = None) -> None:
    """`make image [model=DIR]` with this engine's settings (host network, classic builder)."""
    started = time.monotonic()
    say(f"make image {f'model={model}' if model else '(trains the bundled data)'}")
    make("image", f"base_image={base}", *([f"model={model}"] if model else []),
         "DOCKER_BUILD_FLAGS=--network host", env=BUILD_ENV)  # fmt: skip
    say(f"built in {time.monotonic() - started:.0f} s")


BUILD_ENV = {"DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "0")}


def model_version(artifacts: Path) -> str:
    return str(json.loads((artifacts / "metadata.json").read_text())["model_version"])


def image_tag(version: str) -> str:
    return version.replace("+", "-")


def get_or_post(
    port: int, path: str, body: Mapping[str, object] | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        if body is None:
            connection.request("GET", path)
        else:
            headers = {"Content-Type": "application/json"}
            connection.request("POST", path, json.dumps(body).encode(), headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def check_image(image: str, version: str) -> dict[str, object]:
    """Run `image` read-only as its non-root user; it must serve model `version`, over HTTP and
    over gRPC."""
    port, grpc_port = free_port(), free_port()
    figures: dict[str, object] = {}
    inspect = json.loads(docker("image", "inspect", image).stdout)[0]
    size_mb = inspect["Size"] / 1e6
    config = inspect["Config"]
    figures["image_mb"] = round(size_mb, 1)
    assert size_mb <= MAX_IMAGE_MB, f"image is {size_mb:.0f} MB, over {MAX_IMAGE_MB} MB"
    assert config["User"].split(":")[0] == UID, f"image runs as {config['User']!r}, not {UID}"
    assert config["Healthcheck"]["Test"], "no HEALTHCHECK"
    assert config["Entrypoint"] == ["python", "-m", "webservice.serve"], config["Entrypoint"]
    label = config["Labels"]["org.opencontainers.image.version"]
    assert label == version, f"OCI version label {label!r}, not the model {version}"

    started = time.monotonic()
    container = docker(
        "run", "--detach", "--read-only", "--network", "host", "--user", f"{UID}:{UID}",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--env", f"PORT={port}", "--env", f"GRPC_PORT={grpc_port}", "--env", "WORKERS=2",
        "--health-interval", "1s", "--health-start-period", "5s",
        image,
    ).stdout.strip()  # fmt: skip
    try:
        ready = None
        while time.monotonic() - started < 30:
            try:
                if get_or_post(port, "/readyz")[0] == 200:
                    ready = time.monotonic() - started
                    break
            except OSError:
                pass
            time.sleep(0.05)
        assert ready is not None, "container never became ready:\n" + logs(container)
        figures["start_to_ready_s"] = round(ready, 2)
        assert ready <= MAX_READY_SECONDS, f"ready after {ready:.2f} s, over {MAX_READY_SECONDS} s"

        # The tumor Swagger UI pre-fills: the example the OpenAPI document gives for each field.
        document = json.loads(get_or_post(port, "/swagger.json")[1])
        fields = document["definitions"]["Tumor"]["properties"]
        seed = {name: field["example"] for name, field in fields.items()}
        status, body = get_or_post(port, "/v1/predictions", seed)
        answer = json.loads(body)
        assert status == 200 and answer["prediction"] == "benign", (status, body)
        status, body = get_or_post(port, "/v1/predictions", {**seed, "mitoses": 11})
        assert status == 422 and b"mitoses" in body, (status, body)
        served = json.loads(get_or_post(port, "/readyz")[1])["model_version"]
        card = json.loads(get_or_post(port, "/v1/model")[1])["version"]
        assert served == card == answer["model_version"] == version, (served, card, version)
        figures["serves"] = served
        figures["grpc_ready_s"] = grpc_answers(grpc_port, version, started)

        figures["slow_clients"] = slow_clients_hold_no_worker(port, seed)
        commands = docker(
            "exec", container, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"
        ).stdout
        assert "nginx: master" in commands and "gunicorn" in commands, commands

        whoami = docker("exec", container, "python", "-c", "import os; print(os.getuid())")
        assert whoami.stdout.strip() == UID, whoami.stdout
        write = docker("exec", container, "touch", "/app/x", check=False)
        assert write.returncode != 0, "the root filesystem is writable"
        parser = docker("exec", container, "python", "-c", "import gunicorn_h1c", check=False)
        assert parser.returncode == 0, "no C header parser for gunicorn:\n" + parser.stderr
        compiler = docker("exec", container, "sh", "-c", "command -v gcc cc", check=False)
        assert compiler.returncode != 0, "a compiler in the runtime image: " + compiler.stdout
        for command in ("oncology-db", "oncology-quality", "oncology-cases"):  # no pandas here
            usage = docker("exec", container, command, "--help", check=False)
            assert usage.returncode == 0 and "usage:" in usage.stdout, command + usage.stderr
        protoc = docker("exec", container, "python", "-c", "import grpc_tools", check=False)
        assert protoc.returncode != 0, "grpcio-tools (build only) in the runtime image"

        health = "starting"
        deadline = time.monotonic() + 20
        while health != "healthy" and time.monotonic() < deadline:
            time.sleep(0.5)
            health = docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout
            health = health.strip()
        figures["healthcheck"] = health
        assert health == "healthy", f"HEALTHCHECK says {health}:\n" + logs(container)
    finally:
        docker("rm", "--force", container, check=False)
    return figures


def grpc_answers(grpc_port: int, version: str, started: float) -> float:
    """Seconds from the container's start until its gRPC service answered a ModelInfer (the
    seed tumor, raw contents) with model `version`; the messages compiled in the builder."""
    import grpc
    import numpy as np

    from oncology_model.verify import SEED_TUMOR
    from webservice.grpcserver.protocol import inference_stub, pb

    tensor = pb.ModelInferRequest.InferInputTensor(name="tumors", datatype="FP32", shape=[1, 9])
    row = np.array([list(SEED_TUMOR)], dtype="<f4")
    request = pb.ModelInferRequest(
        model_name="oncology", inputs=[tensor], raw_input_contents=[row.tobytes()]
    )
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = inference_stub(channel)
        answer = stub.ModelInfer(request, timeout=30, wait_for_ready=True)
    assert answer.model_version == version, f"gRPC serves {answer.model_version}, not {version}"
    return round(time.monotonic() - started, 2)


def slow_clients_hold_no_worker(port: int, tumor: Mapping[str, object]) -> str:
    """Eight connections (four per worker) dripping their headers: predictions still answer."""
    drippers = []
    try:
        for _ in range(8):
            connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            connection.sendall(b"POST /v1/predictions HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
            drippers.append(connection)
        for _ in range(5):
            status, _ = get_or_post(port, "/v1/predictions", tumor)
            assert status == 200, f"a prediction beside 8 slow clients: {status}"
    finally:
        for connection in drippers:
            connection.close()
    return "8 slow clients, 5 predictions answered"


def train_as_the_job(image: str, data: Path, out: Path) -> Path:
    """Run the training image as the Job does (read-only, non-root, no network, /data read-only,
    /out the output volume); return the artifacts folder after checking the wheel carries them."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    os.chown(out, int(UID), int(UID))
    started = time.monotonic()
    result = docker(
        "run", "--rm", "--read-only", "--network", "none", "--user", f"{UID}:{UID}",
        "--cap-drop", "ALL", "--tmpfs", "/tmp",  # nosec B108: in the container
        "--volume", f"{data}:/data:ro", "--volume", f"{out}:/out",
        image,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"training Job failed:\n{result.stdout}\n{result.stderr}"
    assert "chosen:" in result.stdout, result.stdout
    compiler = docker(
        "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", "command -v gcc cc",
        check=False,
    )  # fmt: skip
    assert compiler.returncode != 0, "a compiler in the training image: " + compiler.stdout
    say(f"trained as the Job in {time.monotonic() - started:.0f} s")
    artifacts = out / "artifacts"
    version = model_version(artifacts)
    wheel = out / "dist" / f"oncology_model-{version}-py3-none-any.whl"
    listing = subprocess.run(
        [sys.executable, "-c", WHEEL_CHECK, str(wheel), str(artifacts)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert (out / "report" / "report.json").is_file(), "no report on the output volume"
    return artifacts


# The wheel the Job wrote carries exactly the artifacts it wrote.
WHEEL_CHECK = """
import sys, zipfile, pathlib
wheel, artifacts = zipfile.ZipFile(sys.argv[1]), pathlib.Path(sys.argv[2])
for name in ("model.onnx", "model.joblib", "metadata.json"):
    assert wheel.read("oncology_model/artifacts/" + name) == (artifacts / name).read_bytes(), name
"""


def serves_from_bucket(image: str, artifacts: Path) -> dict[str, object]:
    """`image` serves the model of `artifacts` from a bucket (ONCOLOGY_ARTIFACTS_DIR=s3://...),
    not its own; an altered copy leaves it unready, naming the object. The store's key reaches
    the container through the docker client's environment, never its command line."""
    from harness.s3 import running_s3

    version = model_version(artifacts)
    figures: dict[str, object] = {}
    with running_s3(WORK) as s3:
        client = s3.client()
        client.create_bucket(Bucket="oncology-models")
        for path in sorted(p for p in artifacts.iterdir() if p.is_file()):
            for prefix in ("models/", "altered/"):
                body = path.read_bytes()
                if prefix == "altered/" and path.suffix == ".onnx":
                    body = body[:-1] + bytes([body[-1] ^ 1])
                client.put_object(
                    Bucket="oncology-models", Key=f"{prefix}{version}/{path.name}", Body=body
                )
        for prefix in ("models/", "altered/"):
            port = free_port()
            url = f"s3://oncology-models/{prefix}{version}/"
            store = s3.environment()
            passed = [arg for name in store for arg in ("--env", name)]
            container = docker(
                "run", "--detach", "--read-only", "--network", "host", "--user", f"{UID}:{UID}",
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--env", f"PORT={port}", "--env", "WORKERS=1",
                "--env", f"ONCOLOGY_ARTIFACTS_DIR={url}", *passed, image,
            env=store).stdout.strip()  # fmt: skip
            try:
                answer = _settled_readiness(port, container)
                if prefix == "models/":
                    assert answer.get("model_version") == version, answer
                    assert f"model {version} downloaded from {url}" in logs(container)
                    figures["serves_from_bucket"] = version
                else:
                    assert f"model artifact {url}model.onnx fails verification" in str(
                        answer.get("detail")
                    ), answer
                    figures["altered_in_bucket"] = "unready, naming model.onnx"
                assert s3.secret not in logs(container)
            finally:
                docker("rm", "--force", container, check=False)
    say(f"the image serves {version} from a bucket and refuses an altered copy")
    return figures


def _settled_readiness(port: int, container: str) -> dict[str, Any]:
    """/readyz's answer once ready, or once the model failed to load (503 naming why)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status, body = get_or_post(port, "/readyz")
            answer: dict[str, Any] = json.loads(body)
            if status == 200 or "failed to load" in str(answer.get("detail")):
                return answer
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError("/readyz never settled:\n" + logs(container))


def logs(container: str) -> str:
    result = docker("logs", "--tail", "40", container, check=False)
    return result.stdout + result.stderr


def modified_data(folder: Path) -> Path:
    """New data for the Job: the bundled file with every 10th row removed."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rows = (ROOT / "oncology_model" / "data" / "breast-cancer-wisconsin.data").read_text()
    kept = [row for number, row in enumerate(rows.splitlines()) if number % 10 != 9]
    (folder / "new.data").write_text("\n".join(kept) + "\n")
    return folder


def degraded_candidate(work: Path) -> Path:
    """A candidate trained on the bundled rows with 20 % of the labels flipped (seeded)."""
    rows = (ROOT / "oncology_model" / "data" / "breast-cancer-wisconsin.data").read_text()
    lines = rows.splitlines()
    flipped = set(np.random.default_rng(20).choice(len(lines), len(lines) // 5, replace=False))
    for number in flipped:
        cells = lines[number].split(",")
        cells[-1] = "2" if cells[-1].strip() == "4" else "4"
        lines[number] = ",".join(cells)
    data = work / "degraded.data"
    data.write_text("\n".join(lines) + "\n")
    out = work / "degraded"
    subprocess.run(
        [str(VENV_BIN / "oncology-train"), "--data", str(data), "--out", str(out), "--no-report"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def gate(candidate: Path, json_path: Path) -> tuple[int, str]:
    result = subprocess.run(
        [str(VENV_BIN / "oncology-compare"), "--candidate", str(candidate), "--json",
         str(json_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def publish_wheel(artifacts: Path, version: str, work: Path) -> dict[str, object]:
    """`make publish-model` to a loopback pypiserver; install from it outside the tree; test."""
    with package_index(work / "index") as index:
        login = {"TWINE_USERNAME": index.username, "TWINE_PASSWORD": index.password}
        output = make("publish-model", f"index={index.upload_url}", f"model={artifacts}", env=login)
        assert index.password not in output, "the password reached the log"
        again = make("publish-model", f"index={index.upload_url}", f"model={artifacts}",
                     env=login, check=False)  # fmt: skip
        # pypiserver answers twine 400 (PyPI's code for it), the reason in the body it shows.
        assert "already exists" in " ".join(again.split()), "a second upload passed:\n" + again
        stranger = make("publish-model", f"index={index.upload_url}", f"model={artifacts}",
                        env={**login, "TWINE_PASSWORD": "wrong"}, check=False)  # fmt: skip
        assert "403 Forbidden" in stranger, "an upload without the password:\n" + stranger
        say("make publish-model: uploaded; the same version again: refused (already exists); "
            "a wrong password: 403")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="oncology-from-index-") as scratch:
            env_dir = Path(scratch) / "venv"
            venv.create(env_dir, with_pip=True)
            pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            # The dependencies from the usual index; the package only from the loopback one.
            project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
            subprocess.run([*pip, *project["dependencies"]], check=True, capture_output=True)
            subprocess.run(
                [*pip, "--index-url", index.simple_url, f"oncology-model=={version}"],
                check=True, capture_output=True,
            )  # fmt: skip
            check = seed_system_test() + (
                f"assert Classifier().model_version == {version!r}, Classifier().model_version\n"
            )
            result = subprocess.run(
                [str(env_dir / "bin" / "python"), "-c", check],
                cwd=scratch, capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert result.stdout.strip() == "ok", result.stdout + result.stderr
    say(f"oncology-model=={version} installed from the index: the seed's system test passed")
    return {"index": "uploaded, installed, system test ok"}


def seed_system_test() -> str:
    """The seed's system test (tests/system/test_wheel.py), one source for both."""
    from tests.system.test_wheel import SYSTEM_TEST

    return SYSTEM_TEST


def tampered_build_fails(artifacts: Path, base: str, work: Path) -> None:
    tampered = work / "tampered"
    shutil.rmtree(tampered, ignore_errors=True)
    shutil.copytree(artifacts, tampered)
    with (tampered / "model.joblib").open("ab") as file:
        file.write(b"\0")
    output = make("image", f"base_image={base}", f"model={tampered}",
                  "DOCKER_BUILD_FLAGS=--network host", env=BUILD_ENV, check=False)  # fmt: skip
    assert "/model/model.joblib fails verification" in output, output[-3000:]
    say("make image model=<tampered copy>: the build failed naming /model/model.joblib")


def ship_to_registry(artifacts: Path, version: str, images: tuple[str, str]) -> dict[str, object]:
    """`make publish` to a loopback registry, drop local tags, pull by `make deploy`'s tag, run."""
    shutil.rmtree(REGISTRY_STORAGE, ignore_errors=True)
    figures: dict[str, object] = {}
    with registry(REGISTRY_STORAGE) as address:
        prefix = f"{address}/{NAMESPACE}"
        output = make("publish", f"registry={prefix}", f"model={artifacts}")
        pushed = [line for line in output.splitlines() if "digest: sha256:" in line]
        assert len(pushed) == 2, output
        for name, line in zip(images, pushed, strict=True):
            say(f"pushed {prefix}/{name}: {line.strip()}")
        # The bundled model's images too (built first, above): `make k8s-play` deploys that model
        # from this registry, then redeploys to the candidate.
        bundled = make("publish", f"registry={prefix}")
        assert bundled.count("digest: sha256:") == 2, bundled
        say(f"pushed the bundled model's images to {prefix} too (for make k8s-play)")
        for name in images:
            for reference in (
                f"{name}:{image_tag(version)}",
                f"{prefix}/{name}:{image_tag(version)}",
            ):
                docker("rmi", reference)
        deploy = make("-n", "deploy", f"tag={prefix}/{images[0]}", f"model={artifacts}")
        target = deploy.split("oncology-webservice=", 1)[1].split()[0]
        assert target == f"{prefix}/{images[0]}:{image_tag(version)}", target
        pulled = docker("pull", target).stdout
        assert "Downloaded newer image" in pulled, pulled
        digest = docker("image", "inspect", "--format", "{{index .RepoDigests 0}}", target)
        say(f"pulled {target} back: {digest.stdout.strip()}")
        figures["pulled_digest"] = digest.stdout.strip().split("@")[1]
        figures.update({f"pulled_{k}": v for k, v in check_image(target, version).items()})
    say(f"registry storage kept in {REGISTRY_STORAGE.relative_to(ROOT)} (serve it again with "
        "python -m ops.registry build/registry)")  # fmt: skip
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="oncology-webservice", help="the runtime image's name")
    parser.add_argument(
        "--training-image", default="oncology-webservice-training", help="the training image's"
    )
    args = parser.parse_args()
    images = (args.image, args.training_image)
    WORK.mkdir(parents=True, exist_ok=True)
    bundled = model_version(BUNDLED_ARTIFACTS)
    with docker_engine():
        base = base_image()
        make_image(base)
        figures = check_image(f"{args.image}:{image_tag(bundled)}", bundled)

        candidate = train_as_the_job(
            f"{args.training_image}:{image_tag(bundled)}", modified_data(WORK / "data"),
            WORK / "out",
        )  # fmt: skip
        version = model_version(candidate)
        assert version != bundled, "new data, same model version"
        status, output = gate(candidate, WORK / "gate-candidate.json")
        print(output, flush=True)
        assert status == 0, f"the gate refused the candidate (exit {status})"
        status, output = gate(degraded_candidate(WORK), WORK / "gate-degraded.json")
        print(output, flush=True)
        assert status == 1 and "REFUSED" in output, f"the degraded candidate: exit {status}"
        say("gate: candidate accepted, degraded candidate refused")
        figures.update(serves_from_bucket(f"{args.image}:{image_tag(bundled)}", candidate))

        figures.update(publish_wheel(candidate, version, WORK))
        make_image(base, candidate)
        tampered_build_fails(candidate, base, WORK)
        figures.update(ship_to_registry(candidate, version, images))
    say("passed: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
