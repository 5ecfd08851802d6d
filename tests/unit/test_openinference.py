"""The Open Inference Protocol (V2) endpoints, in-process: every answer and every error."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from oncology_model import Classifier
from oncology_model.datamodel import FEATURES
from tests.helpers import MALIGNANT_JSON, SEED_JSON, assert_same_answer
from webservice.routes import endpoint_label

INFER = "/v2/models/oncology/infer"
SEED_ROW = list(SEED_JSON.values())
MALIGNANT_ROW = list(MALIGNANT_JSON.values())


def tensor(data: Any, shape: list[int] | None = None, datatype: str = "INT64") -> dict[str, Any]:
    rows = len(data) if data and isinstance(data[0], list) else len(data) // 9
    return {"name": "tumors", "shape": shape or [rows, 9], "datatype": datatype, "data": data}


def infer(client: FlaskClient, body: Any, path: str = INFER, **kwargs: Any) -> Any:
    if isinstance(body, bytes | str):
        return client.post(path, data=body, **kwargs)
    return client.post(path, json=body, **kwargs)


def error(response: Any, status: int) -> str:
    """Assert `response` is a V2 error with `status`; return its message."""
    assert response.status_code == status, response.data
    assert response.content_type == "application/json"
    body = json.loads(response.data)
    assert set(body) == {"error"} and body["error"]
    assert "Traceback" not in body["error"]
    return str(body["error"])


def outputs(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.data
    return {output["name"]: output for output in response.get_json()["outputs"]}


def test_health_and_server_metadata(client: FlaskClient) -> None:
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    metadata = client.get("/v2").get_json()
    assert metadata["name"] == "oncology-webservice" and metadata["version"]
    assert metadata["extensions"] == []


def test_model_metadata_describes_the_input_and_outputs(
    client: FlaskClient, classifier: Classifier
) -> None:
    for path in ("/v2/models/oncology", f"/v2/models/oncology/versions/{classifier.model_version}"):
        metadata = client.get(path).get_json()
        assert metadata["name"] == "oncology"
        assert metadata["versions"] == [classifier.model_version]
        (tensor_metadata,) = metadata["inputs"]
        assert tensor_metadata["name"] == "tumors" and tensor_metadata["shape"] == [-1, 9]
        assert tensor_metadata["parameters"]["features"] == list(FEATURES)
        assert [(o["name"], o["datatype"]) for o in metadata["outputs"]] == [
            ("malignant_probability", "FP64"),
            ("label", "BYTES"),
            ("prediction_id", "BYTES"),
            ("contributions", "FP64"),
        ]


def test_model_ready(client: FlaskClient, classifier: Classifier) -> None:
    assert client.get("/v2/models/oncology/ready").get_json() == {"name": "oncology", "ready": True}
    path = f"/v2/models/oncology/versions/{classifier.model_version}/ready"
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/other",
        "/v2/models/other/ready",
        "/v2/models/oncology/versions/2/ready",
        "/v2/models/oncology/versions/2",
    ],
)
def test_unknown_model_or_version_is_404_naming_the_served_one(
    client: FlaskClient, classifier: Classifier, path: str
) -> None:
    message = error(client.get(path), 404)
    assert "oncology" in message
    if "versions" in path:
        assert classifier.model_version in message


def test_infer_on_an_unknown_model_or_version_is_404(
    client: FlaskClient, classifier: Classifier
) -> None:
    body = {"inputs": [tensor(SEED_ROW)]}
    assert "'oncology'" in error(infer(client, body, "/v2/models/other/infer"), 404)
    message = error(infer(client, body, "/v2/models/oncology/versions/0.9/infer"), 404)
    assert classifier.model_version in message


def test_infer_equals_the_native_batch(client: FlaskClient, classifier: Classifier) -> None:
    rng = np.random.default_rng(7)
    rows = rng.integers(1, 11, size=(200, 9)).tolist()
    rows[3][5] = None
    response = infer(client, {"id": "req-1", "inputs": [tensor(rows)]})
    body = response.get_json()
    assert body["model_name"] == "oncology"
    assert body["model_version"] == classifier.model_version
    assert body["id"] == "req-1"
    assert body["parameters"]["threshold"] == classifier.threshold
    answer = outputs(response)
    tumors = [dict(zip(FEATURES, row, strict=True)) for row in rows]
    native = client.post("/v1/predictions/batch", json={"tumors": tumors}).get_json()["predictions"]
    assert answer["malignant_probability"]["shape"] == [200]
    assert answer["malignant_probability"]["data"] == [
        p["probabilities"]["malignant"] for p in native
    ]
    assert answer["label"] == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [200],
        "data": [p["prediction"] for p in native],
    }


@pytest.mark.parametrize("datatype", ["INT32", "INT64", "FP32", "FP64"])
@pytest.mark.parametrize("nested", [False, True])
def test_every_datatype_flat_or_nested(client: FlaskClient, datatype: str, nested: bool) -> None:
    data: list[Any] = [SEED_ROW, MALIGNANT_ROW]
    if datatype.startswith("FP"):
        data = [[float(v) for v in row] for row in data]
    if not nested:
        data = data[0] + data[1]
    answer = outputs(infer(client, {"inputs": [tensor(data, [2, 9], datatype)]}))
    assert answer["label"]["data"] == ["benign", "malignant"]


def test_not_measured_as_null_or_nan_token_equals_native_null(client: FlaskClient) -> None:
    native = client.post("/v1/predictions", json={**SEED_JSON, "bare_nuclei": None}).get_json()
    row = list(SEED_ROW)
    row[5] = None
    with_null = outputs(infer(client, {"inputs": [tensor(row, datatype="FP64")]}))
    text = json.dumps(
        {"inputs": [tensor([float(v) if v else float("nan") for v in row], None, "FP32")]}
    )
    assert "NaN" in text  # what Python's json module (and so tritonclient's JSON mode) writes
    with_nan = outputs(infer(client, text, content_type="application/json"))
    expected = native["probabilities"]["malignant"]
    assert with_null["malignant_probability"]["data"] == [expected]
    assert with_nan["malignant_probability"]["data"] == [expected]


@pytest.mark.parametrize(
    ("datatype", "dtype"), [("FP32", "<f4"), ("INT32", "<i4"), ("FP64", "<f8")]
)
def test_binary_tensor_data(client: FlaskClient, datatype: str, dtype: str) -> None:
    """The binary tensor data extension, as tritonclient and the kserve SDK send by default."""
    rows = np.array([SEED_ROW, MALIGNANT_ROW], dtype=np.float64)
    if datatype.startswith("FP"):
        rows[0, 5] = np.nan
    raw = rows.astype(dtype).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "tumors",
                    "shape": [2, 9],
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    response = client.post(
        INFER,
        data=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
        content_type="application/octet-stream",
    )
    assert outputs(response)["label"]["data"] == ["benign", "malignant"]


def test_outputs_selection_and_explain(client: FlaskClient, classifier: Classifier) -> None:
    body = {"inputs": [tensor(SEED_ROW)], "outputs": [{"name": "label"}]}
    assert list(outputs(infer(client, body))) == ["label"]
    body["parameters"] = {"explain": True}
    assert list(outputs(infer(client, body))) == ["label", "contributions"]
    explained = outputs(
        infer(client, {"inputs": [tensor(SEED_ROW)], "parameters": {"explain": True}})
    )
    assert list(explained) == ["malignant_probability", "label", "prediction_id", "contributions"]
    assert explained["contributions"]["shape"] == [1, 9]
    native = client.post("/v1/predictions?explain=true", json=SEED_JSON).get_json()
    assert explained["contributions"]["data"] == list(native["contributions"].values())


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"inputs": [tensor(SEED_ROW, [9])]}, ["shape [9]", "[N, 9]"]),
        ({"inputs": [tensor(SEED_ROW, [1, 8])]}, ["shape [1, 8]"]),
        ({"inputs": [tensor(SEED_ROW, [3, 3])]}, ["shape [3, 3]"]),
        ({"inputs": [tensor(SEED_ROW, [0, 9])]}, ["1 to 10000 rows"]),
        ({"inputs": [tensor(SEED_ROW, [1, 9], "BYTES")]}, ["datatype 'BYTES'", "FP64"]),
        ({"inputs": [tensor(SEED_ROW, [1, 9], "UINT8")]}, ["UINT8"]),
        ({"inputs": [tensor(SEED_ROW[:8], [1, 9])]}, ["data has 8 values", "needs 9"]),
        ({"inputs": [tensor(SEED_ROW * 2, [1, 9])]}, ["data has 18 values"]),
        ({"inputs": [tensor([SEED_ROW, SEED_ROW], [1, 9])]}, ["2 rows", "needs 1"]),
        ({"inputs": [tensor([SEED_ROW, SEED_ROW[:8]], [2, 9])]}, ["row 1", "9 scores"]),
        (
            {"inputs": [tensor([SEED_ROW, [*SEED_ROW[:8], 11]])]},
            ["tumors[1].mitoses", "11 is out of range", "1 to 10"],
        ),
        (
            {"inputs": [tensor([*SEED_ROW[:3], 0, *SEED_ROW[4:]])]},
            ["tumors[0].marginal_adhesion", "0 is out of range"],
        ),
        (
            {"inputs": [tensor([2.5, *SEED_ROW[1:]], datatype="FP32")]},
            ["tumors[0].clump_thickness", "2.5 is not a whole number"],
        ),
        ({"inputs": [tensor(["4", *SEED_ROW[1:]])]}, ["tumors[0].clump_thickness", "string"]),
        ({"inputs": [tensor([True, *SEED_ROW[1:]])]}, ["clump_thickness", "boolean"]),
        ({"inputs": [{**tensor(SEED_ROW), "name": "input-0"}]}, ["'input-0'", "'tumors'"]),
        ({"inputs": [{**tensor(SEED_ROW), "extra": 1}]}, ["'extra'"]),
        ({"inputs": [tensor(SEED_ROW), tensor(SEED_ROW)]}, ["exactly one tensor"]),
        ({"inputs": []}, ["exactly one tensor"]),
        ({}, ["exactly one tensor"]),
        ({"inputs": [tensor(SEED_ROW)], "input": 1}, ["'input'"]),
        ({"inputs": [tensor(SEED_ROW)], "id": 5}, ["'id' must be a string"]),
        ({"inputs": [tensor(SEED_ROW)], "outputs": [{"name": "proba"}]}, ["'proba'", "label"]),
        ({"inputs": [tensor(SEED_ROW)], "parameters": {"explian": True}}, ["'explian'"]),
        ({"inputs": [tensor(SEED_ROW)], "parameters": {"explain": "yes"}}, ["explain", "true"]),
        ({"inputs": [{**tensor(SEED_ROW), "data": None}]}, ["data must be an array"]),
        ([tensor(SEED_ROW)], ["JSON object"]),
        ('{"inputs": [', ["not valid JSON"]),
        ('{"inputs": [{"name": "tumors", "data": [Infinity]}]}', ["not valid JSON"]),
    ],
)
def test_malformed_requests_are_400_naming_the_problem(
    client: FlaskClient, body: Any, words: list[str]
) -> None:
    message = error(infer(client, body, content_type="application/json"), 400)
    for word in words:
        assert word in message, message


def test_every_bad_value_is_named_at_once(client: FlaskClient) -> None:
    rows = [SEED_ROW, [*SEED_ROW[:8], 12], [0, *SEED_ROW[1:]]]
    message = error(infer(client, {"inputs": [tensor(rows)]}), 400)
    assert "tumors[1].mitoses" in message and "tumors[2].clump_thickness" in message


def test_binary_size_mismatches_are_400(client: FlaskClient) -> None:
    raw = np.array(SEED_ROW, dtype="<f4").tobytes()
    header = {"inputs": [{"name": "tumors", "shape": [1, 9], "datatype": "FP32"}]}
    cases = [
        (len(raw) - 4, raw[:-4], "binary_data_size"),  # 8 values for shape [1, 9]
        (len(raw), raw + b"\0\0\0\0", "binary_data_size"),
        (None, raw, "no input has binary_data_size"),
    ]
    for size, data, words in cases:
        body = json.loads(json.dumps(header))
        if size is not None:
            body["inputs"][0]["parameters"] = {"binary_data_size": size}
        text = json.dumps(body).encode()
        response = client.post(
            INFER, data=text + data, headers={"Inference-Header-Content-Length": str(len(text))}
        )
        assert words in error(response, 400)
    response = client.post(INFER, data=b"{}", headers={"Inference-Header-Content-Length": "99"})
    assert "Inference-Header-Content-Length" in error(response, 400)


def test_binary_values_are_validated_like_json(client: FlaskClient) -> None:
    raw = np.array([*SEED_ROW[:8], np.inf], dtype="<f8").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "tumors",
                    "shape": [1, 9],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    response = client.post(
        INFER, data=header + raw, headers={"Inference-Header-Content-Length": str(len(header))}
    )
    assert "tumors[0].mitoses: inf is not a whole number" in error(response, 400)


def test_oversized_body_is_413_in_the_protocol_shape(app: Flask) -> None:
    limit = app.config["MAX_BODY_BYTES"]
    response = Flask.test_client(app).post(
        INFER, data=b" " * (limit + 1), content_type="application/json"
    )
    assert str(limit) in error(response, 413)


def test_wrong_method_and_unknown_path_answer_in_the_protocol_shape(client: FlaskClient) -> None:
    error(client.get(INFER), 405)
    error(client.get("/v2/nowhere"), 404)


def test_metrics_labels_are_bounded(client: FlaskClient) -> None:
    assert endpoint_label("/v2/models/oncology/infer") == "/v2/models/infer"
    assert (
        endpoint_label("/v2/models/anything-a-client-says/versions/x/infer") == "/v2/models/infer"
    )
    assert endpoint_label("/v2/models/oncology/ready") == "/v2/models/ready"
    assert endpoint_label("/v2/models/oncology/versions/1") == "/v2/models/metadata"
    assert endpoint_label("/v2/health/live") == "/v2/health/live"
    assert endpoint_label("/v2") == "/v2"
    infer(client, {"inputs": [tensor(SEED_ROW)]}, "/v2/models/whatever-123/infer")
    text = client.get("/metrics").get_data(as_text=True)
    assert "whatever-123" not in text
    assert 'endpoint="/v2/models/infer",method="POST",status="404"' in text


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        (INFER, {"id": "x", "inputs": [tensor([SEED_ROW, MALIGNANT_ROW])]}),
        (INFER, {"inputs": [tensor(SEED_ROW)], "parameters": {"explain": True}}),
        (INFER, {"inputs": [tensor([SEED_ROW, [*SEED_ROW[:8], 11]])]}),
        (INFER, {"inputs": [tensor(SEED_ROW, [1, 8])]}),
        ("/v2/models/oncology/versions/bad/infer", {"inputs": [tensor(SEED_ROW)]}),
    ],
)
def test_flask_resources_answer_exactly_as_the_lane(
    client: FlaskClient, client_without_lane: FlaskClient, path: str, payload: Any
) -> None:
    """Without the lane, the restx resource gives the same answers."""
    through_lane = client.post(path, json=payload)
    through_flask = client_without_lane.post(path, json=payload)
    assert_same_answer(through_lane, through_flask)


def test_the_lane_serves_inference(app: Flask, classifier: Classifier) -> None:
    from webservice.lane import PredictionLane

    service = app.extensions["oncology"]
    layer = PredictionLane(app.wsgi_app, service, max_bytes=1000, max_batch=10)
    assert INFER in layer.routes
    assert f"/v2/models/oncology/versions/{classifier.model_version}/infer" in layer.routes
