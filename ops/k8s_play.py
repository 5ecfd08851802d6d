"""`make k8s-play`: the manifests of k8s/, run for real by podman, pulled from a loopback registry.

No Kubernetes cluster runs here, but Debian's podman plays a Deployment's own pod spec:

1. podman 4.3's setup, written here: runc, catatonit, the ulimits this machine permits, cgroupfs and
   file events (no systemd), in a containers.conf that CONTAINERS_CONF points podman at.
2. Debian's docker-registry serves the storage `make image-test` pushed to (build/registry), and
   Debian's PostgreSQL (harness/postgres.py) runs on a loopback port: the prediction record's
   database. The Secret the pods read its URL from (oncology-webservice-database, key `url`) is
   a podman secret of that name: podman 4.3 resolves a `secretKeyRef` from a podman secret holding
   a Secret's `data` as JSON (base64 values). The URL is postgresql://, as CloudNativePG's is.
3. The migration Job's pod template, as `make migrate-job` sets its image (host network, to reach
   the database): `oncology-db upgrade` brings the empty database to the latest schema, and a
   second run finds nothing to do.
4. `kubectl kustomize k8s/` renders the stable Deployment; a play-only patch: host network on
   loopback (HOST=127.0.0.1, a free PORT and GRPC_PORT), container ports and probes dropped
   (podman cannot map ports on the host network, and its healthchecks need systemd: /readyz and
   the gRPC health service are polled here), one replica, the image set to exactly the tag
   `make deploy` sets, from the registry. The database URL's secretKeyRef and the track's
   fieldRef are played as they are.
5. `podman kube play`: ready within the startup probe's budget (/readyz, and the gRPC health
   service SERVING); UID 10001, read-only root, no capabilities, no new privileges; predictions
   with the expected model version, over HTTP and over gRPC (UNAUTHENTICATED without a token); a
   start-up log with no ERROR or WARNING line and no ANSI escape codes; every prediction
   answered (status 200, or OK over gRPC, in the access log) is in PostgreSQL's `answers` within
   seconds, once, with its tumors, the model's version and the pod's track label.
6. A redeploy: the Deployment as `kubectl set image --local` rewrites it for the next model's tag,
   played with `--replace`, serves that model.
7. Slow clients (`reliability.slow_clients`) against the played pod: ordinary predictions go on.
8. The pod stopped under load as the kubelet stops it (SIGTERM, SIGKILL only after the grace
   period; podman 4.3's `kube down` alone would SIGKILL at once), then `podman kube down`: every
   request a worker accepted is answered, the launcher exits 0 within the grace period, and every
   tumor the pod answered is on record the moment it is gone.
9. The purge CronJob's pod template, with the image `make deploy` gives it: an answer made older
   than the retention (400 days) is purged, every other answer stays.
10. The training Job's pod, its data and output volumes as host folders (hostPath), no network:
   the artifacts, the report and the wheel appear in the output folder and verify.

Everything started here is stopped: the registry and PostgreSQL by PID, pods by
`podman kube down`, the podman secret removed.
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from harness.live_server import access_records, log_problems
from harness.load import Recorder
from harness.postgres import running_postgres
from oncology_model.verify import SEED_TUMOR
from ops.loopback import free_port
from ops.registry import registry
from reliability.slow_clients import slow_client_attack
from webservice.records.store import engine_for
from webservice.tokens import new_token

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "k8s-play"
REGISTRY_STORAGE = ROOT / "build" / "registry"
DEPLOYMENT_MANIFEST = "deployment.yaml"  # the played Deployment, under WORK
BUNDLED_DATA = ROOT / "oncology_model" / "data" / "breast-cancer-wisconsin.data"
NAMESPACE = "oncology"
CONTAINER = "oncology-webservice"
UID = "10001"
# podman 4.3 on this kind of machine: raising limits is not permitted, so containers get the
# ones the host has; no systemd, so cgroupfs and file events; catatonit is its pause/init.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
init_path = "/usr/bin/catatonit"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
PACKAGES = {"podman": "podman", "catatonit": "catatonit", "runc": "runc"}
SEED = json.dumps(SEED_TUMOR.to_dict()).encode()
# The pod's tokens Secret, played as a host folder holding the same keys (docs/access.md).
TOKEN, TOKEN_LINE = new_token("k8s-play")
METRICS_TOKEN, METRICS_LINE = new_token("k8s-play-metrics")
AUTHORIZATION = {"Authorization": f"Bearer {TOKEN}"}
BATCH = json.dumps({"tumors": [SEED_TUMOR.to_dict()] * 1000}).encode()
# Tumors in each prediction the play sends, by path (the single and batch bodies above).
TUMORS = {
    "/v1/predictions": 1,
    "/v1/predictions/batch": 1000,
    "/inference.GRPCInferenceService/ModelInfer": 1,  # the gRPC check's one tumor
}
RECORDS = ROOT / "k8s" / "records"
RECORD_SECONDS = (
    10.0  # a live pod's record reaches the database within this (it flushes each 0.5 s)
)


def say(message: str) -> None:
    print(f"k8s-play: {message}", flush=True)


def run(*command: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("podman", *args, check=check)


def make(*args: str) -> str:
    """What make would run, as in a top-level shell."""
    environment = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    return run("make", "--no-print-directory", *args, cwd=ROOT, env=environment).stdout


def set_up_podman() -> None:
    """Install podman, runc and catatonit if missing; point podman at our containers.conf."""
    missing = [package for binary, package in PACKAGES.items() if not shutil.which(binary)]
    if missing and not Path("/usr/bin/catatonit").exists():
        say(f"installing {' '.join(missing)} (Debian)")
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=environment)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            check=True,
            env=environment,
        )
    WORK.mkdir(parents=True, exist_ok=True)
    conf = WORK / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    os.environ["CONTAINERS_CONF"] = str(conf)
    say(f"podman {podman('--version').stdout.split()[-1]}, CONTAINERS_CONF={conf}")


def model_version(artifacts: Path) -> str:
    return str(json.loads((artifacts / "metadata.json").read_text())["model_version"])


def deploy_image(prefix: str, artifacts: Path) -> str:
    """The image `make deploy` sets for this model, with the registry's prefix."""
    output = make("-n", "deploy", f"tag={prefix}/{CONTAINER}", f"model={artifacts}")
    return output.split(f"{CONTAINER}=", 1)[1].split()[0]


def record_images(prefix: str, first: Path, second: Path) -> tuple[str, str]:
    """The images `make migrate-job` sets on the migration Job before the first rollout, and
    `make deploy` on the purge CronJob in the redeploy."""
    migrate = make("-n", "migrate-job", f"tag={prefix}/{CONTAINER}", f"model={first}")
    deploy = make("-n", "deploy", f"tag={prefix}/{CONTAINER}", f"model={second}")
    cronjob = next(line for line in deploy.splitlines() if "set image cronjobs" in line)
    return (
        migrate.split("oncology-db=", 1)[1].split()[0],
        cronjob.split("oncology-db=", 1)[1].split()[0],
    )


def require_in_registry(image: str) -> None:
    """Fail early, naming the image, when the registry does not hold it."""
    address, _, reference = image.partition("/")
    repository, _, tag = reference.rpartition(":")
    request = urllib.request.Request(
        f"http://{address}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": ", ".join(MANIFEST_TYPES)},
    )
    try:
        # An http:// URL on loopback built here (B310 warns of file:/ and custom schemes).
        with urllib.request.urlopen(request, timeout=10):  # nosec B310
            return
    except urllib.error.HTTPError as error:
        raise SystemExit(
            f"k8s-play: {image} is not in {REGISTRY_STORAGE.relative_to(ROOT)} (HTTP {error.code}):"
            " run make image-test first, it pushes the images there"
        ) from None


def training_image(prefix: str, artifacts: Path) -> str:
    """The image `make train-job` sets for this model, with the registry's prefix."""
    output = make(
        "-n", "train-job", f"training_tag={prefix}/{CONTAINER}-training", f"model={artifacts}"
    )
    return output.split("training=", 1)[1].split()[0]


def stable_deployment() -> dict[str, Any]:
    rendered = run("kubectl", "kustomize", str(ROOT / "k8s")).stdout
    for document in yaml.safe_load_all(rendered):
        if document["kind"] == "Deployment" and document["metadata"]["name"] == CONTAINER:
            return dict(document)
    raise RuntimeError("kubectl kustomize k8s/ has no Deployment oncology-webservice")


def startup_budget(deployment: dict[str, Any]) -> float:
    """Seconds the startup probe allows before Kubernetes would restart the container."""
    probe = service_container(deployment)["startupProbe"]
    return float(
        probe.get("initialDelaySeconds", 0)
        + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
    )


def service_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return dict(next(c for c in containers if c["name"] == CONTAINER))


def tokens_folder() -> Path:
    """The tokens Secret's keys as files the pod's user can read: an API and a metrics token."""
    folder = WORK / "tokens"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for key, text in (("tokens", TOKEN_LINE + "\n"), ("metrics-tokens", METRICS_LINE + "\n")):
        (folder / key).write_text(text)
        os.chown(folder / key, int(UID), int(UID))
        (folder / key).chmod(0o440)
    return folder


def play_patch(deployment: dict[str, Any], image: str, port: int, grpc_port: int) -> dict[str, Any]:
    """The test-only changes: loopback host network (free HTTP and gRPC ports), no ports or
    probes, one replica, the image."""
    played = copy.deepcopy(deployment)
    played["spec"]["replicas"] = 1
    pod = played["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    for volume in pod["volumes"]:
        if "secret" in volume:  # podman 4.3 plays no Secrets: the same files from a host folder
            volume.pop("secret")
            volume["hostPath"] = {"path": str(tokens_folder()), "type": "Directory"}
    for container in pod["containers"]:
        if container["name"] == CONTAINER:
            container["image"] = image
            for key in ("ports", "startupProbe", "readinessProbe", "livenessProbe"):
                container.pop(key, None)
            played_env = ("HOST", "PORT", "GRPC_PORT")
            env = [e for e in container.get("env", []) if e["name"] not in played_env]
            container["env"] = [
                *env,
                {"name": "HOST", "value": "127.0.0.1"},
                {"name": "PORT", "value": str(port)},
                {"name": "GRPC_PORT", "value": str(grpc_port)},
            ]
    return played


def played_ids(output: str) -> dict[str, str]:
    """The pod and container ids `podman kube play` printed."""
    ids: dict[str, str] = {}
    lines = output.split()
    for label in ("Pod:", "Container:"):
        if label in lines:
            ids[label.rstrip(":").lower()] = lines[lines.index(label) + 1]
    return ids


def kube_play(manifest: Path, *extra: str) -> dict[str, str]:
    output = podman("kube", "play", "--tls-verify=false", *extra, str(manifest)).stdout
    ids = played_ids(output)
    if "container" not in ids:
        raise RuntimeError(f"podman kube play printed no container:\n{output}")
    return ids


def kube_down(manifest: Path) -> None:
    podman("kube", "down", str(manifest), check=False)


def http(
    port: int, path: str, body: bytes | None = None, *, token: bool = True
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **(AUTHORIZATION if token else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
    try:
        # An http:// URL on loopback built here (B310 warns of file:/ and custom schemes).
        with urllib.request.urlopen(request, timeout=10) as response:  # nosec B310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {}


def wait_ready(port: int, container: str, budget: float, grpc_port: int) -> float:
    """Seconds until /readyz answers 200 and the gRPC health service SERVING (the Deployment's
    probes: readiness on HTTP, startup on gRPC)."""
    started = time.monotonic()
    while time.monotonic() - started < budget:
        try:
            if http(port, "/readyz")[0] == 200 and grpc_serving(grpc_port):
                return time.monotonic() - started
        except OSError:
            pass
        state = podman("inspect", "--format", "{{.State.Status}}", container, check=False)
        if state.stdout.strip() in ("exited", "stopped"):
            break
        time.sleep(0.1)
    logs = podman("logs", container, check=False)
    raise RuntimeError(f"not ready within {budget:.0f} s:\n{logs.stdout}{logs.stderr}"[-4000:])


def check_locked_down(container: str) -> dict[str, Any]:
    """UID 10001, read-only root, no capabilities, no new privileges: as podman set it up."""
    inspect = json.loads(podman("inspect", container).stdout)[0]
    host = inspect["HostConfig"]
    assert host["ReadonlyRootfs"] is True, "root filesystem is not read-only"
    assert not inspect.get("EffectiveCaps"), f"capabilities: {inspect.get('EffectiveCaps')}"
    # PID 1 of the container: the launcher, as the pod started it (not an exec'd process), with
    # nginx and gunicorn under it.
    status = podman("exec", container, "cat", "/proc/1/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    uids, gids = fields["Uid"].split(), fields["Gid"].split()
    assert set(uids) == {UID} and set(gids) == {UID}, (uids, gids)
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0, fields["CapEff"]
    assert fields["NoNewPrivs"].strip() == "1", "no_new_privs is not set"
    write = podman("exec", container, "touch", "/app/written", check=False)
    assert write.returncode != 0, "the root filesystem is writable"
    assert "webservice.serve" in podman("exec", container, "cat", "/proc/1/cmdline").stdout
    commands = podman(
        "exec", container, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"
    ).stdout
    assert "nginx: master" in commands and "gunicorn" in commands, commands
    return {"uid": uids[0], "cap_eff": fields["CapEff"].strip(), "readonly_root": True}


def grpc_serving(grpc_port: int) -> bool:
    """grpc.health.v1's answer for the service "" (what the startup probe asks): SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def check_grpc(grpc_port: int, version: str) -> None:
    """A gRPC inference (the Open Inference Protocol's ModelInfer, one tumor in raw contents):
    UNAUTHENTICATED without a token, answered by the model `version` with one."""
    import grpc
    import numpy as np

    from webservice.grpcserver.protocol import inference_stub, pb

    row = np.array([list(SEED_TUMOR)], dtype="<f4")
    request = pb.ModelInferRequest(
        model_name="oncology",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name="tumors", datatype="FP32", shape=[1, 9])
        ],
        raw_input_contents=[row.tobytes()],
    )
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = inference_stub(channel)
        try:
            stub.ModelInfer(request, timeout=10)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
        else:
            raise AssertionError("a gRPC inference without a token was answered")
        metadata = (("authorization", f"Bearer {TOKEN}"),)
        answer = stub.ModelInfer(request, metadata=metadata, timeout=10)
    assert answer.model_version == version, f"gRPC serves {answer.model_version}, not {version}"
    assert [output.name for output in answer.outputs][:2] == ["malignant_probability", "label"]


def check_serving(port: int, container: str, version: str) -> None:
    status, _ = http(port, "/v1/predictions", SEED, token=False)
    assert status == 401, f"no token, yet HTTP {status}: the tokens Secret is not in force"
    status, body = http(port, "/v1/predictions", SEED)
    assert status == 200 and body.get("prediction") == "benign", (status, body)
    assert body.get("model_version") == version, (
        f"serves {body.get('model_version')}, not {version}"
    )
    logs = podman("logs", container)
    text = logs.stdout + logs.stderr
    assert "Booting worker" in text, text
    problems = log_problems(text)
    assert not problems, "start-up log:\n" + "\n".join(problems)


def write_manifest(document: dict[str, Any], name: str) -> Path:
    path = WORK / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def pull_fresh(image: str) -> None:
    """Drop any local copy, so that the play must pull from the registry."""
    podman("rmi", "--force", image, check=False)


def play_deployment(deployment: dict[str, Any], image: str, version: str) -> dict[str, Any]:
    port, grpc_port = free_port(), free_port()
    manifest = write_manifest(play_patch(deployment, image, port, grpc_port), DEPLOYMENT_MANIFEST)
    budget = startup_budget(deployment)
    pull_fresh(image)
    started = time.monotonic()
    ids = kube_play(manifest)
    played_s = time.monotonic() - started
    ready_s = wait_ready(port, ids["container"], budget, grpc_port)
    figures = {"play_s": round(played_s, 1), "ready_s": round(ready_s, 2), "budget_s": budget}
    figures.update(check_locked_down(ids["container"]))
    check_serving(port, ids["container"], version)
    check_grpc(grpc_port, version)
    say(
        f"played {image}: ready {ready_s:.2f} s after play (budget {budget:.0f} s), "
        f"serves {version} over HTTP and gRPC, UID {UID}, read-only root, no capabilities, "
        "clean start-up log"
    )
    return {"manifest": manifest, "port": port, "grpc_port": grpc_port, **ids, **figures}


def redeploy(played: dict[str, Any], image: str, version: str, budget: float) -> dict[str, Any]:
    """`kubectl set image --local` on the played Deployment, then `podman kube play --replace`."""
    manifest: Path = played["manifest"]
    rewritten = run(
        "kubectl",
        "set",
        "image",
        "--local",
        "-f",
        str(manifest),
        f"{CONTAINER}={image}",
        "-o",
        "yaml",
    ).stdout
    manifest.write_text(rewritten)
    pull_fresh(image)
    started = time.monotonic()
    ids = kube_play(manifest, "--replace")
    ready_s = wait_ready(played["port"], ids["container"], budget, played["grpc_port"])
    check_serving(played["port"], ids["container"], version)
    check_grpc(played["grpc_port"], version)
    say(
        f"redeployed to {image} with --replace: ready {ready_s:.2f} s, serves {version} over "
        "HTTP and gRPC"
    )
    return {**played, **ids, "redeploy_s": round(time.monotonic() - started, 1)}


def down_under_load(played: dict[str, Any], grace: float) -> dict[str, Any]:
    """Stop the pod while clients post: every accepted request answered, gone within the grace.

    podman 4.3's `kube down` SIGKILLs at once (podman issue #22397, fixed upstream in 2024), so
    the pod is stopped first as the kubelet would: SIGTERM, SIGKILL only after the Deployment's
    terminationGracePeriodSeconds (`podman pod stop --time`); `kube down` then removes it.
    """
    recorder = Recorder(
        played["port"],
        [("/v1/predictions/batch", BATCH), ("/v1/predictions", SEED)],
        threads=8,
        seconds=20,
        headers=AUTHORIZATION,
    )
    thread = threading.Thread(target=recorder.run)
    thread.start()
    time.sleep(2)
    stop_at = time.monotonic()
    stop = podman("pod", "stop", "--time", str(int(grace)), played["pod"], check=False)
    stop_s = time.monotonic() - stop_at
    recorder.stop()
    thread.join()
    exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", played["container"]).stdout
    logs = podman("logs", played["container"], check=False)
    text = logs.stdout + logs.stderr
    (WORK / "stop.log").write_text(text)
    kube_down(played["manifest"])
    assert stop.returncode == 0, stop.stderr
    accepted = {record["request_id"] for record in access_records(text)}
    by_id = {outcome.request_id: outcome for outcome in recorder.outcomes}
    lost = [i for i in accepted if i in by_id and by_id[i].status != 200]
    answered_while_stopping = [
        o for o in recorder.outcomes if o.started < stop_at < o.ended and o.status == 200
    ]
    assert not lost, f"accepted requests without an answer: {lost[:5]}"
    assert exit_code.strip() == "0", f"the service exited with {exit_code.strip()}:\n{text[-2000:]}"
    assert "Handling signal: term" in text and "Shutting down: Master" in text, text[-2000:]
    problems = log_problems(text)
    assert not problems, "log:\n" + "\n".join(problems)
    assert stop_s <= grace, f"the pod stopped after {stop_s:.1f} s, over the {grace:.0f} s grace"
    figures = {
        "requests": len(recorder.outcomes),
        "accepted": len(accepted & by_id.keys()),
        "answered_while_stopping": len(answered_while_stopping),
        "stop_s": round(stop_s, 1),
    }
    say(
        f"pod stopped under load (SIGTERM): {figures['accepted']} accepted requests all answered "
        f"({len(answered_while_stopping)} while stopping), exit 0 after {stop_s:.1f} s "
        f"(grace {grace:.0f} s); removed with podman kube down"
    )
    return figures


def play_job(
    template: dict[str, Any], name: str, image: str, *extra: str, host_network: bool = False
) -> tuple[str, str, float]:
    """A Job's pod template played to its end as a Pod (podman 4.3 plays Pods and Deployments, not
    Jobs), with `image`: its exit code, its log and the seconds it took."""
    pod_spec = copy.deepcopy(template["spec"])
    if host_network:  # to reach the database on loopback
        pod_spec["hostNetwork"] = True
    (container,) = pod_spec["containers"]
    container["image"] = image
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template["metadata"]["labels"]},
        "spec": pod_spec,
    }
    manifest = write_manifest(pod, f"{name}-pod.yaml")
    started = time.monotonic()
    ids = kube_play(manifest, *extra)
    try:
        exit_code = podman("wait", ids["container"]).stdout.strip()
        logs = podman("logs", ids["container"], check=False)
        text = logs.stdout + logs.stderr
    finally:
        kube_down(manifest)
    return exit_code, text, time.monotonic() - started


def database_url_source(deployment: dict[str, Any]) -> dict[str, str]:
    """The Secret and key the service container's ONCOLOGY_DATABASE_URL comes from."""
    env = service_container(deployment)["env"]
    (source,) = [e["valueFrom"] for e in env if e["name"] == "ONCOLOGY_DATABASE_URL"]
    return dict(source["secretKeyRef"])


@contextmanager
def database_secret(reference: dict[str, str], url: str) -> Iterator[None]:
    """The Secret as podman 4.3 resolves a secretKeyRef: a podman secret of the Secret's name
    holding the Secret's `data` as JSON, each value base64-encoded. Removed on exit."""
    name = reference["name"]
    podman("secret", "rm", name, check=False)  # left by an interrupted run
    data = json.dumps({reference["key"]: base64.b64encode(url.encode()).decode()})
    run("podman", "secret", "create", name, "-", input=data)
    try:
        yield
    finally:
        podman("secret", "rm", name, check=False)


def play_migration(image: str, engine: sa.Engine) -> dict[str, Any]:
    """The migration Job's pod, as `make migrate-job` runs it: the empty database migrated to the
    image's latest schema; run again (before the next rollout), it finds nothing to do."""
    template = yaml.safe_load((RECORDS / "migrate-job.yaml").read_text())["spec"]["template"]
    took, lines = [], []
    pull_fresh(image)
    for _ in range(2):
        exit_code, text, seconds = play_job(
            template, "oncology-records-migrate", image, host_network=True
        )
        assert exit_code == "0", f"the migration Job exited {exit_code}:\n{text[-3000:]}"
        lines.append(text.strip().splitlines()[-1])
        took.append(seconds)
    head = lines[0].removeprefix("schema none -> ")
    assert lines == [f"schema none -> {head}", f"schema {head}, the latest"], lines
    with engine.connect() as connection:
        revision = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert revision == head, f"the database is at {revision}, not {head}"
    say(
        f"migration Job's pod ({image}): schema none -> {head} in {took[0]:.1f} s, "
        f"then nothing to do in {took[1]:.1f} s"
    )
    return {"migrate_s": round(took[0], 1)}


def answered(log: str) -> dict[str, int]:
    """Request id -> tumors, for every prediction a pod's access log says it answered (200)."""
    return {
        record["request_id"]: TUMORS[record["path"]]
        for record in access_records(log)
        if record["status"] in (200, "OK") and record["path"] in TUMORS
    }


def record_counters(port: int) -> dict[str, float]:
    """The pod's record counters from /metrics (tumors queued, written, dropped by reason...)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    # An http:// URL on loopback built here (B310 warns of file:/ and custom schemes).
    with urllib.request.urlopen(request, timeout=10) as response:  # nosec B310
        text = response.read().decode()
    prefix = "oncology_prediction_records_"
    return {
        line.rsplit(" ", 1)[0].removeprefix(prefix): float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and "_created" not in line and "_bucket" not in line
    }


def check_recorded(
    engine: sa.Engine,
    log: str,
    version: str,
    track: str,
    *,
    wait: float,
    counters: dict[str, float] | None = None,
) -> dict[str, int]:
    """Every prediction the pod answered (its access log) is one row of `answers` with its tumors,
    the model's version and the pod's track, and nothing else is on record for that version;
    `wait`: seconds the record may take to arrive (0: it must be there now)."""
    expected = answered(log)
    deadline = time.monotonic() + wait
    query = sa.text(
        "SELECT request_id, tumors, track FROM answers WHERE model_version = :version"
    ).bindparams(version=version)
    while True:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
        if {row.request_id for row in rows} >= expected.keys() or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    on_record = {row.request_id: row for row in rows}
    missing = expected.keys() - on_record.keys()
    if missing:
        times = {r["request_id"]: r["ts"] for r in access_records(log)}
        first, last = min(times.values()), max(times.values())
        when = sorted(times[i] - first for i in missing)
        dropped = {k: v for k, v in (counters or {}).items() if k.startswith("dropped") and v}
        raise AssertionError(
            f"{len(missing)} of {len(expected)} answered predictions of {version} "
            f"({sum(expected[i] for i in missing)} tumors) are not on record: answered "
            f"{when[0]:.1f} to {when[-1]:.1f} s into the pod's {last - first:.1f} s of log"
            + (
                f"; the pod had counted {dropped} tumors dropped from its record while serving, "
                f"with PostgreSQL reachable (its counters: {counters})"
                if dropped
                else f"; its record counters while serving: {counters}"
            )
        )
    assert len(rows) == len(on_record), "a prediction is on record twice"
    assert on_record.keys() == expected.keys(), (
        f"on record but never answered: {sorted(on_record.keys() - expected.keys())[:5]}"
    )
    wrong = [i for i, row in on_record.items() if row.tumors != expected[i]]
    assert not wrong, f"answers on record with the wrong number of tumors: {wrong[:5]}"
    tracks = {row.track for row in rows}
    assert tracks == {track}, f"recorded as track {tracks}, the pod's label is {track}"
    return {"answers": len(expected), "tumors": sum(expected.values())}


def play_purge(image: str, engine: sa.Engine) -> dict[str, Any]:
    """The purge CronJob's pod: the oldest answer, made older than the retention, is deleted;
    every other answer stays."""
    cronjob = yaml.safe_load((RECORDS / "purge-cronjob.yaml").read_text())
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    (container,) = template["spec"]["containers"]
    days = int(next(e["value"] for e in container["env"] if e["name"] == "ONCOLOGY_RETENTION_DAYS"))
    totals = sa.text("SELECT count(*), coalesce(sum(tumors), 0) FROM answers")
    with engine.begin() as connection:
        oldest = connection.execute(
            sa.text("SELECT id, tumors FROM answers ORDER BY id LIMIT 1")
        ).one()
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=days + 1)
        connection.execute(
            sa.text("UPDATE answers SET answered_at = :when WHERE id = :id").bindparams(
                when=long_ago, id=oldest.id
            )
        )
        answers, tumors = connection.execute(totals).one()
    exit_code, text, took = play_job(template, "oncology-records-purge", image, host_network=True)
    assert exit_code == "0", f"the purge exited {exit_code}:\n{text[-3000:]}"
    with engine.connect() as connection:
        left = tuple(connection.execute(totals).one())
    assert left == (answers - 1, tumors - oldest.tumors), (
        f"{answers} answers ({tumors} tumors) before the purge, {left} after:\n{text[-2000:]}"
    )
    assert f"purged 1 answer ({oldest.tumors} tumor" in text and f"({days} days)" in text, text
    say(
        f"purge CronJob's pod ({image}): the answer older than {days} days purged, "
        f"{left[0]} answers ({left[1]} tumors) kept, in {took:.1f} s"
    )
    return {"purge_s": round(took, 1)}


def play_training_job(image: str, data_file: Path) -> dict[str, Any]:
    """The Job's pod spec with hostPath volumes for data and output, and no network."""
    job = yaml.safe_load((ROOT / "k8s" / "training" / "job.yaml").read_text())
    folders = {"data": WORK / "job" / "data", "out": WORK / "job" / "out"}
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    shutil.copy(data_file, folders["data"] / data_file.name)
    os.chown(folders["out"], int(UID), int(UID))
    template = copy.deepcopy(job["spec"]["template"])
    for volume in template["spec"]["volumes"]:
        if volume["name"] in folders:
            volume.pop("persistentVolumeClaim")
            volume["hostPath"] = {"path": str(folders[volume["name"]]), "type": "Directory"}
    pull_fresh(image)
    exit_code, text, took = play_job(
        template, "oncology-model-training", image, "--network", "none"
    )
    assert exit_code == "0", f"training exited {exit_code}:\n{text[-3000:]}"
    out = folders["out"]
    verify = run(
        str(ROOT / ".venv" / "bin" / "oncology-verify"),
        "--artifacts",
        str(out / "artifacts"),
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    version = model_version(out / "artifacts")
    wheels = sorted(p.name for p in (out / "dist").glob("*.whl"))
    assert wheels == [f"oncology_model-{version}-py3-none-any.whl"], wheels
    assert any((out / "report").iterdir()), "no report"
    owners = {path.stat().st_uid for path in out.rglob("*")}
    assert owners == {int(UID)}, f"files owned by {owners}"
    say(
        f"training Job's pod ({image}) wrote artifacts {version}, report and {wheels[0]} "
        f"to {out.relative_to(ROOT)} in {took:.0f} s"
    )
    return {"training_s": round(took, 1), "trained_version": version}


def slow_clients_against(played: dict[str, Any]) -> dict[str, Any]:
    """The reliability suite's slow clients (300 dripping headers, 100 dripping bodies, 30 s)
    against the played pod: every ordinary prediction answered, p99 within 5x unloaded."""
    figures = slow_client_attack(played["port"], SEED, BATCH, headers=AUTHORIZATION)
    (WORK / "slow-clients.json").write_text(json.dumps(figures, indent=2) + "\n")
    assert figures["passed"], f"slow clients hurt the played pod: {figures}"
    assert http(played["port"], "/readyz")[0] == 200, "the pod is not ready after slow clients"
    say(
        f"slow clients: {figures['attacked']['requests']} ordinary predictions beside 300 "
        f"dripping headers and 100 dripping bodies, none failed, p99 {figures['p99_ratio']}x "
        "unloaded"
    )
    return {"slow_clients_p99_ratio": figures["p99_ratio"]}


def play_webservice(
    deployment: dict[str, Any],
    images: tuple[str, str],
    versions: tuple[str, str],
    grace: float,
    engine: sa.Engine,
) -> dict[str, Any]:
    """Play, check, redeploy, stop under load; the pod is removed whatever happens. The record:
    the first pod's answers arrive while it serves, the second's are all there once it stopped."""
    track = deployment["spec"]["template"]["metadata"]["labels"]["track"]
    try:
        played = play_deployment(deployment, images[0], versions[0])
        figures = {k: played[k] for k in ("play_s", "ready_s", "budget_s")}
        logs = podman("logs", played["container"])
        live = check_recorded(
            engine, logs.stdout + logs.stderr, versions[0], track, wait=RECORD_SECONDS
        )
        say(
            f"record: the {live['tumors']} tumor(s) the pod answered are in PostgreSQL, "
            f"as track {track}"
        )
        played = redeploy(played, images[1], versions[1], startup_budget(deployment))
        figures["redeploy_s"] = played["redeploy_s"]
        figures.update(slow_clients_against(played))
        counters = record_counters(played["port"])
        say(f"record counters after the slow clients: {counters}")
        figures.update(down_under_load(played, grace))
        stopped = check_recorded(
            engine, (WORK / "stop.log").read_text(), versions[1], track, wait=0, counters=counters
        )
        say(
            f"record: all {stopped['tumors']} tumors ({stopped['answers']} answers) the "
            f"redeployed pod answered are in PostgreSQL the moment it stopped, as track {track}"
        )
        figures["recorded_tumors"] = live["tumors"] + stopped["tumors"]
        return figures
    finally:
        kube_down(WORK / DEPLOYMENT_MANIFEST)  # nothing left if it went well


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--first-model",
        type=Path,
        required=True,
        help="artifacts of the model deployed first (its image in the registry)",
    )
    parser.add_argument(
        "--next-model",
        type=Path,
        required=True,
        help="artifacts of the model redeployed to (its image in the registry)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=BUNDLED_DATA,
        help="the training Job's data file",
    )
    args = parser.parse_args()
    first, second = model_version(args.first_model), model_version(args.next_model)
    assert first != second, f"both models are {first}: the redeploy would prove nothing"
    set_up_podman()
    deployment = stable_deployment()
    grace = float(deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    figures: dict[str, Any] = {}
    with registry(REGISTRY_STORAGE) as address, running_postgres() as postgres:
        prefix = f"{address}/{NAMESPACE}"
        say(f"registry {address} serving {REGISTRY_STORAGE.relative_to(ROOT)}")
        images = (deploy_image(prefix, args.first_model), deploy_image(prefix, args.next_model))
        training = training_image(prefix, args.next_model)
        migrate, purge = record_images(prefix, args.first_model, args.next_model)
        every_image = sorted({*images, training, migrate, purge})
        for image in every_image:
            require_in_registry(image)
        # What the pods read from the Secret: the URL as CloudNativePG's Secret gives it.
        url = postgres.url.replace("postgresql+psycopg://", "postgresql://", 1)
        say(f"PostgreSQL on 127.0.0.1:{postgres.port}: the record's database")
        engine = engine_for(postgres.url)
        try:
            with database_secret(database_url_source(deployment), url):
                figures.update(play_migration(migrate, engine))
                figures.update(play_webservice(deployment, images, (first, second), grace, engine))
                figures.update(play_purge(purge, engine))
            figures.update(play_training_job(training, args.data))
        finally:
            engine.dispose()
            # The registry's port changes from run to run: leave no tags of it behind.
            for image in every_image:
                podman("rmi", "--force", image, check=False)
    if args.data == BUNDLED_DATA:
        bundled = model_version(ROOT / "oncology_model" / "artifacts")
        assert figures["trained_version"] == bundled, (
            f"the Job trained {figures['trained_version']} on the bundled data, not {bundled}"
        )
    say("passed: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
