"""Models in a bucket on Kubernetes, checked offline with kubectl: the `model-from-storage`
component (the service's pods load their model from the bucket), the training and batch Jobs
reading and writing the bucket, their identity and egress, and KServe's storageUri variant."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from oncology_model.storage import ObjectUrl
from tests.system.test_k8s import (
    CLUSTER_DNS,
    K8S,
    POSTGRES,
    deployments,
    env_of,
    kubectl,
    make_dry_run,
    overlay_with,
    selects,
)
from webservice.config import artifacts_problem

COMPONENT = K8S / "components" / "model-from-storage"
SETTINGS = "oncology-model-storage"
JOBS = {
    "training": K8S / "training" / "job-from-storage.yaml",
    "batch": K8S / "batch" / "job-from-storage.yaml",
}


@pytest.fixture(scope="module")
def with_storage(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return overlay_with(COMPONENT, tmp_path_factory.mktemp("storage"))


@pytest.fixture(scope="module")
def without_storage() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(kubectl("kustomize", str(K8S))))


def one(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def test_the_service_pods_load_their_model_from_the_bucket(
    with_storage: list[dict[str, Any]],
) -> None:
    settings = one(with_storage, "ConfigMap", SETTINGS)["data"]
    for name, deployment in deployments(with_storage).items():
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        (source,) = [e["value"] for e in env_of(pod) if e["name"] == "ONCOLOGY_ARTIFACTS_DIR"]
        assert artifacts_problem(source) is None and ObjectUrl.parse(source).is_prefix, name
        assert env_of(pod)[0]["name"] == "ONCOLOGY_DATABASE_URL", "postgres patches it by position"
        assert container["envFrom"] == [
            {"configMapRef": {"name": SETTINGS}},
            {"secretRef": {"name": SETTINGS, "optional": True}},
        ]
        assert pod["spec"]["serviceAccountName"] == SETTINGS
        assert pod["metadata"]["labels"]["object-store"] == "true"
    assert settings["AWS_REGION"]
    for key, value in settings.items():  # where things are, never a credential
        assert "SECRET" not in key and "KEY" not in key, key
        if key.startswith("ONCOLOGY_"):
            ObjectUrl.parse(value)


def test_the_identity_is_a_role_or_an_uncommitted_secret(
    with_storage: list[dict[str, Any]],
) -> None:
    account = one(with_storage, "ServiceAccount", SETTINGS)
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
        "arn:aws:iam::"
    )
    assert account["automountServiceAccountToken"] is False
    assert not [d for d in with_storage if d["kind"] == "Secret"]


def test_only_the_object_store_and_dns_are_let_through(
    with_storage: list[dict[str, Any]], without_storage: list[dict[str, Any]]
) -> None:
    policy = one(with_storage, "NetworkPolicy", "oncology-object-store")["spec"]
    assert policy["policyTypes"] == ["Egress"]
    store, dns = policy["egress"]
    assert store == {
        "to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }
    assert dns["to"] == [CLUSTER_DNS] and {p["port"] for p in dns["ports"]} == {53}
    pods = [d["spec"]["template"] for d in deployments(with_storage).values()]
    pods += [yaml.safe_load(path.read_text())["spec"]["template"] for path in JOBS.values()]
    for pod in pods:
        assert selects(policy["podSelector"], pod["metadata"]["labels"])
    # Without the component, the service's pods are not let out to the store.
    for deployment in deployments(without_storage).values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert not selects(policy["podSelector"], labels)


def test_the_component_goes_with_the_postgres_one(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    components = [os.path.relpath(path, overlay) for path in (POSTGRES, COMPONENT)]
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [os.path.relpath(K8S, overlay)], "components": components})
    )
    both = list(yaml.safe_load_all(kubectl("kustomize", str(overlay))))
    for deployment in deployments(both).values():
        env = env_of(deployment["spec"]["template"])
        assert env[0]["valueFrom"]["secretKeyRef"]["name"] == "oncology-records-app"
        assert env[-1]["name"] == "ONCOLOGY_ARTIFACTS_DIR"


@pytest.mark.parametrize("job", sorted(JOBS))
def test_the_jobs_read_and_write_the_bucket_instead_of_claims(job: str) -> None:
    from_storage = yaml.safe_load(JOBS[job].read_text())
    with_claims = yaml.safe_load((JOBS[job].parent / "job.yaml").read_text())
    pod = from_storage["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (claims_container,) = with_claims["spec"]["template"]["spec"]["containers"]
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert pod["serviceAccountName"] == SETTINGS
    settings = yaml.safe_load((COMPONENT / "settings.yaml").read_text())["data"]
    referenced = [arg[2:-1] for arg in container["args"] if arg.startswith("$(")]
    assert referenced and set(referenced) <= set(settings)
    assert {"configMapRef": {"name": SETTINGS}} in container["envFrom"]
    # Locked down and sized as the Job with claims; its own policy (no ingress) still selects it.
    for key in ("securityContext", "resources", "image"):
        assert container[key] == claims_container[key], key
    assert pod["securityContext"] == with_claims["spec"]["template"]["spec"]["securityContext"]
    own_policy = yaml.safe_load((JOBS[job].parent / "network-policy.yaml").read_text())["spec"]
    assert selects(
        own_policy["podSelector"], from_storage["spec"]["template"]["metadata"]["labels"]
    )


@pytest.mark.parametrize(
    ("target", "container"), [("train-job", "training"), ("batch-job", "scoring")]
)
def test_make_job_with_storage_applies_the_settings_and_creates_that_job(
    target: str, container: str
) -> None:
    output = make_dry_run(
        target, "storage=1", "training_tag=reg/onc-training", "image_version=2.0.1"
    )
    for name in ("settings.yaml", "service-account.yaml", "network-policy.yaml"):
        assert f"k8s/components/model-from-storage/{name}" in output
    assert "job-from-storage.yaml" in output and "persistent" not in output
    assert "volume" not in output.split("kubectl set image")[0]
    folder = "training" if container == "training" else "batch"
    rendered = kubectl(
        "set", "image", "--local", "-f", f"k8s/{folder}/job-from-storage.yaml",
        f"{container}=reg/onc-training:2.0.1", "-o", "yaml",
    )  # fmt: skip
    job = yaml.safe_load(rendered)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/onc-training:2.0.1"


def test_kserve_takes_the_model_from_its_storage_uri() -> None:
    rendered = {
        d["kind"]: d
        for d in yaml.safe_load_all(kubectl("kustomize", str(K8S / "kserve-from-storage")))
    }
    plain = {d["kind"]: d for d in yaml.safe_load_all(kubectl("kustomize", str(K8S / "kserve")))}
    predictor = rendered["InferenceService"]["spec"]["predictor"]
    assert ObjectUrl.parse(predictor["model"]["storageUri"]).is_prefix
    assert predictor["serviceAccountName"] == SETTINGS
    (container,) = rendered["ServingRuntime"]["spec"]["containers"]
    (plain_container,) = plain["ServingRuntime"]["spec"]["containers"]
    # KServe's storage initializer downloads storageUri into /mnt/models; the service verifies it.
    assert container["env"] == [
        *plain_container["env"],
        {"name": "ONCOLOGY_ARTIFACTS_DIR", "value": "/mnt/models"},
    ]
    assert {k: v for k, v in container.items() if k != "env"} == {
        k: v for k, v in plain_container.items() if k != "env"
    }
