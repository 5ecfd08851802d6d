"""POST /v1/predictions and /v1/predictions/batch: diagnose one tumor or many."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask_restx import Namespace, Resource, fields

from oncology_model.datamodel import FEATURE_DESCRIPTIONS, FEATURES, SCORE_MAX, SCORE_MIN
from oncology_model.verify import SEED_TUMOR
from webservice.predicting import answer_batch, answer_single
from webservice.problems import PROBLEM_JSON
from webservice.resources.common import answer_response, document_errors
from webservice.resources.common import service as current_service
from webservice.service import Service

EXAMPLE = SEED_TUMOR.to_dict()

EXPLAIN = {
    "explain": {
        "in": "query",
        "type": "boolean",
        "default": False,
        "description": "Add per-field contributions to each answer (exact Shapley values)",
    }
}


class NullableScore(fields.Integer):
    """An integer score documented as nullable (OpenAPI 2.0 spells it `x-nullable`)."""

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = super().schema()
        schema["x-nullable"] = True
        return schema


def _seed_answer(service: Service) -> dict[str, Any]:
    """The served model's answer for the seed tumor, explained: the document's example. The
    Service has no side effects, so nothing of it is counted in the metrics."""
    answers, _ = service.predictions([SEED_TUMOR.to_row()], explain=True)
    return dict(answers[0])


# The batch endpoint takes and answers JSON or CSV (see `webservice.csvbody`); errors are
# problem+json. OpenAPI 2.0 has one body schema for all media types: the JSON one.
BATCH_CONSUMES = ["application/json", "text/csv"]
BATCH_PRODUCES = [*BATCH_CONSUMES, PROBLEM_JSON]
SINGLE_PRODUCES = ["application/json", "text/csv", PROBLEM_JSON]
CSV_DESCRIPTION = (
    "The tumors come as JSON (the schema below) or as `text/csv`: a header row of the nine "
    "feature names, in any order, then one row per tumor, an empty cell where a score was not "
    "measured. `Accept: text/csv` gives the answers as CSV, one row per tumor in order, with the "
    "columns prediction, malignant_probability and imputed (the imputed names joined by `;`), and "
    "contribution_<feature> with explain. A bad CSV cell is named `row N.<column>`, rows counted "
    "from 1 after the header; errors are problem+json."
)


def namespace(*, max_batch: int, service: Service) -> Namespace:
    """The predictions Namespace, documented with the served model's figures (the seed tumor's
    answer as the example, the baseline of the explanations) and the configured batch limit."""
    ns = Namespace("predictions", path="/v1/predictions", description="Diagnose tumors")
    example = _seed_answer(service) if service.loaded else {}
    baseline = (
        f" = p - {service.classifier.baseline_probability:.6f} for this model"
        if service.classifier
        else ""
    )

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
                max_items=max_batch,
                description=f"1 to {max_batch:,} tumors (the server's ONCOLOGY_MAX_BATCH); "
                "answered in the same order.",
            )
        },
        strict=True,
    )

    probabilities = example.get("probabilities", {})
    probabilities_model = ns.model(
        "Probabilities",
        {
            name: fields.Float(required=True, min=0, max=1, example=probabilities.get(name))
            for name in ("benign", "malignant")
        },
    )

    contributions = example.get("contributions", {})
    contributions_model = ns.model(
        "Contributions",
        {
            name: fields.Float(
                required=True,
                example=contributions.get(name),
                description=f"The exact Shapley value of {name} for the malignant probability",
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
                example=example.get("prediction"),
                description="malignant when the malignant probability reaches the threshold",
            ),
            "probabilities": fields.Nested(probabilities_model, required=True),
            "threshold": fields.Float(
                required=True,
                example=example.get("threshold"),
                description="Malignant-probability threshold, chosen in training to favour "
                "sensitivity",
            ),
            "imputed": fields.List(
                fields.String(enum=list(FEATURES)),
                required=True,
                example=[],
                description="Fields sent as null, imputed with their training median",
            ),
            "model_version": fields.String(required=True, example=example.get("model_version")),
            "contributions": fields.Nested(
                contributions_model,
                required=False,
                description="Only with ?explain=true: per field, its exact Shapley value for the "
                "malignant probability p, against the baseline tumor with every score at its "
                "training median (2^9 = 512 model evaluations). They add up: their sum is "
                f"p - p(baseline){baseline}. A score at its median, or null, contributes 0.",
            ),
        },
    )

    batch_response_model = ns.model(
        "PredictionBatch",
        {"predictions": fields.List(fields.Nested(prediction_model), required=True)},
    )

    @ns.route("")
    class Predictions(Resource):
        @ns.doc(
            "predict",
            params=EXPLAIN,
            produces=SINGLE_PRODUCES,
            description="`Accept: text/csv` gives the answer as CSV: a header and one row, with "
            "the batch endpoint's columns.",
        )
        @ns.expect(tumor_model)
        @ns.response(200, "The diagnosis", prediction_model)
        @document_errors(ns, 400, 413, 415, 422, 500, 503)
        def post(self) -> Any:
            """Diagnose one tumor from its nine cytology scores."""
            max_bytes = current_app.config["MAX_BODY_BYTES"]
            return answer_response(
                answer_single(request.environ, current_service(), max_bytes=max_bytes)
            )

    @ns.route("/batch")
    class PredictionBatch(Resource):
        @ns.doc(
            "predict_batch",
            params=EXPLAIN,
            produces=BATCH_PRODUCES,
            description=f"Up to {max_batch:,} tumors. {CSV_DESCRIPTION}",
        )
        @ns.expect(batch_request_model)
        @ns.response(200, "The diagnoses, in the order of the tumors", batch_response_model)
        @document_errors(ns, 400, 413, 415, 422, 500, 503)
        def post(self) -> Any:
            """Diagnose many tumors in one call, answered in their order."""
            config = current_app.config
            return answer_response(
                answer_batch(
                    request.environ,
                    current_service(),
                    max_bytes=config["MAX_BODY_BYTES"],
                    max_batch=config["MAX_BATCH"],
                )
            )

    return ns
