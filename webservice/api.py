"""The flask-restx Api: namespaces, OpenAPI metadata, and one error path for every failure."""

from __future__ import annotations

from flask import Flask, request
from flask_restx import Api
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from webservice.jsonbody import body_too_large
from webservice.problems import PROBLEM_JSON, Problem, as_problem
from webservice.resources import inference, model, operations, predictions
from webservice.service import Service

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
    """Flask's side of the one error path (see `webservice.problems.as_problem`)."""
    if isinstance(error, HTTPException) and error.code is not None:
        return _http_problem(error).response(request.path)
    return as_problem(error, request.method, request.path).response(request.path)


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
        return body_too_large(request.max_content_length or 0)
    if code == 400:
        return Problem(400, "The request is malformed.", kind="bad-request")
    return Problem(code, error.description or "The request cannot be answered.")


def init_api(app: Flask, version: str, service: Service) -> Api:
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
    app.config["API_VERSION"] = version
    predicting = predictions.namespace(max_batch=app.config["MAX_BATCH"], service=service)
    for namespace in (predicting, model.ns, operations.ns, inference.ns):
        api.add_namespace(namespace)
    # Document that errors come as problem+json (the OpenAPI document's "produces").
    api.representations[PROBLEM_JSON] = api.representations["application/json"]
    # Errors outside restx's routes (Werkzeug's 404/405, failures in hooks) take the same path.
    app.register_error_handler(Exception, problem_response)
    return api
