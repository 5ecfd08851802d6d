"""What every resource shares: the problem model for the docs, JSON answers, the Service."""

from __future__ import annotations

from typing import Any, cast

import orjson
from flask import current_app, request
from flask_restx import Model, Namespace, fields
from werkzeug.wrappers import Response

from oncology_model.datamodel import SCORE_RULE
from webservice.predicting import Answer, record, with_model
from webservice.service import Service

PROBLEM = Model(
    "Problem",
    {
        "type": fields.String(
            description="URI naming the kind of problem",
            example="urn:oncology:problem:invalid-tumor",
        ),
        "title": fields.String(
            description="The HTTP status phrase", example="Unprocessable Entity"
        ),
        "status": fields.Integer(description="The HTTP status code", example=422),
        "detail": fields.String(
            description="What went wrong, for a person", example="1 field breaks the contract."
        ),
        "errors": fields.Raw(
            description="Every bad field or path mapped to the rule it breaks (may be empty)",
            example={"mitoses": f"11 is out of range: {SCORE_RULE}"},
        ),
    },
)

ERROR_RESPONSES = {
    400: "The body is not valid JSON",
    413: "The body is larger than the configured limit (default 4 MiB)",
    415: "The body is not sent as application/json",
    422: "Valid JSON that breaks the contract (`invalid-tumor`; `errors` names every bad field), "
    "or a bad query parameter (`invalid-query-parameter`)",
    500: "The server failed; no internal detail is given",
    503: "No verified model: `model-loading` while it loads (retry, see Retry-After) or "
    "`model-failed` when loading failed (the detail says why; it will not recover); "
    "for /readyz also `shutting-down`",
}


def document_errors(ns: Namespace, *codes: int) -> Any:
    """Decorator documenting the problem+json answers an endpoint can give."""
    ns.add_model(PROBLEM.name, PROBLEM)

    def decorate(function: Any) -> Any:
        for code in codes:
            function = ns.response(code, ERROR_RESPONSES[code], PROBLEM)(function)
        return function

    return decorate


def service() -> Service:
    return cast(Service, current_app.extensions["oncology"])


def service_with_model() -> Service:
    """The Service, or a 503 problem when it cannot answer."""
    return with_model(service())


def answer_response(answer: Answer) -> Response:
    """A 200 answer (`webservice.predicting.Answer`), its predictions counted and recorded."""
    record(answer, request.environ, service())
    return Response(answer.body, 200, content_type=answer.content_type)


def json_response(content: Any) -> Response:
    """A 200 JSON answer from content or from already serialised bytes."""
    body = content if isinstance(content, bytes) else orjson.dumps(content)
    return Response(body, 200, content_type="application/json")
