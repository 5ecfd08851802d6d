"""The OpenAPI document: valid Swagger 2.0, complete, and true to what the server answers."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
import schemathesis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate

from oncology_model import Classifier
from oncology_model.datamodel import FEATURES
from oncology_model.verify import SEED_TUMOR
from tests import schemathesis_hooks  # noqa: F401  (registers the text/csv serializer)
from webservice import create_app

schema = schemathesis.openapi.from_wsgi("/swagger.json", create_app({"TESTING": True}))


def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/swagger.json")
    assert response.status_code == 200
    return cast(dict[str, Any], response.get_json())


def test_document_is_valid_openapi(client: FlaskClient) -> None:
    validate(spec(client))


def test_every_endpoint_is_documented(client: FlaskClient) -> None:
    paths = spec(client)["paths"]
    assert set(paths) == {
        "/v1/predictions",
        "/v1/predictions/batch",
        "/v1/predictions/{prediction_id}",
        "/v1/predictions/{prediction_id}/outcome",
        "/v1/outcomes",
        "/v1/quality",
        "/v1/model",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/versions/{model_version}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/versions/{model_version}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    }
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert operation["summary"], (path, method)
            assert {"200", "204"} & set(operation["responses"]), (path, method)
            assert {"500"} <= set(operation["responses"]), (path, method)


def test_predict_documents_every_status_it_can_return(client: FlaskClient) -> None:
    for path in ("/v1/predictions", "/v1/predictions/batch"):
        responses = spec(client)["paths"][path]["post"]["responses"]
        assert set(responses) == {"200", "400", "413", "415", "422", "500", "503"}
        assert responses["422"]["schema"] == {"$ref": "#/definitions/Problem"}


def test_open_inference_errors_are_documented_in_their_shape(client: FlaskClient) -> None:
    for path in (
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    ):
        responses = spec(client)["paths"][path]["post"]["responses"]
        assert set(responses) == {"200", "400", "404", "413", "500", "503"}
        assert responses["400"]["schema"] == {"$ref": "#/definitions/InferenceError"}


def test_every_tumor_field_has_range_description_example_and_nullability(
    client: FlaskClient,
) -> None:
    tumor = spec(client)["definitions"]["Tumor"]
    assert list(tumor["properties"]) == list(FEATURES)
    assert sorted(tumor["required"]) == sorted(FEATURES)
    assert tumor["additionalProperties"] is False
    for name, field in tumor["properties"].items():
        assert field["type"] == "integer", name
        assert (field["minimum"], field["maximum"]) == (1, 10), name
        assert field["description"] and "example" in field, name
        assert field["x-nullable"] is True, name


def test_errors_are_documented_as_problem_json(client: FlaskClient) -> None:
    document = spec(client)
    assert "application/problem+json" in document["produces"]
    assert set(document["definitions"]["Problem"]["properties"]) == {
        "type",
        "title",
        "status",
        "detail",
        "errors",
    }


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_and_every_answer_matches_the_schema(case: Any) -> None:
    case.call_and_validate()


def test_examples_come_from_the_served_model(client: FlaskClient, classifier: Classifier) -> None:
    definitions = spec(client)["definitions"]
    prediction = definitions["Prediction"]["properties"]
    assert prediction["threshold"]["example"] == classifier.threshold
    assert prediction["model_version"]["example"] == classifier.model_version
    served = client.post("/v1/predictions?explain=true", json=SEED_TUMOR.to_dict()).get_json()
    assert (
        definitions["Probabilities"]["properties"]["malignant"]["example"]
        == (served["probabilities"]["malignant"])
    )
    contributions = definitions["Contributions"]["properties"]
    assert {name: field["example"] for name, field in contributions.items()} == (
        served["contributions"]
    )
    description = prediction["contributions"]["description"]
    assert "exact Shapley value" in description
    assert f"p - {classifier.baseline_probability:.6f}" in description


def test_batch_limit_follows_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCOLOGY_MAX_BATCH", "250")
    document = create_app({"TESTING": True}).test_client().get("/swagger.json").get_json()
    tumors = document["definitions"]["TumorBatch"]["properties"]["tumors"]
    assert tumors["maxItems"] == 250
    assert "1 to 250 tumors" in tumors["description"]
    predicting = {k: v for k, v in document["paths"].items() if k.startswith("/v1/predictions/b")}
    assert "10,000" not in json.dumps(predicting)
