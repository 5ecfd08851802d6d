"""The HTTP contract, in-process with Flask's test client: every endpoint and every error."""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from oncology_model import Classifier, Prediction, Tumor
from oncology_model.datamodel import FEATURES
from oncology_model.integrity import ONNX_FILE
from tests.helpers import (
    MALIGNANT_JSON,
    PREDICTION_ID,
    SEED_JSON,
    assert_same_answer,
    problem,
    without_ids,
)
from webservice import create_app


def test_predict_seed_tumor(client: FlaskClient, classifier: Classifier) -> None:
    response = client.post("/v1/predictions", json=SEED_JSON)
    assert response.status_code == 200
    assert response.content_type == "application/json"
    body = response.get_json()
    assert set(body) == {
        "prediction_id", "prediction", "probabilities", "threshold", "imputed", "model_version"
    }  # fmt: skip
    assert PREDICTION_ID.fullmatch(body["prediction_id"])
    assert body["prediction"] == "benign"
    malignant = classifier.predict_proba(Tumor(**SEED_JSON))[Prediction.MALIGNANT]
    assert body["probabilities"]["malignant"] == pytest.approx(malignant, abs=1e-6)
    benign = classifier.predict_proba(Tumor(**SEED_JSON))[Prediction.BENIGN]
    assert body["probabilities"]["benign"] == pytest.approx(benign, abs=1e-6)
    assert body["threshold"] == pytest.approx(classifier.threshold)
    assert body["imputed"] == []
    assert body["model_version"] == classifier.model_version


def test_predict_malignant_and_whole_floats(client: FlaskClient) -> None:
    body = client.post("/v1/predictions", json={**MALIGNANT_JSON, "mitoses": 10.0}).get_json()
    assert body["prediction"] == "malignant"
    assert body["probabilities"]["malignant"] > 0.99


def test_nulls_are_imputed_and_listed(client: FlaskClient) -> None:
    tumor = {**SEED_JSON, "bare_nuclei": None, "mitoses": None}
    body = client.post("/v1/predictions", json=tumor).get_json()
    assert body["imputed"] == ["bare_nuclei", "mitoses"]
    assert body["prediction"] == "benign"


def test_explain_gives_all_nine_contributions(client: FlaskClient, classifier: Classifier) -> None:
    tumor = {**SEED_JSON, "clump_thickness": 10}
    body = client.post("/v1/predictions?explain=true", json=tumor).get_json()
    assert list(body["contributions"]) == list(FEATURES)
    row = [[float(v) for v in tumor.values()]]
    expected = classifier.contributions(row)[0]
    for name, value in zip(FEATURES, expected, strict=True):
        assert body["contributions"][name] == pytest.approx(value, abs=1e-6)
    assert body["contributions"]["clump_thickness"] > 0
    assert (
        "contributions" not in client.post("/v1/predictions?explain=false", json=tumor).get_json()
    )


@pytest.mark.parametrize("path", ["/v1/predictions", "/v1/predictions/batch"])
def test_bad_query_parameter_is_its_own_problem(client: FlaskClient, path: str) -> None:
    payload = SEED_JSON if path == "/v1/predictions" else {"tumors": [SEED_JSON]}
    body = problem(client.post(f"{path}?explain=yes", json=payload), 422)
    assert body["type"] == "urn:oncology:problem:invalid-query-parameter"
    assert body["detail"] == "The query parameter explain is 'yes': use true or false."
    assert body["errors"] == {"explain": "'yes' is not a boolean: use true or false (or 1 or 0)"}


def test_batch_answers_in_order(client: FlaskClient) -> None:
    tumors = [SEED_JSON, MALIGNANT_JSON, {**SEED_JSON, "bare_nuclei": None}]
    response = client.post("/v1/predictions/batch", json={"tumors": tumors})
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    assert [p["prediction"] for p in predictions] == ["benign", "malignant", "benign"]
    assert [p["imputed"] for p in predictions] == [[], [], ["bare_nuclei"]]
    single = client.post("/v1/predictions", json=MALIGNANT_JSON).get_json()
    assert without_ids(predictions[1]) == without_ids(single)
    ids = [p["prediction_id"] for p in predictions]
    assert ids == sorted(ids) and len(set(ids)) == 3  # in order, each its own


@pytest.mark.parametrize("n", [1, 3, 8, 9, 500])
def test_answers_are_rounded_alike_for_any_batch_size(n: int) -> None:
    """Few rows take plain Python (no numpy call costs), many take numpy: the same figures."""
    import numpy as np

    from webservice.service import complements6, not_measured, round6

    rng = np.random.default_rng(n)
    probabilities = np.concatenate([rng.random(n), (rng.integers(0, 10**7, n) + 0.5) / 1e7])[:n]
    rounded = round6(probabilities)
    assert rounded == probabilities.round(6).tolist()
    assert round6(probabilities.tolist()) == rounded  # a single prediction's plain list
    assert complements6(rounded) == (1.0 - np.array(rounded)).round(6).tolist()
    rows = rng.integers(1, 11, size=(n, 9)).astype(float)
    rows[rng.random((n, 9)) < 0.05] = np.nan
    missing = np.isnan(rows)
    expected = [(i, missing[i].tolist()) for i in range(n) if missing[i].any()]
    assert not_measured(rows) == expected


def test_batch_with_explain(client: FlaskClient) -> None:
    body = client.post("/v1/predictions/batch?explain=true", json={"tumors": [SEED_JSON] * 3})
    assert all(list(p["contributions"]) == list(FEATURES) for p in body.get_json()["predictions"])


def test_full_batch_of_ten_thousand(client: FlaskClient) -> None:
    response = client.post("/v1/predictions/batch", json={"tumors": [SEED_JSON] * 10_000})
    assert response.status_code == 200
    assert len(response.get_json()["predictions"]) == 10_000


def test_model_card(client: FlaskClient, classifier: Classifier) -> None:
    card = client.get("/v1/model").get_json()
    assert card["version"] == classifier.model_version
    assert [f["name"] for f in card["features"]] == list(FEATURES)
    assert all(f["min"] == 1 and f["max"] == 10 and f["description"] for f in card["features"])
    assert card["classes"] == ["benign", "malignant"]
    assert card["threshold"] == classifier.threshold
    assert card["engine"]["name"] == "onnxruntime"
    assert set(card["cross_validation"]["metrics"]["roc_auc"]) == {"mean", "std", "min", "max"}
    assert len(card["artifacts"][ONNX_FILE]) == 64
    assert len(card["training_data"]["sha256"]) == 64
    assert card["trained_at"]
    assert "not a medical device" in card["intended_use"]
    assert card["limitations"]


def test_probes(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"


# --- errors -----------------------------------------------------------------------------------


def test_invalid_json_is_400(client: FlaskClient) -> None:
    body = problem(
        client.post("/v1/predictions", data='{"clump', content_type="application/json"), 400
    )
    assert "not valid JSON" in body["errors"]["body"]


@pytest.mark.parametrize(
    "data",
    [b"", b"{'a': 1}", b'{"a": NaN}', b"[Infinity]", b"\xff\xfe\x00", b"[" * 5000 + b"]" * 5000],
)
def test_malformed_bodies_are_400(client: FlaskClient, data: bytes) -> None:
    problem(client.post("/v1/predictions", data=data, content_type="application/json"), 400)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415_saying_what_to_send(
    client: FlaskClient, content_type: str | None
) -> None:
    response = client.post("/v1/predictions", data=json.dumps(SEED_JSON), content_type=content_type)
    body = problem(response, 415)
    assert "application/json" in body["detail"]


def test_json_with_charset_is_accepted(client: FlaskClient) -> None:
    response = client.post(
        "/v1/predictions",
        data=json.dumps(SEED_JSON),
        content_type="application/json; charset=utf-8",
    )
    assert response.status_code == 200


def test_oversized_body_is_413_before_parsing(tmp_path: Path) -> None:
    small = create_app({"TESTING": True, "MAX_BODY_BYTES": 1000}).test_client()
    body = problem(
        small.post("/v1/predictions", data=b"{" + b" " * 2000, content_type="application/json"), 413
    )
    assert "1000" in body["errors"]["body"]
    assert small.post("/v1/predictions", json=SEED_JSON).status_code == 200


def test_the_default_limit_takes_four_mib_and_refuses_one_byte_more(client: FlaskClient) -> None:
    limit = 4 * 1024 * 1024
    at_limit = client.post("/v1/predictions", data=b" " * limit, content_type="application/json")
    assert problem(at_limit, 400)["type"] != "urn:oncology:problem:body-too-large"
    over = client.post("/v1/predictions", data=b" " * (limit + 1), content_type="application/json")
    assert problem(over, 413)["detail"] == "The body is 4194305 bytes; the limit is 4194304 bytes."


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"mitoses": 0}, "mitoses", "out of range"),
        ({"mitoses": 11}, "mitoses", "out of range"),
        ({"mitoses": 2.5}, "mitoses", "not a whole number"),
        ({"mitoses": "5"}, "mitoses", "string"),
        ({"mitoses": True}, "mitoses", "boolean"),
        ({"mitoses": [1]}, "mitoses", "array"),
        ({"mitoses": 1e300}, "mitoses", "out of range"),
        ({"mitosis": 1}, "mitosis", "not a tumor field"),
    ],
)
def test_contract_breaks_are_422_naming_field_and_rule(
    client: FlaskClient, change: dict[str, Any], field: str, rule: str
) -> None:
    body = problem(client.post("/v1/predictions", json={**SEED_JSON, **change}), 422)
    assert field in body["errors"]
    assert rule in body["errors"][field]


def test_every_bad_field_is_listed_at_once(client: FlaskClient) -> None:
    tumor = {**SEED_JSON, "clump_thickness": 0, "mitoses": "x", "extra": 1}
    del tumor["bare_nuclei"]
    body = problem(client.post("/v1/predictions", json=tumor), 422)
    assert set(body["errors"]) == {"clump_thickness", "mitoses", "extra", "bare_nuclei"}
    assert body["errors"]["bare_nuclei"] == (
        "is required: an integer from 1 to 10, or null when not measured"
    )


def test_misspelt_field_is_never_ignored(client: FlaskClient) -> None:
    tumor = dict(SEED_JSON)
    tumor["mitosis"] = tumor.pop("mitoses")
    body = problem(client.post("/v1/predictions", json=tumor), 422)
    assert set(body["errors"]) == {"mitosis", "mitoses"}


@pytest.mark.parametrize("payload", [[SEED_JSON], "tumor", 5, None])
def test_body_that_is_not_an_object_is_422(client: FlaskClient, payload: Any) -> None:
    response = client.post(
        "/v1/predictions", data=json.dumps(payload), content_type="application/json"
    )
    assert "body" in problem(response, 422)["errors"]


def test_batch_errors_name_paths(client: FlaskClient) -> None:
    tumors = [SEED_JSON, SEED_JSON, SEED_JSON, {**SEED_JSON, "mitoses": 12}, "x"]
    body = problem(client.post("/v1/predictions/batch", json={"tumors": tumors}), 422)
    assert set(body["errors"]) == {"tumors[3].mitoses", "tumors[4]"}


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        ({"tumors": []}, "tumors"),
        ({"tumors": {}}, "tumors"),
        ({}, "tumors"),
        ({"tumors": [SEED_JSON], "extra": 1}, "extra"),
        ([SEED_JSON], "body"),
    ],
)
def test_bad_batch_envelopes_are_422(client: FlaskClient, payload: Any, key: str) -> None:
    assert key in problem(client.post("/v1/predictions/batch", json=payload), 422)["errors"]


def test_oversized_batch_is_422(client: FlaskClient) -> None:
    body = problem(client.post("/v1/predictions/batch", json={"tumors": [SEED_JSON] * 10_001}), 422)
    assert "10001" in body["errors"]["tumors"]


def test_unknown_path_is_404_problem(client: FlaskClient) -> None:
    assert "/nowhere" in problem(client.get("/nowhere"), 404)["detail"]
    problem(client.post("/v1/nowhere", json=SEED_JSON), 404)


def test_wrong_method_is_405_problem_with_allow(client: FlaskClient) -> None:
    response = client.get("/v1/predictions")
    problem(response, 405)
    assert "POST" in response.headers["Allow"]
    problem(client.delete("/v1/model"), 405)


def test_unexpected_failure_is_a_bare_500(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    service = app.extensions["oncology"]

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail /srv/model")

    monkeypatch.setattr(service, "predictions", explode)
    response = app.test_client().post("/v1/predictions", json=SEED_JSON)
    body = problem(response, 500)
    assert "secret" not in response.get_data(as_text=True)
    assert body["errors"] == {}


def test_tampered_model_keeps_service_unready_saying_why(artifacts_copy: Path) -> None:
    model = artifacts_copy / ONNX_FILE
    model.write_bytes(model.read_bytes()[:-10])
    client = create_app({"TESTING": True, "ARTIFACTS_DIR": str(artifacts_copy)}).test_client()
    assert client.get("/healthz").status_code == 200
    for response in (
        client.get("/readyz"),
        client.post("/v1/predictions", json=SEED_JSON),
        client.post("/v1/predictions/batch", json={"tumors": [SEED_JSON]}),
        client.get("/v1/model"),
    ):
        body = problem(response, 503)
        assert body["type"] == "urn:oncology:problem:model-failed"
        assert body["detail"].startswith("The model failed to load: model artifact ")
        assert f"{ONNX_FILE} fails verification" in body["detail"]
        assert "this will not recover" in body["detail"]
        assert "Retry-After" not in response.headers


def test_a_model_still_loading_says_retry() -> None:
    from webservice.predicting import with_model
    from webservice.problems import Problem
    from webservice.service import Service

    starting = Service(load=False)
    with pytest.raises(Problem) as caught:
        with_model(starting)
    assert caught.value.status == 503
    assert caught.value.type == "urn:oncology:problem:model-loading"
    assert "still loading; retry" in caught.value.detail
    assert caught.value.headers == {"Retry-After": "1"}
    starting.load()
    assert with_model(starting) is starting


def test_readyz_after_sigterm_says_shutting_down(app: Any) -> None:
    service = app.extensions["oncology"]
    service.shutting_down = True
    try:
        body = problem(app.test_client().get("/readyz"), 503)
    finally:
        service.shutting_down = False
    assert body["type"] == "urn:oncology:problem:shutting-down"


@pytest.mark.parametrize(
    ("status", "request_args"),
    [
        (404, ("GET", "/nowhere", None, None)),
        (404, ("POST", "/v1/nowhere", b"{}", "application/json")),
        (405, ("GET", "/v1/predictions", None, None)),
        (405, ("DELETE", "/v1/model", None, None)),
        (413, ("POST", "/v1/predictions", b"{" + b" " * 5000, "application/json")),
        (415, ("POST", "/v1/predictions", b"{}", "text/plain")),
        (422, ("POST", "/v1/predictions", b"{}", "application/json")),
        (422, ("POST", "/v1/predictions?explain=yes", b"{}", "application/json")),
    ],
)
def test_status_lines_use_the_standard_phrases(
    status: int, request_args: tuple[str, str, bytes | None, str | None]
) -> None:
    """Lane, middleware and Flask answers alike: "404 Not Found", never "404 NOT FOUND"."""
    method, path, data, content_type = request_args
    small = create_app({"TESTING": True, "MAX_BODY_BYTES": 4000}).test_client()
    problem(small.open(path, method=method, data=data, content_type=content_type), status)
    # the same request to the flask-restx resources (the lane off)
    without_lane = create_app(
        {"TESTING": True, "MAX_BODY_BYTES": 4000, "PREDICTION_LANE": False}
    ).test_client()
    answered = without_lane.open(path, method=method, data=data, content_type=content_type)
    assert answered.status == f"{status} {HTTPStatus(status).phrase}"
    assert small.get("/healthz").status == "200 OK"


def test_status_line_of_503_from_both_routes(artifacts_copy: Path) -> None:
    (artifacts_copy / ONNX_FILE).unlink()
    client = create_app({"TESTING": True, "ARTIFACTS_DIR": str(artifacts_copy)}).test_client()
    for response in (client.post("/v1/predictions", json=SEED_JSON), client.get("/readyz")):
        assert response.status == "503 Service Unavailable"


def test_environment_configures_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCOLOGY_MAX_BATCH", "2")
    app = create_app({"TESTING": True})
    assert app.config["MAX_BATCH"] == 2
    response = app.test_client().post("/v1/predictions/batch", json={"tumors": [SEED_JSON] * 3})
    problem(response, 422)
    # the test config wins over the environment
    assert create_app({"TESTING": True, "MAX_BATCH": 5}).config["MAX_BATCH"] == 5


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/predictions", SEED_JSON),
        ("/v1/predictions?explain=true", {**SEED_JSON, "bare_nuclei": None}),
        ("/v1/predictions", {**SEED_JSON, "mitoses": 11, "extra": 1}),
        ("/v1/predictions?explain=maybe", SEED_JSON),
        ("/v1/predictions/batch", {"tumors": [SEED_JSON, MALIGNANT_JSON]}),
        ("/v1/predictions/batch", {"tumors": [SEED_JSON, "x"]}),
        ("/v1/predictions/batch", {"tumors": []}),
    ],
)
def test_flask_resources_answer_exactly_as_the_lane(
    client: FlaskClient, client_without_lane: FlaskClient, path: str, payload: Any
) -> None:
    """The restx resources (what the app serves without the lane) give the same answers."""
    through_lane = client.post(path, json=payload)
    through_flask = client_without_lane.post(path, json=payload)
    assert_same_answer(through_lane, through_flask)


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v1/predictions?explain=true", json.dumps(SEED_JSON), {}),
        ("/v1/predictions/batch?explain=true", json.dumps({"tumors": [SEED_JSON] * 2}), {}),
        (
            "/v1/predictions/batch?explain=true",
            ",".join(FEATURES) + "\n" + ",".join(str(v or "") for v in SEED_JSON.values()),
            {"Content-Type": "text/csv", "Accept": "text/csv"},
        ),
        (
            "/v2/models/oncology/infer",
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "tumors",
                            "shape": [1, 9],
                            "datatype": "FP64",
                            "data": list(SEED_JSON.values()),
                        }
                    ],
                    "parameters": {"explain": True},
                }
            ),
            {},
        ),
    ],
)
def test_zero_contributions_are_never_negative_zero(
    client: FlaskClient, path: str, body: str, headers: dict[str, str]
) -> None:
    """README's tumor: the fields at their median (or null) contribute exactly 0, written `0.0`."""
    headers = {"Content-Type": "application/json", **headers}
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == 200, response.data
    text = response.get_data(as_text=True)
    if response.content_type.startswith("text/csv"):
        cells = [cell for line in text.splitlines() for cell in line.split(",")]
    else:
        cells = re.findall(r"-?[0-9][0-9.e-]*", text)
    zeros = [cell for cell in cells if cell.lstrip("-").strip("0.") == "" and "0" in cell]
    assert zeros, text  # README's tumor has fields at their median
    assert all(not zero.startswith("-") for zero in zeros), text


def test_a_declared_body_over_the_limit_is_told_its_size() -> None:
    small = create_app({"TESTING": True, "MAX_BODY_BYTES": 1000}).test_client()
    declared = small.post(
        "/v1/predictions", data=b"{" + b" " * 2000, content_type="application/json"
    )
    assert problem(declared, 413)["detail"] == "The body is 2001 bytes; the limit is 1000 bytes."


@pytest.mark.parametrize("explain", [False, True])
def test_a_single_prediction_answers_csv_when_asked(client: FlaskClient, explain: bool) -> None:
    path = "/v1/predictions" + ("?explain=true" if explain else "")
    headers = {"Accept": "text/csv"}
    response = client.post(path, json=SEED_JSON, headers=headers)
    assert response.status_code == 200 and response.content_type == "text/csv; charset=utf-8"
    batch = client.post(
        path.replace("predictions", "predictions/batch"),
        json={"tumors": [SEED_JSON]},
        headers=headers,
    )
    assert without_ids(response.data) == without_ids(batch.data)
    assert response.data.decode().splitlines()[1].split(",", 1)[1].startswith("benign,0.012068,")
    plain = client.post(
        path, json=SEED_JSON, headers={"Accept": "text/csv;q=0.5, application/json"}
    )
    assert plain.content_type == "application/json"
