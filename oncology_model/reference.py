"""The joblib reference pipeline, for checks and comparisons; serving never loads it.

joblib files are pickles: loading one runs code, so it is loaded only after its SHA-256 matched
the metadata, and only with the scikit-learn version that wrote it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import joblib
import sklearn

from oncology_model.integrity import (
    JOBLIB_FILE,
    ArtifactError,
    bundled_artifacts_dir,
    read_metadata,
    verified_bytes,
)


def load_reference_pipeline(*, artifacts_dir: Path | None = None) -> Any:
    """The fitted scikit-learn pipeline, verified before it is unpickled."""
    directory = artifacts_dir or bundled_artifacts_dir()
    metadata = read_metadata(directory)
    trained_with = metadata["reference"]["scikit_learn"]
    if trained_with != sklearn.__version__:
        raise ArtifactError(
            f"model artifact {directory / JOBLIB_FILE} was written by scikit-learn {trained_with}; "
            f"{sklearn.__version__} is installed and pickles are only safe with the same version"
        )
    return joblib.load(io.BytesIO(verified_bytes(directory, JOBLIB_FILE, metadata)))
