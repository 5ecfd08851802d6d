"""The KServe example (k8s/kserve/): this image as a V2 custom runtime, checked offline.

KServe's CRDs have no schema here, so the fields that decide whether it works are asserted:
the runtime speaks v2, the InferenceService selects it, the probes hit the protocol's health
endpoints on the port gunicorn listens on, and the container is locked down like the Deployment.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask

from webservice.openinference import MODEL_NAME

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    """`kubectl kustomize k8s/kserve`, by kind."""
    output = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / "kserve")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {document["kind"]: document for document in yaml.safe_load_all(output)}


def container(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (serving,) = rendered["ServingRuntime"]["spec"]["containers"]
    return serving


def test_builds_a_runtime_and_an_inference_service(rendered: dict[str, dict[str, Any]]) -> None:
    assert set(rendered) == {"ServingRuntime", "InferenceService"}
    assert rendered["ServingRuntime"]["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert rendered["InferenceService"]["apiVersion"] == "serving.kserve.io/v1beta1"


def test_the_inference_service_runs_this_runtime_over_v2(
    rendered: dict[str, dict[str, Any]],
) -> None:
    runtime, service = rendered["ServingRuntime"], rendered["InferenceService"]
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "v2"
    assert "v2" in runtime["spec"]["protocolVersions"]
    formats = {(f["name"], f["version"]) for f in runtime["spec"]["supportedModelFormats"]}
    assert (model["modelFormat"]["name"], model["modelFormat"]["version"]) in formats
    # clients call /v2/models/<name>/infer: the service's name is the model's
    assert service["metadata"]["name"] == MODEL_NAME
    assert container(rendered)["name"] == "kserve-container"


def test_probes_use_the_protocol_health_endpoints(
    rendered: dict[str, dict[str, Any]], app: Flask
) -> None:
    serving = container(rendered)
    port = serving["ports"][0]["containerPort"]
    assert port == 8080  # gunicorn's port in the image (gunicorn.conf.py, Dockerfile)
    client = app.test_client()
    expected = {"readinessProbe": "/v2/health/ready", "livenessProbe": "/v2/health/live"}
    for probe, path in expected.items():
        assert serving[probe]["httpGet"] == {"path": path, "port": port}
        assert client.get(path).status_code == 200, path


def test_the_runtime_declares_the_grpc_port(rendered: dict[str, dict[str, Any]]) -> None:
    """gRPC V2 too, on the image's GRPC_PORT, in the port KServe takes for gRPC (h2c)."""
    assert "grpc-v2" in rendered["ServingRuntime"]["spec"]["protocolVersions"]
    assert container(rendered)["ports"][1] == {
        "name": "h2c", "containerPort": 8081, "protocol": "TCP"
    }  # fmt: skip


def test_the_container_is_the_deployment_container(rendered: dict[str, dict[str, Any]]) -> None:
    deployment = yaml.safe_load((ROOT / "k8s" / "deployment.yaml").read_text())
    (reference,) = deployment["spec"]["template"]["spec"]["containers"]
    serving = container(rendered)
    for field in ("image", "securityContext", "resources", "volumeMounts"):
        assert serving[field] == reference[field], field
    # The same settings, the prediction record's database among them; KServe's pods have no
    # track label, so they record their answers as KServe's.
    track = {"name": "ONCOLOGY_TRACK", "value": "kserve"}
    assert track in serving["env"]
    expected = [track if e["name"] == "ONCOLOGY_TRACK" else e for e in reference["env"]]
    assert serving["env"] == expected
