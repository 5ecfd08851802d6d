"""`create_app`: the Flask app with its Service, Api and WSGI middleware."""

from __future__ import annotations

from http import HTTPStatus
from importlib import metadata
from typing import Any

from flask import Flask
from flask import Response as FlaskResponse

from webservice.api import init_api
from webservice.auth import BearerAuth
from webservice.config import load_config
from webservice.lane import PredictionLane
from webservice.metrics import record_served
from webservice.middleware import WSGIApp
from webservice.observability import Observability, configure_logging
from webservice.problems import STATUS_LINES
from webservice.service import Service, init_records
from webservice.tally import TALLY
from webservice.tokens import TokenFile


class PhrasedResponse(FlaskResponse):
    """Flask's Response, writing the same status lines as the prediction lane (`STATUS_LINES`)."""

    def _clean_status(self, value: str | int | HTTPStatus) -> tuple[str, int]:
        # Werkzeug's one place that turns a status (`status` or `status_code` set) into its line.
        if not isinstance(value, str) and int(value) in STATUS_LINES:
            value = STATUS_LINES[int(value)]
        return super()._clean_status(value)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: configuration, the Service (model loaded once, here), the Api.

    Around Flask, outermost first: `Observability` (request id, JSON access log, metrics),
    `BearerAuth` (401 before any work; only when a tokens file is configured), `PredictionLane`
    (the prediction routes without Flask's per-request machinery; see its docstring; off with
    `PREDICTION_LANE`, when the flask-restx resources answer them). The body
    limit is `jsonbody.read_body`'s, for every route that reads a body.
    """
    app = Flask(__name__)
    app.response_class = PhrasedResponse
    settings = load_config(config)
    app.config.update(settings)
    configure_logging(settings["LOG_LEVEL"])
    api_tokens = _tokens(settings["TOKENS_FILE"])
    metrics_tokens = _tokens(settings["METRICS_TOKENS_FILE"])
    service = Service(artifacts_dir=settings["ARTIFACTS_DIR"])
    service.track = settings["TRACK"]
    TALLY.set_model(service.model_version, service.track)
    record_served(service.model_version, service.track)
    init_records(service, settings)
    app.extensions["oncology"] = service
    init_api(
        app,
        version=_version(),
        service=service,
        api_tokens=api_tokens is not None,
        metrics_tokens=metrics_tokens is not None,
    )
    inner: WSGIApp = app.wsgi_app
    if settings["PREDICTION_LANE"]:
        inner = PredictionLane(
            inner, service, max_bytes=settings["MAX_BODY_BYTES"], max_batch=settings["MAX_BATCH"]
        )
    if api_tokens or metrics_tokens:
        inner = BearerAuth(inner, api=api_tokens, metrics=metrics_tokens)
    # Flask's documented way to add WSGI middleware; mypy sees it as replacing a method.
    app.wsgi_app = Observability(  # type: ignore[method-assign]
        inner, model_version=service.model_version, access_log=settings["ACCESS_LOG"]
    )
    return app


def _tokens(path: str | None) -> TokenFile | None:
    return TokenFile(path) if path else None


def _version() -> str:
    try:
        return metadata.version("oncology-model")
    except metadata.PackageNotFoundError:
        return "0+unknown"
