"""The Kubernetes manifests and the Makefile's rollout commands, checked offline with kubectl."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask

from oncology_model.integrity import bundled_artifacts_dir
from webservice.routes import access

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"


def kubectl(*args: str) -> str:
    return subprocess.run(
        ["kubectl", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    """`kubectl kustomize k8s/`."""
    return list(yaml.safe_load_all(kubectl("kustomize", str(K8S))))


@pytest.fixture(scope="module")
def rendered(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The service stack by kind (the Deployment: the stable one, not the canary)."""
    return {d["kind"]: d for d in documents if d["metadata"]["name"] == "oncology-webservice"}


def deployments(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels only, as in k8s/) matches these labels."""
    assert set(selector) == {"matchLabels"}, f"only matchLabels is checked here: {selector}"
    return bool(selector["matchLabels"].items() <= labels.items())


def test_kustomization_builds_the_service_stack(rendered: dict[str, dict[str, Any]]) -> None:
    assert set(rendered) == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }


def test_canary_is_the_stable_pod_once_behind_the_same_service(
    documents: list[dict[str, Any]], rendered: dict[str, dict[str, Any]]
) -> None:
    by_name = deployments(documents)
    assert set(by_name) == {"oncology-webservice", "oncology-webservice-canary"}
    stable, canary = by_name["oncology-webservice"], by_name["oncology-webservice-canary"]
    assert canary["spec"]["replicas"] == 1 and stable["spec"]["replicas"] > 1
    for deployment, track in ((stable, "stable"), (canary, "canary")):
        assert deployment["metadata"]["labels"]["track"] == track
        assert deployment["spec"]["template"]["metadata"]["labels"]["track"] == track
    # The canary drifts from the stable pod only in its track label (and, in a canary, its image).
    assert canary["spec"]["template"]["spec"] == stable["spec"]["template"]["spec"]
    assert {**canary["spec"]["template"]["metadata"]["labels"], "track": "stable"} == (
        stable["spec"]["template"]["metadata"]["labels"]
    )
    for deployment in (stable, canary):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert rendered["Service"]["spec"]["selector"].items() <= labels.items()
        assert rendered["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"].items() <= (
            labels.items()
        )


def test_no_deployment_selects_another_deployments_pods(documents: list[dict[str, Any]]) -> None:
    by_name = deployments(documents)
    for name, deployment in by_name.items():
        own = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(deployment["spec"]["selector"], own), name
        for other_name, other in by_name.items():
            if other_name != name:
                theirs = other["spec"]["template"]["metadata"]["labels"]
                assert not selects(deployment["spec"]["selector"], theirs), (name, other_name)


def test_selector_check_catches_overlapping_deployments() -> None:
    pod = {"app": "oncology-webservice", "team": "oncology", "track": "canary"}
    assert selects({"matchLabels": {"app": "oncology-webservice"}}, pod)
    assert not selects({"matchLabels": {"app": "oncology-webservice", "track": "stable"}}, pod)


def test_first_install_pulls_the_bundled_model_from_a_registry(
    documents: list[dict[str, Any]],
) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert "/" in image["newName"] and image["newName"].endswith("/oncology-webservice")
    version = json.loads((bundled_artifacts_dir() / "metadata.json").read_text())["model_version"]
    assert image["newTag"] == version.replace("+", "-"), (
        "k8s/kustomization.yaml's newTag must be the bundled model's image tag"
    )
    for name, deployment in deployments(documents).items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{image['newName']}:{image['newTag']}", name


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
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        # The kubelet sends no token: with tokens on (as in k8s/), the probes must stay open.
        assert access(container[probe]["httpGet"]["path"]) == "open", probe


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


def test_the_front_buffers_on_a_bounded_disk_volume_not_the_pods_memory(
    documents: list[dict[str, Any]],
) -> None:
    """nginx writes request bodies over 64 KiB to TMPDIR: in every serving pod spec, a disk
    emptyDir with a size limit, never the in-memory one nor the read-only root."""
    runtime = yaml.safe_load((K8S / "kserve" / "serving-runtime.yaml").read_text())
    pods = [d["spec"]["template"]["spec"] for d in deployments(documents).values()]
    for pod in [*pods, runtime["spec"]]:
        container = pod["containers"][0]
        tmpdir = next(e["value"] for e in container["env"] if e["name"] == "TMPDIR")
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == tmpdir)
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert "medium" not in volume["emptyDir"], "buffered bodies would count as memory"
        assert volume["emptyDir"]["sizeLimit"]


def test_every_container_is_locked_down(rendered: dict[str, dict[str, Any]]) -> None:
    jobs = [
        yaml.safe_load((K8S / folder / "job.yaml").read_text()) for folder in ("training", "batch")
    ]
    for pod in (
        rendered["Deployment"]["spec"]["template"]["spec"],
        *(job["spec"]["template"]["spec"] for job in jobs),
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


def test_batch_job_reads_one_volume_and_writes_another() -> None:
    job = yaml.safe_load((K8S / "batch" / "job.yaml").read_text())
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["/opt/train/bin/oncology-predict"]  # the training image
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {
        d["metadata"]["name"]
        for d in yaml.safe_load_all((K8S / "batch" / "volumes.yaml").read_text())
    }
    assert mounts["input"]["readOnly"] is True
    assert volumes["input"]["persistentVolumeClaim"]["readOnly"] is True
    assert not mounts["output"].get("readOnly")
    assert {volumes[n]["persistentVolumeClaim"]["claimName"] for n in ("input", "output")} == claims
    source, _, target, _, errors = container["args"]
    assert source.startswith(mounts["input"]["mountPath"] + "/")
    assert target.startswith(mounts["output"]["mountPath"] + "/")
    assert errors.startswith(mounts["output"]["mountPath"] + "/")
    policy = yaml.safe_load((K8S / "batch" / "network-policy.yaml").read_text())
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def test_make_batch_job_creates_a_job_with_the_training_image() -> None:
    output = make_dry_run("batch-job", "training_tag=reg/onc-training", "image_version=2.0.1")
    assert "k8s/batch/volumes.yaml" in output and "kubectl create -f -" in output
    assert "scoring=reg/onc-training:2.0.1" in output
    rendered = kubectl(
        "set", "image", "--local", "-f", "k8s/batch/job.yaml", "scoring=reg/onc-training:2.0.1",
        "-o", "yaml",
    )  # fmt: skip
    assert yaml.safe_load(rendered)["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "reg/onc-training:2.0.1"
    )


def label_selector(text: str) -> dict[str, set[str]]:
    """A kubectl -l value of `k=v` and `k in (a,b)` terms, as the allowed values per key."""
    terms = re.findall(r"([\w./-]+)\s*(?:=\s*([\w.-]+)|\s+in\s+\(([^)]*)\))", text)
    assert ",".join(f"{k}={v}" if v else f"{k} in ({s})" for k, v, s in terms) == text, text
    return {k: {v} if v else {x.strip() for x in s.split(",")} for k, v, s in terms}


def selected_deployments(command: str, documents: list[dict[str, Any]]) -> set[str]:
    """The rendered Deployments a `kubectl ... deployments -l SELECTOR` line acts on."""
    match = re.search(r"deployments -l (?:'([^']*)'|(\S+))", command)
    assert match, command
    selector = label_selector(match.group(1) or match.group(2))
    return {
        name
        for name, deployment in deployments(documents).items()
        if all(deployment["metadata"]["labels"].get(k) in v for k, v in selector.items())
    }


CANARY, STABLE = "oncology-webservice-canary", "oncology-webservice"


def test_make_canary_rolls_out_only_the_canary_to_the_model_tag(
    documents: list[dict[str, Any]],
) -> None:
    output = make_dry_run("canary", "tag=reg/onc", "image_version=2.0.1-0123456789ab")
    commands = [line for line in output.splitlines() if line.startswith("kubectl")]
    assert commands[0].endswith(" oncology-webservice=reg/onc:2.0.1-0123456789ab")
    assert [selected_deployments(c, documents) for c in commands] == [{CANARY}, {CANARY}]
    assert commands[1].startswith("kubectl rollout status")
    rendered = kubectl(
        "set", "image", "--local", "-f", "k8s/canary.yaml",
        "oncology-webservice=reg/onc:2.0.1-0123456789ab", "-o", "yaml",
    )  # fmt: skip
    canary = yaml.safe_load(rendered)
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "reg/onc:2.0.1-0123456789ab"
    )
    assert canary["spec"]["template"]["metadata"]["labels"]["track"] == "canary"


def test_make_promote_gives_the_stable_deployment_the_canarys_image(
    documents: list[dict[str, Any]],
) -> None:
    output = make_dry_run("promote")
    read, rollout = output.split("\n", 1)[0], output.splitlines()[-1]
    assert selected_deployments(read, documents) == {CANARY}
    assert "kubectl set image deployments" in output and "oncology-webservice=$1" in output
    write = output[output.index("kubectl set image") :].splitlines()[0]
    assert selected_deployments(write, documents) == {STABLE}
    assert rollout.startswith("kubectl rollout status")
    assert selected_deployments(rollout, documents) == {STABLE}
    # The jsonpath promote reads the canary's image with, on a canary set to a model's tag.
    match = re.search(r"\{range \.items\[\*\]\}(.*)\{\" \"\}\{end\}", read)
    assert match, read
    image = kubectl(
        "set", "image", "--local", "-f", "k8s/canary.yaml", "oncology-webservice=reg/onc:2.0.1-ab",
        "-o", f"jsonpath={match.group(1)}",
    )  # fmt: skip
    assert image == "reg/onc:2.0.1-ab"


def test_make_rollback_undoes_the_canary_or_both_after_a_promote(
    documents: list[dict[str, Any]],
) -> None:
    for args, wanted in (((), {CANARY}), (("track=stable,canary",), {CANARY, STABLE})):
        commands = make_dry_run("rollback", *args).splitlines()
        assert commands[0].startswith("kubectl rollout undo deployments -l ")
        assert commands[1].startswith("kubectl rollout status deployments -l ")
        assert [selected_deployments(c, documents) for c in commands] == [wanted, wanted]


def test_network_policy_admits_only_labelled_callers_and_monitoring(
    rendered: dict[str, dict[str, Any]],
) -> None:
    policy = rendered["NetworkPolicy"]["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"} and policy["egress"] == []
    client_label = {"oncology-client": "true"}
    sources = []
    for rule in policy["ingress"]:
        assert rule["from"], "a rule without `from` admits every source"
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            assert set(peer) in ({"podSelector"}, {"namespaceSelector"}), peer
            selector = next(iter(peer.values()))
            assert set(selector) == {"matchLabels"}, "no expressions that could match everything"
            sources.append((next(iter(peer)), selector["matchLabels"]))
    assert sorted(sources, key=str) == sorted(
        [
            ("podSelector", client_label),
            ("namespaceSelector", client_label),
            ("namespaceSelector", {"kubernetes.io/metadata.name": "monitoring"}),
        ],
        key=str,
    )


def test_tokens_come_from_a_mounted_secret_that_is_never_committed(
    rendered: dict[str, dict[str, Any]],
) -> None:
    pod = rendered["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    volume = next(v for v in pod["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "oncology-webservice-tokens"
    assert volume["secret"]["defaultMode"] == 0o440
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"] is True
    assert "subPath" not in mount, "a subPath mount never sees a rotated Secret"
    for variable in ("ONCOLOGY_TOKENS_FILE", "ONCOLOGY_METRICS_TOKENS_FILE"):
        assert Path(env[variable]).parent == Path(mount["mountPath"]), variable
    assert "Secret" not in rendered
    for manifest in K8S.rglob("*.yaml"):
        for document in yaml.safe_load_all(manifest.read_text()):
            assert document.get("kind") != "Secret", manifest
