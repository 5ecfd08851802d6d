"""The Kubernetes manifests and the Makefile's rollout commands, checked offline with kubectl."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask

from oncology_model.integrity import bundled_artifacts_dir
from webservice.config import DEFAULTS, database_problem, load_config
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
    # The purge CronJob runs the service's image too (oncology-db is in it).
    (container,) = purge_cronjob(documents)["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["image"] == f"{image['newName']}:{image['newTag']}"


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
    port, grpc = rendered["Service"]["spec"]["ports"]
    container = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert port["name"] == "http" and port["targetPort"] == container["ports"][0]["name"]
    # The gRPC port, named for what it speaks, on the port the image's gRPC service listens on.
    assert grpc["name"] == "grpc" == grpc["targetPort"] and grpc["appProtocol"] == "grpc"
    assert {"name": "grpc", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
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
    for probe in ("readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert path in served, (probe, path)
        assert client.get(path).status_code == 200, (probe, path)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        # The kubelet sends no token: with tokens on (as in k8s/), the probes must stay open.
        assert access(container[probe]["httpGet"]["path"]) == "open", probe
    # Started once the gRPC process is ready too: grpc.health.v1's default service (""), which
    # is open and SERVING once its model is verified (tests/service/test_grpc.py).
    assert container["startupProbe"]["grpc"] == {"port": 8081}


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


def test_every_container_is_locked_down(
    rendered: dict[str, dict[str, Any]], documents: list[dict[str, Any]]
) -> None:
    jobs = [
        yaml.safe_load((K8S / folder / "job.yaml").read_text()) for folder in ("training", "batch")
    ]
    jobs.append(yaml.safe_load(MIGRATE_JOB.read_text()))
    for pod in (
        rendered["Deployment"]["spec"]["template"]["spec"],
        *(job["spec"]["template"]["spec"] for job in jobs),
        purge_cronjob(documents)["spec"]["jobTemplate"]["spec"]["template"]["spec"],
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
    verdict, output = make_dry_run("promote").split("\n", 1)
    # Only once the canary's verdict on outcomes says PROMOTE (exit 0), unless forced.
    assert verdict.startswith("kubectl exec deployment/oncology-webservice")
    assert verdict.endswith("oncology-quality compare --candidate canary --baseline stable")
    assert make_dry_run("promote", "force=1").splitlines()[0] == output.splitlines()[0]
    assert "--since 2026-12-01" in make_dry_run("canary-verdict", "since=2026-12-01")
    read = output.split("\n", 1)[0]
    rollout = next(line for line in output.splitlines() if line.startswith("kubectl rollout"))
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
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert_egress_only_to_database_and_dns(policy, MANAGED_DATABASE)
    client_label = {"oncology-client": "true"}
    sources = []
    for rule in policy["ingress"]:
        assert rule["from"], "a rule without `from` admits every source"
        assert rule["ports"] == [
            {"port": "http", "protocol": "TCP"},
            {"port": "grpc", "protocol": "TCP"},
        ]
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
    env = {e["name"]: e.get("value") for e in container["env"]}
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
            # (a list: a component's JSON patch)
            assert isinstance(document, list) or document.get("kind") != "Secret", manifest


# --- the prediction record: database, migration, retention ---------------------------------------

RECORDS = K8S / "records"
MIGRATE_JOB = RECORDS / "migrate-job.yaml"
POSTGRES = K8S / "components" / "postgres"
DATABASE_SECRET = {"name": "oncology-webservice-database", "key": "url"}
# The placeholder for a managed database outside the cluster (TEST-NET-1: reaches nothing).
MANAGED_DATABASE = {"ipBlock": {"cidr": "192.0.2.0/24"}}
CLUSTER_DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}


def purge_cronjob(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (cronjob,) = [d for d in documents if d["kind"] == "CronJob"]
    return cronjob


def record_pods(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pod templates that touch the database: both Deployments, the migration Job's and the
    purge CronJob's."""
    pods = {name: d["spec"]["template"] for name, d in deployments(documents).items()}
    pods["migrate-job"] = yaml.safe_load(MIGRATE_JOB.read_text())["spec"]["template"]
    pods["purge-cronjob"] = purge_cronjob(documents)["spec"]["jobTemplate"]["spec"]["template"]
    return pods


def env_of(pod: dict[str, Any]) -> list[dict[str, Any]]:
    (container,) = pod["spec"]["containers"]
    return list(container.get("env", []))


def strings(value: Any) -> list[str]:
    """Every string in a parsed YAML document, keys and values."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return [value] if isinstance(value, str) else []


def downward(field_path: str, metadata: dict[str, Any]) -> str:
    """What the kubelet puts in a variable with this fieldRef: a label's value, '' if absent."""
    match = re.fullmatch(r"metadata\.labels\['([^']+)'\]", field_path)
    assert match, f"not a pod label: {field_path}"
    return str(metadata.get("labels", {}).get(match.group(1), ""))


def test_stack_includes_the_purge_cronjob_and_the_jobs_network_policy(
    documents: list[dict[str, Any]],
) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in documents)
    assert ("CronJob", "oncology-records-purge") in kinds
    assert ("NetworkPolicy", "oncology-records") in kinds
    assert not any(kind in ("Job", "Secret") for kind, _ in kinds), kinds


def test_every_pod_reads_the_database_url_from_the_operators_secret(
    documents: list[dict[str, Any]],
) -> None:
    for name, pod in record_pods(documents).items():
        env = env_of(pod)
        # First: k8s/components/postgres replaces it by position (its JSON patch tests the name).
        assert env[0]["name"] == "ONCOLOGY_DATABASE_URL", name
        assert env[0] == {
            "name": "ONCOLOGY_DATABASE_URL",
            "valueFrom": {"secretKeyRef": DATABASE_SECRET},
        }, name
        assert [e["name"] for e in env].count("ONCOLOGY_DATABASE_URL") == 1, name
    # Nowhere a database URL written into a manifest (comments may show its form).
    for manifest in K8S.rglob("*.yaml"):
        for document in yaml.safe_load_all(manifest.read_text()):
            for value in strings(document):
                assert not re.search(r"(postgresql|sqlite)[+\w]*://", value), (manifest, value)


def test_the_service_pods_never_migrate_and_record_their_track(
    documents: list[dict[str, Any]],
) -> None:
    """Each Deployment's pods: ONCOLOGY_DB_MIGRATE false as the service parses it, and
    ONCOLOGY_TRACK from the pod's own track label (so the canary records `canary`)."""
    tracks = {}
    for name, deployment in deployments(documents).items():
        template = deployment["spec"]["template"]
        env = {e["name"]: e for e in env_of(template)}
        environ = {"ONCOLOGY_DB_MIGRATE": env["ONCOLOGY_DB_MIGRATE"]["value"]}
        field = env["ONCOLOGY_TRACK"]["valueFrom"]["fieldRef"]["fieldPath"]
        environ["ONCOLOGY_TRACK"] = downward(field, template["metadata"])
        config = load_config(environ=environ)
        assert config["DB_MIGRATE"] is False, name
        tracks[name] = config["TRACK"]
        assert config["TRACK"] == deployment["metadata"]["labels"]["track"], name
    assert tracks == {STABLE: "stable", CANARY: "canary"}
    assert DEFAULTS["DB_MIGRATE"] is True, "the default migrates: the manifests must turn it off"


def test_downward_check_catches_a_missing_label() -> None:
    assert downward("metadata.labels['track']", {"labels": {"app": "x"}}) == ""
    with pytest.raises(AssertionError):
        downward("metadata.name", {"labels": {"track": "stable"}})


def test_record_jobs_run_oncology_db_as_the_service_parses_their_settings(
    documents: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The Job migrates and the CronJob purges, daily, never two at once; their commands run
    for real (as the image's oncology-db does: `python -m webservice.records`) on a SQLite file."""
    job = yaml.safe_load(MIGRATE_JOB.read_text())
    cronjob = purge_cronjob(documents)
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["activeDeadlineSeconds"] > 0
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    minute, hour, *every = cronjob["spec"]["schedule"].split()
    assert minute.isdigit() and hour.isdigit() and every == ["*", "*", "*"], "once a day"
    assert cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0
    url = f"sqlite:///{tmp_path}/records.sqlite3"
    outputs = []
    for pod, expected in (
        (job["spec"]["template"], "upgrade"),
        (cronjob["spec"]["jobTemplate"]["spec"]["template"], "purge"),
    ):
        assert pod["spec"]["restartPolicy"] == "Never"
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["oncology-db"] and container["args"] == [expected]
        literal = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        environ = {**literal, "ONCOLOGY_DATABASE_URL": url}
        if expected == "purge":
            assert load_config(environ=environ)["RETENTION_DAYS"] == 400
        result = subprocess.run(
            [sys.executable, "-m", "webservice.records", *container["args"]],
            cwd=ROOT, env={**os.environ, **environ}, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0].startswith("schema none -> "), outputs[0]
    assert "(400 days)" in outputs[1], outputs[1]


def test_make_migrate_job_creates_a_job_with_the_service_image_and_waits() -> None:
    output = make_dry_run("migrate-job", "tag=reg/onc", "image_version=2.0.1")
    assert (
        "kubectl set image --local -f k8s/records/migrate-job.yaml oncology-db=reg/onc:2.0.1"
        in (output)
    )
    assert "kubectl create -f - -o name" in output and "kubectl patch" not in output
    assert "Complete" in output and "Failed" in output and "kubectl logs $job" in output
    assert "exit 1" in output
    rendered = kubectl(
        "set", "image", "--local", "-f", str(MIGRATE_JOB), "oncology-db=reg/onc:2.0.1",
        "-o", "yaml",
    )  # fmt: skip
    job = yaml.safe_load(rendered)
    assert job["kind"] == "Job" and job["metadata"]["generateName"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/onc:2.0.1"


def test_make_deploy_and_promote_move_the_purge_cronjob_with_the_stable_image(
    documents: list[dict[str, Any]],
) -> None:
    cronjob = purge_cronjob(documents)
    deploy = make_dry_run("deploy", "tag=reg/onc", "image_version=2.0.1").splitlines()
    promote = make_dry_run("promote", "force=1").splitlines()
    for command, image in ((deploy[-1], "reg/onc:2.0.1"), (promote[-1], "$1")):
        match = re.fullmatch(r"kubectl set image cronjobs -l (\S+) oncology-db=(\S+)", command)
        assert match, command
        selector = label_selector(match.group(1))
        assert all(cronjob["metadata"]["labels"].get(k) in v for k, v in selector.items())
        assert match.group(2) == image
    # after the Deployments' rollout succeeded, never before
    assert deploy[-2].startswith("kubectl rollout status deployments")
    assert promote[-2].startswith("kubectl rollout status deployments")
    rendered = kubectl(
        "set", "image", "--local", "-f", str(RECORDS / "purge-cronjob.yaml"),
        "oncology-db=reg/onc:2.0.1", "-o", "yaml",
    )  # fmt: skip
    spec = yaml.safe_load(rendered)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["containers"][0]["image"] == "reg/onc:2.0.1"


def assert_egress_only_to_database_and_dns(
    policy: dict[str, Any], database: dict[str, Any]
) -> None:
    """Exactly two egress rules: TCP 5432 to the database, DNS (UDP and TCP 53) to the cluster's
    DNS pods; no rule without `to` or `ports` (which would allow every peer or port)."""
    database_rule, dns_rule = policy["egress"]
    assert database_rule == {"to": [database], "ports": [{"port": 5432, "protocol": "TCP"}]}
    assert dns_rule["to"] == [CLUSTER_DNS]
    assert sorted(dns_rule["ports"], key=str) == [
        {"port": 53, "protocol": "TCP"},
        {"port": 53, "protocol": "UDP"},
    ]


def test_egress_check_catches_a_wide_rule() -> None:
    dns = {"to": [CLUSTER_DNS], "ports": [{"port": 53, "protocol": p} for p in ("UDP", "TCP")]}
    database = {"to": [MANAGED_DATABASE], "ports": [{"port": 5432, "protocol": "TCP"}]}
    for egress in (
        [{**database, "ports": [{"port": 5432, "protocol": "TCP"}, {"port": 22}]}, dns],
        [{"ports": database["ports"]}, dns],
        [database, dns, {"to": [{"podSelector": {}}]}],
        [database, {**dns, "to": [{"namespaceSelector": {}}]}],
    ):
        with pytest.raises((AssertionError, KeyError, ValueError)):
            assert_egress_only_to_database_and_dns({"egress": egress}, MANAGED_DATABASE)


def test_record_jobs_network_policy_lets_them_reach_only_the_database(
    documents: list[dict[str, Any]],
) -> None:
    (policy,) = [
        d
        for d in documents
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "oncology-records"
    ]
    spec = policy["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"} and spec["ingress"] == []
    assert_egress_only_to_database_and_dns(spec, MANAGED_DATABASE)
    pods = record_pods(documents)
    for name in ("migrate-job", "purge-cronjob"):
        assert selects(spec["podSelector"], pods[name]["metadata"]["labels"]), name
    service_policy = next(
        d for d in documents if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == STABLE
    )["spec"]
    for name in (STABLE, CANARY):  # the service's pods keep their own policy (ingress from callers)
        assert not selects(spec["podSelector"], pods[name]["metadata"]["labels"]), name
    for name in ("migrate-job", "purge-cronjob"):  # and the Jobs are no callers' target
        assert not selects(service_policy["podSelector"], pods[name]["metadata"]["labels"]), name


def overlay_with(component: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """k8s/ with a component, as an operator's overlay writes it (relative paths only)."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(K8S, overlay)],
                "components": [os.path.relpath(component, overlay)],
            }
        )
    )
    return list(yaml.safe_load_all(kubectl("kustomize", str(overlay))))


# The CloudNativePG Cluster fields used here, as its v1 API (the CRD) names them: no schema of it is
# at hand offline (make k8s-check validates every other kind strictly), so a misspelt field,
# which the API server would drop or refuse, fails here.
CLUSTER_FIELDS: dict[str, Any] = {
    "description": None,
    "instances": None,
    "imageName": None,
    "postgresql": {"synchronous": {"method": None, "number": None}, "parameters": None},
    "bootstrap": {"initdb": {"database": None, "owner": None}},
    "storage": {"size": None, "storageClass": None},
    "resources": {"requests": None, "limits": None},
}


def unknown_fields(value: Any, known: Any, path: str = "spec") -> list[str]:
    if known is None or not isinstance(value, dict):
        return []
    unknown = [f"{path}.{key}" for key in value if key not in known]
    for key, child in value.items():
        if key in known:
            unknown += unknown_fields(child, known[key], f"{path}.{key}")
    return unknown


def test_postgres_component_runs_cloudnativepg_and_points_every_pod_at_it(
    documents: list[dict[str, Any]], tmp_path: Path
) -> None:
    with_postgres = overlay_with(POSTGRES, tmp_path)
    (cluster,) = [d for d in with_postgres if d["kind"] == "Cluster"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert unknown_fields(spec, CLUSTER_FIELDS) == []
    assert spec["instances"] >= 2, "a standby to fail over to"
    assert re.fullmatch(r"\d+[MGT]i", spec["storage"]["size"]), spec["storage"]
    initdb = spec["bootstrap"]["initdb"]
    assert initdb["database"] and initdb["owner"]
    # Apart from the Cluster, the same objects as k8s/ alone.
    assert sorted((d["kind"], d["metadata"]["name"]) for d in with_postgres) == sorted(
        [(d["kind"], d["metadata"]["name"]) for d in documents]
        + [("Cluster", cluster["metadata"]["name"])]
    )
    # The operator's Secret for the owner: <cluster>-app, its `uri` a postgresql:// URL naming the
    # cluster's read-write Service, which the service takes as it is.
    operator_secret = {"name": f"{cluster['metadata']['name']}-app", "key": "uri"}
    uri = f"postgresql://{initdb['owner']}:pw@{cluster['metadata']['name']}-rw.ns:5432/db"
    assert database_problem(uri) is None
    pods = record_pods(with_postgres)
    patched = kubectl(
        "patch", "--local", "-f", str(MIGRATE_JOB), "--type", "json",
        "--patch-file", str(POSTGRES / "database-url.yaml"), "-o", "yaml",
    )  # fmt: skip
    pods["migrate-job"] = yaml.safe_load(patched)["spec"]["template"]
    for name, pod in pods.items():
        sources = [e["valueFrom"] for e in env_of(pod) if e["name"] == "ONCOLOGY_DATABASE_URL"]
        assert sources == [{"secretKeyRef": operator_secret}], name
    # Everything else of the pods as in k8s/ alone.
    for name, pod in record_pods(documents).items():
        assert env_of(pod)[1:] == env_of(pods[name])[1:], name
    database = {"podSelector": {"matchLabels": {"cnpg.io/cluster": cluster["metadata"]["name"]}}}
    for policy in (d for d in with_postgres if d["kind"] == "NetworkPolicy"):
        assert_egress_only_to_database_and_dns(policy["spec"], database)
    # `make migrate-job` with the component's patch patches the Job it creates.
    patch = "k8s/components/postgres/database-url.yaml"
    output = make_dry_run("migrate-job", "tag=reg/onc", "image_version=2.0.1", f"job_patch={patch}")
    assert f"| kubectl patch --local -f - --type json --patch-file {patch} -o yaml |" in output
