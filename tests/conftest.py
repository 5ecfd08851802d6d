"""Shared fixtures: the bundled classifier, and (for the web service) the `app` and `client`."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from oncology_model import Classifier
from oncology_model.integrity import bundled_artifacts_dir
from webservice import create_app


def pytest_configure(config: pytest.Config) -> None:
    """Every app and server of the session records into a SQLite file of its own, not into the
    working directory's (the default of `make run`): set before collection, which creates apps
    too. A test may set another."""
    folder = tempfile.mkdtemp(prefix="oncology-test-records-")
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    os.environ["ONCOLOGY_DATABASE_URL"] = f"sqlite:///{folder}/records.sqlite3"


@pytest.fixture(scope="session")
def classifier() -> Classifier:
    return Classifier()


@pytest.fixture
def artifacts_copy(tmp_path: Path) -> Path:
    """A private copy of the bundled artifacts, safe to tamper with."""
    directory = tmp_path / "artifacts"
    shutil.copytree(bundled_artifacts_dir(), directory)
    return directory


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


@pytest.fixture(scope="session")
def app_without_lane() -> Flask:
    """The app with the prediction lane off: the flask-restx resources answer those routes."""
    application = create_app({"TESTING": True, "PREDICTION_LANE": False})
    application.test_client_class = ClosingClient
    return application


@pytest.fixture
def client_without_lane(app_without_lane: Flask) -> FlaskClient:
    return app_without_lane.test_client()


# The module whose trainings take the longest: run first, it overlaps the rest of the suite on
# the other worker instead of finishing alone at the end.
LONGEST_MODULE = "test_training.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest module first, and give each schemathesis operation its own node id.

    schemathesis names the items `test[GET /healthz]` but, under pytest 9's structured node ids,
    leaves one node id for all of them; pytest-xdist schedules by node id and would run only one
    operation of the lot. (Private: pytest has no public way to set a node id.)
    """
    items.sort(key=lambda item: item.path.name != LONGEST_MODULE)  # stable: otherwise in order
    # flask-restx lists a path's methods from a set, in an order that differs between processes:
    # the operations in one order everywhere, as pytest-xdist requires.
    places = [i for i, item in enumerate(items) if getattr(item, "operation_label", None)]
    ordered = sorted((items[i] for i in places), key=lambda item: item.operation_label)
    for place, item in zip(places, ordered, strict=True):
        items[place] = item
    for item in items:
        label = getattr(item, "operation_label", None)
        if label and item._id.params is None:
            item._id = item._id.with_params(label)
