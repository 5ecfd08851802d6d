"""Shared fixtures: the bundled classifier, and (for the web service) the `app` and `client`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from oncology_model import Classifier
from oncology_model.integrity import bundled_artifacts_dir
from oncology_model.verify import SEED_TUMOR
from webservice import create_app


@pytest.fixture(scope="session")
def classifier() -> Classifier:
    return Classifier()


@pytest.fixture
def artifacts_copy(tmp_path: Path) -> Path:
    """A private copy of the bundled artifacts, safe to tamper with."""
    directory = tmp_path / "artifacts"
    shutil.copytree(bundled_artifacts_dir(), directory)
    return directory


SEED_JSON = SEED_TUMOR.to_dict()
MALIGNANT_JSON = dict.fromkeys(SEED_JSON, 10)


class ClosingClient(FlaskClient):
    """A test client that consumes and closes every answer, as a WSGI server does, so that
    what runs on close (the access log, the request metrics) runs before the test looks."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture(scope="session")
def app() -> Flask:
    application = create_app({"TESTING": True})
    application.test_client_class = ClosingClient
    return application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
