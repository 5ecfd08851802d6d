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
from webservice import create_app

SEED_TUMOR = (4, 1, 2, 1, 2, 1, 1, 1, 1)


@pytest.fixture(scope="session")
def classifier() -> Classifier:
    return Classifier()


@pytest.fixture
def artifacts_copy(tmp_path: Path) -> Path:
    """A private copy of the bundled artifacts, safe to tamper with."""
    directory = tmp_path / "artifacts"
    shutil.copytree(bundled_artifacts_dir(), directory)
    return directory


SEED_JSON = {
    "clump_thickness": 4,
    "uniformity_of_cell_size": 1,
    "uniformity_of_cell_shape": 2,
    "marginal_adhesion": 1,
    "single_epithelial_cell_size": 2,
    "bare_nuclei": 1,
    "bland_chromatin": 1,
    "normal_nucleoli": 1,
    "mitoses": 1,
}
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
