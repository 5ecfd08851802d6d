"""The prediction record: GET and DELETE /v1/predictions/{id}, PUT its outcome, POST
/v1/outcomes in bulk. Reading and erasing need the records permission, outcomes the outcomes
permission (`webservice.routes`)."""

from __future__ import annotations

from typing import Any

import orjson
from flask import current_app, request
from flask_restx import Namespace, Resource, fields
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Response

from oncology_model.datamodel import FEATURES
from webservice import feedback
from webservice.jsonbody import read_json
from webservice.observability import ANONYMOUS, CALLER
from webservice.problems import PROBLEM_JSON
from webservice.records.outcomes import CASE_REFERENCE_RULE, MAX_BULK, OUTCOMES, SOURCE_RULE
from webservice.resources.common import document_errors, json_response, service

ID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
CASE_PATTERN = "^[A-Za-z0-9._:/#-]{1,64}$"


class NullableString(fields.String):
    """A string field that may be null, meaning left out (OpenAPI 2.0: `x-nullable`)."""

    def schema(self) -> dict[str, Any]:
        return {**super().schema(), "x-nullable": True}


class NullableDate(fields.Date):
    def schema(self) -> dict[str, Any]:
        return {**super().schema(), "x-nullable": True}


class NullableNested(fields.Nested):
    """A nested object that may be null: `x-nullable` beside an `allOf` of the reference (a
    JSON Schema `$ref` ignores its siblings)."""

    def schema(self) -> dict[str, Any]:
        reference = {"$ref": f"#/definitions/{self.nested.name}"}
        return {"allOf": [reference], "x-nullable": True, "description": self.description}


ns = Namespace(
    "records",
    path="/v1",
    description="Every answered tumor on record, and the confirmed outcomes sent back",
)

outcome_fields = {
    "outcome": fields.String(required=True, enum=list(OUTCOMES), example="malignant"),
    "source": fields.String(
        required=True,
        example="histology",
        description=f"How it was confirmed: {SOURCE_RULE}",
        pattern=r"^[^\x00-\x1f\x7f]{1,64}$",
    ),
    "confirmed_on": NullableDate(
        example="2026-12-01", description="When it was confirmed, YYYY-MM-DD (not in the future)"
    ),
}
outcome_model = ns.model(
    "Outcome",
    {
        **outcome_fields,
        "corrects": fields.Boolean(
            default=False,
            description="Replace a different stored outcome (kept in the history); without it a "
            "different outcome is refused with 409",
        ),
    },
    strict=True,
)
stored_outcome_model = ns.model(
    "StoredOutcome",
    {
        **outcome_fields,
        "recorded_at": fields.DateTime(required=True),
        "recorded_by": fields.String(required=True, description="The caller that sent it"),
    },
)
history_model = ns.clone(
    "ReplacedOutcome",
    stored_outcome_model,
    {"replaced_at": fields.DateTime(required=True), "replaced_by": fields.String(required=True)},
)
record_model = ns.model(
    "PredictionRecord",
    {
        "prediction_id": fields.String(required=True),
        "answered_at": fields.DateTime(required=True),
        "model_version": fields.String(required=True),
        "track": fields.String(required=True, description="stable or canary: which answered"),
        "caller": fields.String(required=True, description="The token's name, or anonymous"),
        "request_id": fields.String(required=True),
        "case_reference": NullableString(
            description=f"The client's case reference, if sent: {CASE_REFERENCE_RULE}"
        ),
        "tumor": fields.Raw(
            required=True,
            description="The nine scores as received, null where not measured",
            example=dict.fromkeys(FEATURES, 1),
        ),
        "prediction": fields.String(required=True, enum=list(OUTCOMES)),
        "probabilities": fields.Raw(required=True, example={"benign": 0.9, "malignant": 0.1}),
        "threshold": fields.Float(required=True),
        "outcome": NullableNested(stored_outcome_model, description="null until one is sent"),
        "history": fields.List(
            fields.Nested(history_model),
            required=True,
            description="Outcomes replaced by corrections, oldest first",
        ),
    },
)
put_answer_model = ns.model(
    "OutcomeApplied",
    {
        "status": fields.String(required=True, enum=["applied", "unchanged", "corrected"]),
        "record": fields.Nested(record_model, required=True),
    },
)
bulk_item_model = ns.clone(
    "BulkOutcome",
    outcome_model,
    {
        "prediction_id": NullableString(
            description="The prediction, or else case_reference",
            pattern=ID_PATTERN,
            example="01a2444d-8537-7449-bb4d-4979d0000000",
        ),
        "case_reference": NullableString(
            description="Every prediction with this case reference", pattern=CASE_PATTERN
        ),
    },
)
bulk_model = ns.model(
    "Outcomes",
    {
        "outcomes": fields.List(
            fields.Nested(bulk_item_model), required=True, min_items=1, max_items=MAX_BULK
        )
    },
    strict=True,
)
bulk_result_model = ns.model(
    "OutcomeResult",
    {
        "row": fields.Integer(required=True, description="The outcome's row, from 1"),
        "prediction_id": fields.String(),
        "case_reference": fields.String(),
        "status": fields.String(required=True, enum=list(feedback.STATUSES)),
        "stored_outcome": fields.String(description="With conflict: the outcome on record"),
    },
)
bulk_answer_model = ns.model(
    "OutcomeResults",
    {
        "summary": fields.Raw(required=True, example=dict.fromkeys(feedback.STATUSES, 0)),
        "results": fields.List(fields.Nested(bulk_result_model), required=True),
    },
)

erased_model = ns.model(
    "Erased",
    {
        "prediction_id": fields.String(required=True),
        "status": fields.String(required=True, enum=["erased", "already erased"]),
    },
)

ID_PARAM = {
    "prediction_id": {
        "description": "A prediction id, as answered (a UUIDv7)",
        "pattern": ID_PATTERN,
    }
}
RECORD_ERRORS = {
    404: "No such prediction, one that was erased (`erased-prediction`), or this server keeps "
    "no records (ONCOLOGY_RECORDS=off)",
    409: "The outcome contradicts the stored one (send corrects: true to replace it)",
    422: "A bad prediction id or outcome field (`errors` names each)",
    503: "The database cannot be reached (retry; see Retry-After)",
}


def _caller() -> str:
    return str(request.environ.get(CALLER, ANONYMOUS))


def _errors(*codes: int) -> Any:
    def decorate(function: Any) -> Any:
        for code in codes:
            function = ns.response(code, RECORD_ERRORS[code], ns.models["Problem"])(function)
        return document_errors(ns, 400, 500)(function)

    return decorate


document_errors(ns)  # registers the Problem model on this namespace


class PredictionIdConverter(BaseConverter):
    """Any path segment but `batch` (POST /v1/predictions/batch): so that OPTIONS and 405 on
    the batch path name its methods only. A segment that is no prediction id gets 422."""

    regex = r"(?!batch$)[^/]+"


@ns.route("/predictions/<prediction_id:prediction_id>")
@ns.doc(params=ID_PARAM)
class PredictionRecord(Resource):
    @ns.doc("get_prediction_record")
    @ns.response(200, "The record, with its outcome and history", record_model)
    @_errors(404, 422, 503)
    def get(self, prediction_id: str) -> Any:
        """A prediction's record: what was asked, answered, by whom, and its outcome (audit)."""
        return json_response(feedback.get_record(service(), prediction_id))

    @ns.doc("erase_prediction_record")
    @ns.response(
        200,
        "Its scores, probability, diagnosis, case reference and outcomes are gone",
        erased_model,
    )
    @_errors(404, 422, 503)
    def delete(self, prediction_id: str) -> Any:
        """Erase a prediction's medical data (the right to erasure); idempotent."""
        return json_response(feedback.erase(service(), prediction_id))


@ns.route("/predictions/<prediction_id:prediction_id>/outcome")
@ns.doc(params=ID_PARAM)
class PredictionOutcome(Resource):
    @ns.doc("put_prediction_outcome")
    @ns.expect(outcome_model)
    @ns.response(201, "Applied: the prediction had no outcome", put_answer_model)
    @ns.response(200, "The same outcome again (unchanged), or a correction", put_answer_model)
    @_errors(404, 409, 422, 503)
    @document_errors(ns, 413, 415)
    def put(self, prediction_id: str) -> Any:
        """Send a prediction's confirmed outcome (e.g. histology)."""
        body = read_json(request.environ, current_app.config["MAX_BODY_BYTES"])
        status, answer = feedback.put_outcome(service(), prediction_id, body, _caller())
        location = f"/v1/predictions/{prediction_id}"
        return Response(
            orjson.dumps(answer), status, {"Location": location}, content_type="application/json"
        )


@ns.route("/quality")
class Quality(Resource):
    @ns.doc(
        "get_quality",
        params={
            "since": {
                "in": "query",
                "type": "string",
                "format": "date",
                "description": "answered on or after this day (UTC)",
            },
            "until": {
                "in": "query",
                "type": "string",
                "format": "date",
                "description": "answered before this day (UTC)",
            },
            "model_version": {"in": "query", "type": "string"},
            "track": {"in": "query", "type": "string", "description": "stable or canary"},
        },
        description="Per model version and track: answers and confirmed outcomes per predicted "
        "class, the confusion counts, sensitivity, specificity, PPV and NPV with 95 % Wilson "
        "intervals, the Brier score and a calibration table (realized), the same figures "
        "estimated from every answer's probability (CBPE: calibration assumed), a warning when "
        "benign answers are confirmed much less often than malignant ones (verification bias), "
        "and the served model card's cross-validation figures.",
    )
    @ns.response(200, "The quality report")
    @_errors(404, 422, 503)
    def get(self) -> Any:
        """Is it right? Realized and estimated quality per model version and track."""
        return json_response(feedback.get_quality(service(), request.args.to_dict()))


@ns.route("/outcomes")
class Outcomes(Resource):
    @ns.doc(
        "post_outcomes",
        consumes=["application/json", "text/csv"],
        produces=["application/json", PROBLEM_JSON],
        description=f"Up to {MAX_BULK:,} outcomes, as JSON or as `text/csv` (a header row of the "
        "columns prediction_id or case_reference, outcome, source, confirmed_on, corrects; then "
        "one row per outcome). A case reference applies the outcome to every prediction sent "
        "with it. Each outcome is answered in `results` (one per prediction it names, in order): "
        "applied, unchanged, corrected, conflict (nothing changed), unknown or erased. Bad fields "
        "refuse the whole request (422), naming each.",
    )
    @ns.expect(bulk_model)
    @ns.response(200, "Every outcome's result", bulk_answer_model)
    @_errors(422, 503)
    @document_errors(ns, 413, 415)
    def post(self) -> Any:
        """Send many confirmed outcomes at once, answered per row."""
        max_bytes = current_app.config["MAX_BODY_BYTES"]
        return json_response(
            feedback.post_outcomes(service(), request.environ, _caller(), max_bytes=max_bytes)
        )
