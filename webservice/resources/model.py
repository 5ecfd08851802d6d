"""GET /v1/model: the model card."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace, Resource, fields

from webservice.resources.common import document_errors, json_response, service_with_model

ns = Namespace("model", path="/v1/model", description="The model behind the predictions")

spread_model = ns.model(
    "Spread",
    {
        "mean": fields.Float(required=True),
        "std": fields.Float(required=True, description="Standard deviation over the folds"),
        "min": fields.Float(required=True),
        "max": fields.Float(required=True),
    },
)

feature_model = ns.model(
    "Feature",
    {
        "name": fields.String(required=True, example="clump_thickness"),
        "min": fields.Integer(required=True, example=1),
        "max": fields.Integer(required=True, example=10),
        "median": fields.Float(required=True, description="Training median, used for nulls"),
        "description": fields.String(required=True),
    },
)

metrics_model = ns.model(
    "CrossValidationMetrics",
    {
        name: fields.Nested(spread_model, required=True, description=description)
        for name, description in {
            "roc_auc": "Area under the ROC curve",
            "accuracy": "Share of correct diagnoses at the threshold",
            "sensitivity": "Share of malignant tumors found at the threshold",
            "specificity": "Share of benign tumors cleared at the threshold",
            "brier": "Brier score of the probabilities (lower is better)",
            "threshold": "Threshold chosen without each validation fold's labels",
        }.items()
    },
)

card_model = ns.model(
    "ModelCard",
    {
        "name": fields.String(required=True),
        "version": fields.String(
            required=True, description="Package version + ONNX SHA-256 prefix"
        ),
        "package_version": fields.String(required=True),
        "algorithm": fields.String(required=True),
        "engine": fields.Raw(required=True, description="Inference engine and ONNX opset"),
        "features": fields.List(fields.Nested(feature_model), required=True),
        "classes": fields.List(fields.String, required=True),
        "threshold": fields.Float(required=True),
        "cross_validation": fields.Nested(
            ns.model(
                "CrossValidation",
                {
                    "scheme": fields.String(required=True),
                    "selection_rule": fields.String(required=True),
                    "target_sensitivity": fields.Float(required=True),
                    "metrics": fields.Nested(metrics_model, required=True),
                },
            ),
            required=True,
        ),
        "artifacts": fields.Raw(required=True, description="SHA-256 of every artifact"),
        "training_data": fields.Raw(
            required=True,
            description="File, SHA-256, row count and, for exported cases, their manifests",
        ),
        "trained_at": fields.String(required=True, description="ISO 8601 date of training"),
        "intended_use": fields.String(required=True),
        "limitations": fields.String(required=True),
    },
)


@ns.route("")
class ModelCard(Resource):
    @ns.doc("model_card")
    @ns.response(200, "The model card", card_model)
    @document_errors(ns, 500, 503)
    def get(self) -> Any:
        """Describe the model: version, features, threshold, validation figures, intended use."""
        return json_response(service_with_model().card)
