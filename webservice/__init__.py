"""The web service: a flask-restx API over the oncology classifier, served by gunicorn.

`create_app()` builds the app (`webservice.app`). Importing the package loads nothing else, so
that the gunicorn master can check the settings (`webservice.config.startup_problem`) without
loading Flask, the model or the metrics client (which must see its folder set first), and
`python -m webservice.tokens` runs without a warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: see `webservice.app.create_app`."""
    from webservice.app import create_app as build

    return build(config)
