"""POST /v1/predictions and /v1/predictions/batch: diagnose one tumor or many."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask_restx import Namespace, Resource, fields

from oncology_model.datamodel import (
    FEATURE_DESCRIPTIONS,
    FEATURES,
    SCORE_MAX,
    SCORE_MIN,
    InvalidTumorError,
    validate_rows,
)
from webservice.jsonbody import read_json
from webservice.metrics import record_batch_size
from webservice.resources.common import document_errors, json_response, ready_service
from webservice.service import SELF_CHECK_TUMOR

ns = Namespace("predictions", path="/v1/predictions", description="Diagnose tumors")

EXAMPLE = SELF_CHECK_TUMOR.to_dict()


class NullableScore(fields.Integer):
    """An integer score documented as nullable (OpenAPI 2.0 spells it `x-nullable`)."""

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = super().schema()
        schema["x-nullable"] = True
        return schema


tumor_model = ns.model(
    "Tumor",
    {
        name: NullableScore(
            required=True,
            min=SCORE_MIN,
            max=SCORE_MAX,
            example=EXAMPLE[name],
            description=f"{FEATURE_DESCRIPTIONS[name]} Integer {SCORE_MIN}..{SCORE_MAX}; "
            "null when not measured (the model imputes the training median).",
        )
        for name in FEATURES
    },
    strict=True,
)

batch_request_model = ns.model(
    "TumorBatch",
    {
        "tumors": fields.List(
            fields.Nested(tumor_model),
            required=True,
            min_items=1,
            max_items=10_000,
            description="1 to 10,000 tumors (the server's MAX_BATCH); answered in the same order.",
        )
    },
    strict=True,
)

probabilities_model = ns.model(
    "Probabilities",
    {
        "benign": fields.Float(required=True, min=0, max=1, example=0.987933),
        "malignant": fields.Float(required=True, min=0, max=1, example=0.012067),
    },
)

contributions_model = ns.model(
    "Contributions",
    {
        name: fields.Float(
            required=True,
            example=0.0,
            description=f"Malignant probability minus the one with {name} at its training median",
        )
        for name in FEATURES
    },
)

prediction_model = ns.model(
    "Prediction",
    {
        "prediction": fields.String(
            required=True,
            enum=["benign", "malignant"],
            example="benign",
            description="malignant when the malignant probability reaches the threshold",
        ),
        "probabilities": fields.Nested(probabilities_model, required=True),
        "threshold": fields.Float(
            required=True,
            example=0.224937,
            description="Malignant-probability threshold, chosen in training to favour sensitivity",
        ),
        "imputed": fields.List(
            fields.String(enum=list(FEATURES)),
            required=True,
            example=[],
            description="Fields sent as null, imputed with their training median",
        ),
        "model_version": fields.String(required=True, example="1.0.0+ced9b766b0c2"),
        "contributions": fields.Nested(
            contributions_model,
            required=False,
            description="Only with ?explain=true: each field's effect on the malignant probability",
        ),
    },
)

batch_response_model = ns.model(
    "PredictionBatch",
    {"predictions": fields.List(fields.Nested(prediction_model), required=True)},
)

EXPLAIN = {
    "explain": {
        "in": "query",
        "type": "boolean",
        "default": False,
        "description": "Add per-field contributions to each answer",
    }
}


def explain_requested() -> bool:
    value = request.args.get("explain")
    if value is None or value in ("false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise InvalidTumorError({"explain": f"{value!r} is not a boolean: use true or false"})


@ns.route("")
class Predictions(Resource):
    @ns.doc("predict", params=EXPLAIN)
    @ns.expect(tumor_model)
    @ns.response(200, "The diagnosis", prediction_model)
    @document_errors(ns, 400, 413, 415, 422, 500, 503)
    def post(self) -> Any:
        """Diagnose one tumor from its nine cytology scores."""
        explain = explain_requested()
        body = read_json(request)
        rows = validate_rows([body])
        return json_response(ready_service().predictions(rows, explain=explain)[0])


@ns.route("/batch")
class PredictionBatch(Resource):
    @ns.doc("predict_batch", params=EXPLAIN)
    @ns.expect(batch_request_model)
    @ns.response(200, "The diagnoses, in the order of the tumors", batch_response_model)
    @document_errors(ns, 400, 413, 415, 422, 500, 503)
    def post(self) -> Any:
        """Diagnose up to 10,000 tumors in one call."""
        explain = explain_requested()
        tumors = batch_items(read_json(request), current_app.config["MAX_BATCH"])
        record_batch_size(len(tumors))
        rows = validate_rows(tumors, "tumors")
        return json_response({"predictions": ready_service().predictions(rows, explain=explain)})


def batch_items(body: object, max_batch: int) -> list[Any]:
    """The `tumors` list of a batch body, checking the envelope and the batch size."""
    if not isinstance(body, dict):
        raise InvalidTumorError({"body": "must be a JSON object with the field tumors"})
    errors = {
        str(name): "is not a batch field; expected only tumors" for name in body if name != "tumors"
    }
    tumors = body.get("tumors")
    rule = f"must be an array of 1 to {max_batch} tumors"
    if "tumors" not in body:
        errors["tumors"] = f"is required: {rule}"
    elif not isinstance(tumors, list):
        errors["tumors"] = rule
    elif not 1 <= len(tumors) <= max_batch:
        errors["tumors"] = f"has {len(tumors)} tumors: {rule}"
    if errors:
        raise InvalidTumorError(errors)
    assert isinstance(tumors, list)
    return tumors
