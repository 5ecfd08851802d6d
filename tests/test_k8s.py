"""The Kubernetes manifests and the Makefile's rollout commands, checked offline with kubectl."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"


def kubectl(*args: str) -> str:
    return subprocess.run(
        ["kubectl", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    """`kubectl kustomize k8s/`, by kind."""
    documents = list(yaml.safe_load_all(kubectl("kustomize", str(K8S))))
    return {document["kind"]: document for document in documents}


def test_kustomization_builds_the_service_stack(rendered: dict[str, dict[str, Any]]) -> None:
    assert set(rendered) == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }


def test_deployment_and_pods_carry_app_and_team_labels(rendered: dict[str, dict[str, Any]]) -> None:
    deployment = rendered["Deployment"]
    assert deployment["metadata"]["name"] == "oncology-webservice"
    for labels in (
        deployment["metadata"]["labels"],
        deployment["spec"]["template"]["metadata"]["labels"],
    ):
        assert labels["app"] == "oncology-webservice"
        assert labels["team"]


def test_service_selects_the_pods(rendered: dict[str, dict[str, Any]]) -> None:
    selector = rendered["Service"]["spec"]["selector"]
    pod_labels = rendered["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selector and selector.items() <= pod_labels.items()
    assert rendered["Service"]["spec"]["type"] == "ClusterIP"
    port = rendered["Service"]["spec"]["ports"][0]
    container = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert port["name"] == "http" and port["targetPort"] == container["ports"][0]["name"]
    assert (
        rendered["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items()
        <= pod_labels.items()
    )
    assert (
        rendered["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"]
        == "oncology-webservice"
    )


def test_probes_point_at_paths_the_service_serves(
    rendered: dict[str, dict[str, Any]], app: Flask
) -> None:
    container = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    served = {rule.rule for rule in app.url_map.iter_rules()}
    client = app.test_client()
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        path = container[probe]["httpGet"]["path"]
        assert path in served, (probe, path)
        assert client.get(path).status_code == 200, (probe, path)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_rollout_never_drops_below_wanted_and_drains_before_stopping(
    rendered: dict[str, dict[str, Any]],
) -> None:
    spec = rendered["Deployment"]["spec"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    graceful = int(next(e["value"] for e in container["env"] if e["name"] == "GRACEFUL_TIMEOUT"))
    assert pod["terminationGracePeriodSeconds"] > pre_stop + graceful


def test_every_container_is_locked_down(rendered: dict[str, dict[str, Any]]) -> None:
    job = yaml.safe_load((K8S / "training" / "job.yaml").read_text())
    for pod in (
        rendered["Deployment"]["spec"]["template"]["spec"],
        job["spec"]["template"]["spec"],
    ):
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}
        memory_volumes = [
            v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"
        ]
        assert memory_volumes, "a writable in-memory emptyDir"


def test_training_job_reads_the_data_volume_and_writes_the_wheel() -> None:
    job = yaml.safe_load((K8S / "training" / "job.yaml").read_text())
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[args.index("--data") + 1] == "/data"
    assert args[args.index("--wheel-dir") + 1].startswith("/out/")
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["data"]["mountPath"] == "/data" and mounts["data"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {}
    for name in ("data-volume.yaml", "output-volume.yaml"):
        claim = yaml.safe_load((K8S / "training" / name).read_text())
        claims[claim["metadata"]["name"]] = claim
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] in claims
    assert volumes["data"]["persistentVolumeClaim"]["readOnly"] is True
    assert volumes["out"]["persistentVolumeClaim"]["claimName"] in claims


def test_set_image_targets_the_container() -> None:
    output = kubectl(
        "set", "image", "--local", "-f", "k8s/deployment.yaml",
        "oncology-webservice=registry.example/oncology-webservice:9.9.9", "-o", "yaml",
    )  # fmt: skip
    container = yaml.safe_load(output)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/oncology-webservice:9.9.9"
    with pytest.raises(subprocess.CalledProcessError):
        kubectl(
            "set", "image", "--local", "-f", "k8s/deployment.yaml", "wrong-name=x:1", "-o", "yaml"
        )


def make_dry_run(*args: str) -> str:
    """What `make -n` would run, as in a top-level shell (not as a sub-make of `make test`)."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }
    return subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=ROOT, env=environment, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def test_make_deploy_runs_exactly_the_documented_command() -> None:
    output = make_dry_run(
        "deploy", "tag=reg/onc", "image_version=2.0.1", "team_label=blue"
    ).splitlines()
    assert output[0] == (
        "kubectl set image deployments -l app=oncology-webservice,team=blue "
        "oncology-webservice=reg/onc:2.0.1"
    )
    assert output[1].startswith(
        "kubectl rollout status deployments -l app=oncology-webservice,team=blue"
    )


def test_image_tags_name_the_model_of_the_given_folder(tmp_path: Path) -> None:
    """image, publish and deploy all tag with the model version of model=DIR, + made -."""
    (tmp_path / "metadata.json").write_text(json.dumps({"model_version": "1.2.3+0123456789ab"}))
    model = f"model={tmp_path}"
    deploy = make_dry_run("deploy", "tag=reg/onc", model)
    assert "oncology-webservice=reg/onc:1.2.3-0123456789ab" in deploy
    image = make_dry_run("image", model)
    assert "-t oncology-webservice:1.2.3-0123456789ab" in image
    assert "--target training -t oncology-webservice-training:1.2.3-0123456789ab" in image
    assert "MODEL_VERSION=1.2.3+0123456789ab" in image
    assert f"cp -R {tmp_path}/. build/image-model/" in image
    publish = make_dry_run("publish", "registry=127.0.0.1:5000/onc", model)
    assert "docker push 127.0.0.1:5000/onc/oncology-webservice:1.2.3-0123456789ab" in publish
    training = "127.0.0.1:5000/onc/oncology-webservice-training:1.2.3-0123456789ab"
    assert f"docker push {training}" in publish


def test_make_train_job_creates_a_job_with_the_training_image() -> None:
    output = make_dry_run("train-job", "training_tag=reg/onc-training", "image_version=2.0.1")
    assert "training=reg/onc-training:2.0.1" in output
    assert "kubectl create -f -" in output
    rendered = kubectl(
        "set", "image", "--local", "-f", "k8s/training/job.yaml", "training=reg/onc-training:2.0.1",
        "-o", "yaml",
    )  # fmt: skip
    job = yaml.safe_load(rendered)
    assert job["kind"] == "Job"
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/onc-training:2.0.1"
