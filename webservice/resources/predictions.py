"""POST /v1/predictions and /v1/predictions/batch: diagnose one tumor or many."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask_restx import Namespace, Resource, fields

from oncology_model.datamodel import FEATURE_DESCRIPTIONS, FEATURES, SCORE_MAX, SCORE_MIN
from oncology_model.verify import SEED_TUMOR
from webservice.predicting import answer_batch, answer_single
from webservice.problems import PROBLEM_JSON
from webservice.resources.common import answer_response, document_errors, service

ns = Namespace("predictions", path="/v1/predictions", description="Diagnose tumors")

EXAMPLE = SEED_TUMOR.to_dict()


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
        "model_version": fields.String(required=True, example="1.0.0+612cf7af8850"),
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


@ns.route("")
class Predictions(Resource):
    @ns.doc("predict", params=EXPLAIN)
    @ns.expect(tumor_model)
    @ns.response(200, "The diagnosis", prediction_model)
    @document_errors(ns, 400, 413, 415, 422, 500, 503)
    def post(self) -> Any:
        """Diagnose one tumor from its nine cytology scores."""
        max_bytes = current_app.config["MAX_BODY_BYTES"]
        return answer_response(answer_single(request.environ, service(), max_bytes=max_bytes))


# The batch endpoint takes and answers JSON or CSV (see `webservice.csvbody`); errors are
# problem+json. OpenAPI 2.0 has one body schema for all media types: the JSON one.
BATCH_CONSUMES = ["application/json", "text/csv"]
BATCH_PRODUCES = [*BATCH_CONSUMES, PROBLEM_JSON]


@ns.route("/batch")
class PredictionBatch(Resource):
    @ns.doc("predict_batch", params=EXPLAIN, produces=BATCH_PRODUCES)
    @ns.expect(batch_request_model)
    @ns.response(200, "The diagnoses, in the order of the tumors", batch_response_model)
    @document_errors(ns, 400, 413, 415, 422, 500, 503)
    def post(self) -> Any:
        """Diagnose up to 10,000 tumors in one call.

        The tumors come as JSON (the schema below) or as `text/csv`: a header row of the nine
        feature names, in any order, then one row per tumor, an empty cell where a score was not
        measured. `Accept: text/csv` gives the answers as CSV, one row per tumor in order, with
        the columns prediction, malignant_probability and imputed (the imputed names joined by
        `;`), and contribution_<feature> with explain. A bad CSV cell is named
        `row N.<column>`, rows counted from 1 after the header; errors are problem+json.
        """
        config = current_app.config
        return answer_response(
            answer_batch(
                request.environ,
                service(),
                max_bytes=config["MAX_BODY_BYTES"],
                max_batch=config["MAX_BATCH"],
            )
        )
