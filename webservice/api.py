"""The flask-restx Api: namespaces, OpenAPI metadata, and one error path for every failure."""

from __future__ import annotations

import logging

from flask import Flask, request
from flask_restx import Api
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from oncology_model import InvalidTumorError
from webservice import metrics
from webservice.problems import PROBLEM_JSON, Problem
from webservice.resources import health, model, predictions

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Breast-cancer classifier for the nine cytology scores of the UCI Wisconsin (original) data. "
    "A research example, not a diagnostic device. Every error is `application/problem+json` "
    "(RFC 9457) with an `errors` object naming each bad field."
)


class ProblemApi(Api):
    """An Api whose every error, its own or Werkzeug's, answers problem+json."""

    def handle_error(self, e: Exception) -> Response:
        return problem_response(e)


def problem_response(error: BaseException) -> Response:
    """Map any exception to its problem+json answer; unexpected ones log and say only 500."""
    return as_problem(error).response()


def as_problem(error: BaseException) -> Problem:
    if isinstance(error, Problem):
        return error
    if isinstance(error, InvalidTumorError):
        metrics.record_rejections(error.errors)
        count = len(error.errors)
        return Problem(
            422,
            "1 field breaks the contract." if count == 1 else f"{count} fields break the contract.",
            error.errors,
            kind="invalid-tumor",
        )
    if isinstance(error, HTTPException) and error.code is not None:
        return _http_problem(error)
    log.error("unhandled error answering %s %s", request.method, request.path, exc_info=error)
    return Problem(500, "The server failed to answer this request.", kind="internal-error")


def _http_problem(error: HTTPException) -> Problem:
    code = error.code or 500
    if code == 404:
        return Problem(404, f"There is no resource at {request.path}; see /docs.")
    if code == 405:
        allowed = sorted(getattr(error, "valid_methods", None) or [])
        return Problem(
            405,
            f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}.",
            headers={"Allow": ", ".join(allowed)},
        )
    if code == 413:
        limit = request.max_content_length
        return Problem(
            413,
            f"The body is larger than the limit of {limit} bytes.",
            {"body": f"must be at most {limit} bytes"},
            kind="body-too-large",
        )
    if code == 400:
        return Problem(400, "The request is malformed.", kind="bad-request")
    return Problem(code, error.description or "The request cannot be answered.")


def init_api(app: Flask, version: str) -> Api:
    """Register the namespaces, Swagger UI at /docs and the error handlers on `app`."""
    app.config.setdefault("RESTX_MASK_SWAGGER", False)
    app.config.setdefault("RESTX_ERROR_404_HELP", False)
    app.config.setdefault("SWAGGER_UI_DOC_EXPANSION", "list")  # show the operations at once
    api = ProblemApi(
        app,
        version=version,
        title="Oncology classifier API",
        description=DESCRIPTION,
        doc="/docs",
        catch_all_404s=True,
    )
    for namespace in (predictions.ns, model.ns, health.ns):
        api.add_namespace(namespace)
    # Document that errors come as problem+json (the OpenAPI document's "produces").
    api.representations[PROBLEM_JSON] = api.representations["application/json"]
    # Errors outside restx's routes (Werkzeug's 404/405, failures in hooks) take the same path.
    app.register_error_handler(Exception, problem_response)
    return api
