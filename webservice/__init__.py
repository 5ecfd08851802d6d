"""The web service: a flask-restx API over the oncology classifier, served by gunicorn."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from flask import Flask

from webservice.api import init_api
from webservice.config import load_config
from webservice.middleware import BodyLimit
from webservice.service import Service


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: configuration, the Service (model loaded once, here), the Api."""
    app = Flask(__name__)
    settings = load_config(config)
    app.config.update(settings)
    app.config["MAX_CONTENT_LENGTH"] = settings["MAX_BODY_BYTES"]  # bounds chunked bodies too
    app.extensions["oncology"] = Service(artifacts_dir=settings["ARTIFACTS_DIR"])
    init_api(app, version=_version())
    app.wsgi_app = BodyLimit(  # type: ignore[method-assign]
        app.wsgi_app,
        max_bytes=settings["MAX_BODY_BYTES"],
        drain_cap=settings["DRAIN_CAP_BYTES"],
    )
    return app


def _version() -> str:
    try:
        return metadata.version("oncology-model")
    except metadata.PackageNotFoundError:
        return "0+unknown"
