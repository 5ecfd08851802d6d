"""The flask-restx Api: namespaces, OpenAPI metadata, and one error path for every failure."""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask_restx import Api
from werkzeug.exceptions import HTTPException
from werkzeug.utils import cached_property
from werkzeug.wrappers import Response

from webservice.jsonbody import body_too_large
from webservice.problems import PROBLEM_JSON, Problem, as_problem
from webservice.resources import inference, model, operations, predictions, records
from webservice.resources.predictions import BATCH_CONSUMES
from webservice.routes import access, route_of
from webservice.service import Service

DESCRIPTION = (
    "Breast-cancer classifier for the nine cytology scores of the UCI Wisconsin (original) data. "
    "A research example, not a diagnostic device. Every error is `application/problem+json` "
    "(RFC 9457) with an `errors` object naming each bad field."
)


# OpenAPI 2.0 has no bearer type: an API key in the Authorization header is how Swagger UI sends
# "Bearer <token>" (its Authorize dialog takes the whole header value).
BEARER = {
    "type": "apiKey",
    "in": "header",
    "name": "Authorization",
    "description": "Bearer <token>: a caller's token (`make token name=CALLER`).",
}
METRICS_BEARER = {**BEARER, "description": "Bearer <token>: a token of the metrics tokens file."}
REFUSALS = {
    "401": "No valid bearer token (`WWW-Authenticate: Bearer`)",
    "403": "The token does not grant the permission this operation needs",
    "400": "The body is not valid JSON, or a token was sent in the query string",
}


class ProblemApi(Api):
    """An Api whose every error, its own or Werkzeug's, answers problem+json, and whose document
    declares the bearer tokens each operation needs (only those this server requires)."""

    def __init__(self, *args: Any, scheme_of: dict[str, str], **kwargs: Any) -> None:
        self.scheme_of = scheme_of  # routes.access() value -> security scheme name
        super().__init__(*args, **kwargs)

    def handle_error(self, e: Exception) -> Response:
        return problem_response(e)

    @cached_property
    def __schema__(self) -> dict[str, Any]:
        schema: dict[str, Any] = super().__schema__
        # flask-restx documents only an operation's "produces"; the batch endpoint takes CSV too.
        schema["paths"]["/v1/predictions/batch"]["post"]["consumes"] = BATCH_CONSUMES
        for path, documented in schema.get("paths", {}).items():
            scheme = self.scheme_of.get(access(path))
            if scheme is None:
                continue
            for method, operation in documented.items():
                if method == "parameters":
                    continue
                operation["security"] = [{scheme: []}]
                if scheme == "bearer":
                    needed = f"Needs a token with the permission `{route_of(path).permission}`."
                    operation["description"] = " ".join(
                        filter(None, (operation.get("description"), needed))
                    )
                for code, description in REFUSALS.items():
                    operation["responses"].setdefault(
                        code,
                        {"description": description, "schema": {"$ref": "#/definitions/Problem"}},
                    )
        return schema


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


def init_api(
    app: Flask,
    version: str,
    service: Service,
    *,
    api_tokens: bool = False,
    metrics_tokens: bool = False,
) -> Api:
    """Register the namespaces, Swagger UI at /docs and the error handlers on `app`; the document
    declares the bearer schemes that are on (`api_tokens`, `metrics_tokens`)."""
    scheme_of: dict[str, str] = {}
    authorizations: dict[str, Any] = {}
    if api_tokens:
        scheme_of["api"] = "bearer"
        authorizations["bearer"] = BEARER
    if metrics_tokens:
        scheme_of["metrics"] = "metrics_bearer"
        authorizations["metrics_bearer"] = METRICS_BEARER
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
        authorizations=authorizations or None,
        scheme_of=scheme_of,
    )
    app.config["API_VERSION"] = version
    app.url_map.converters["prediction_id"] = records.PredictionIdConverter
    predicting = predictions.namespace(max_batch=app.config["MAX_BATCH"], service=service)
    for namespace in (predicting, records.ns, model.ns, operations.ns, inference.ns):
        api.add_namespace(namespace)
    # Document that errors come as problem+json (the OpenAPI document's "produces").
    api.representations[PROBLEM_JSON] = api.representations["application/json"]
    # Errors outside restx's routes (Werkzeug's 404/405, failures in hooks) take the same path.
    app.register_error_handler(Exception, problem_response)
    return api
