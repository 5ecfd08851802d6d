"""Shared fixtures: the bundled classifier, and (for the web service) the `app` and `client`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from oncology_model import Classifier
from oncology_model.integrity import bundled_artifacts_dir

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
