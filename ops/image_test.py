"""`make image-test`: build the real image and check it as an operator would run it.

Starts a Docker engine of its own when none answers (Debian's docker.io, own data and exec roots,
no bridge, no iptables), builds a stand-in base image when the official one cannot be pulled,
builds with `--network host`, runs the container read-only as its non-root user, and checks
readiness time, a prediction, the HEALTHCHECK status and the image size. Everything it starts is
stopped by PID or container id, also on failure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_BASE = "python:3.11-slim-bookworm"
STANDIN_BASE = "oncology-standin-python:3.11-bookworm"
ENGINE_DIR = Path("/var/lib/oncology-image-test")
RUN_DIR = Path("/run/oncology-image-test")
MAX_IMAGE_MB = 300
MAX_READY_SECONDS = 3.0
UID = "10001"


def say(message: str) -> None:
    print(f"image-test: {message}", flush=True)


def docker(
    *args: str, check: bool = True, capture: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], check=check, capture_output=capture, text=True)


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


def build(image: str, version: str, base: str, target: str | None = None) -> None:
    args = ["build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}"]
    args += ["--build-arg", f"VERSION={version}", "--tag", image]
    if target:
        args += ["--target", target]
    say(f"building {image} ({target or 'runtime'}) from {base}")
    started = time.monotonic()
    result = subprocess.run(
        ["docker", *args, str(ROOT)],
        env={**os.environ, "DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "0")},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        print(result.stdout[-6000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
        raise RuntimeError(f"docker build of {image} failed")
    say(f"built {image} in {time.monotonic() - started:.0f} s")


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


def check_image(image: str, port: int) -> dict[str, object]:
    figures: dict[str, object] = {}
    inspect = json.loads(docker("image", "inspect", image).stdout)[0]
    size_mb = inspect["Size"] / 1e6
    config = inspect["Config"]
    figures["image_mb"] = round(size_mb, 1)
    assert size_mb <= MAX_IMAGE_MB, f"image is {size_mb:.0f} MB, over {MAX_IMAGE_MB} MB"
    assert config["User"].split(":")[0] == UID, f"image runs as {config['User']!r}, not {UID}"
    assert config["Healthcheck"]["Test"], "no HEALTHCHECK"
    assert config["Entrypoint"][0] == "gunicorn", config["Entrypoint"]
    assert config["Labels"]["org.opencontainers.image.version"], "no OCI version label"

    started = time.monotonic()
    container = docker(
        "run", "--detach", "--read-only", "--network", "host", "--user", f"{UID}:{UID}",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--env", f"PORT={port}", "--env", "WORKERS=2",
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

        whoami = docker("exec", container, "python", "-c", "import os; print(os.getuid())")
        assert whoami.stdout.strip() == UID, whoami.stdout
        write = docker("exec", container, "touch", "/app/x", check=False)
        assert write.returncode != 0, "the root filesystem is writable"

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


def check_training_image(image: str) -> dict[str, object]:
    """Run the training Job's command as Kubernetes would: read-only, non-root, /out mounted."""
    started = time.monotonic()
    result = docker(
        "run", "--rm", "--read-only", "--network", "none", "--user", f"{UID}:{UID}",
        "--cap-drop", "ALL", "--tmpfs", "/tmp", "--tmpfs", f"/out:uid={UID}",  # nosec B108: in the container
        image, "--out", "/out/artifacts", "--report", "/out/report",
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"training image failed:\n{result.stdout}\n{result.stderr}"
    assert "chosen:" in result.stdout, result.stdout
    return {"training_run_s": round(time.monotonic() - started, 1)}


def logs(container: str) -> str:
    result = docker("logs", "--tail", "40", container, check=False)
    return result.stdout + result.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", required=True, help="name:tag to build")
    parser.add_argument("--training-image", help="also build the training stage as this name:tag")
    parser.add_argument("--version", required=True)
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    with docker_engine():
        base = base_image()
        build(args.image, args.version, base)
        if args.training_image:
            build(args.training_image, args.version, base, target="training")
        figures = check_image(args.image, args.port)
        if args.training_image:
            figures.update(check_training_image(args.training_image))
    say("passed: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
