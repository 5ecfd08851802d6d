"""The `Classifier`: the bundled ONNX model, verified, behind a small typed API.

Serving never unpickles and never imports scikit-learn or joblib: the model runs in ONNX Runtime,
and only after its SHA-256 matched the metadata written at training time.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import onnxruntime

from oncology_model.datamodel import FEATURES, Prediction, Tumor
from oncology_model.drift import DriftReference
from oncology_model.explaining import exact_shapley
from oncology_model.integrity import (
    ONNX_FILE,
    ArtifactError,
    bundled_artifacts_dir,
    read_metadata,
    verified_bytes,
    version_tuple,
)

if TYPE_CHECKING:
    import pandas as pd

_FLOAT32_ROW = struct.Struct(f"{len(FEATURES)}f")  # one row, as the engine's float32 input


class Classifier:
    """Scores tumors with the trained model; `predict` applies the model's chosen threshold."""

    def __init__(self, *, artifacts_dir: Path | None = None) -> None:
        directory = artifacts_dir or bundled_artifacts_dir()
        self.metadata: dict[str, Any] = read_metadata(directory)
        _check_engine_version(self.metadata, directory)
        model = verified_bytes(directory, ONNX_FILE, self.metadata)
        # No usage events even where a user set ORT_DISABLE_TELEMETRY=0 (see the package __init__).
        onnxruntime.disable_telemetry_events()
        options = onnxruntime.SessionOptions()
        # One thread per session: gunicorn runs one sync worker per core, and a thread pool per
        # worker would only fight the other workers for the same cores on tiny inputs.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        # Idle pool threads spin for more work by default, burning CPU the other workers need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._session = onnxruntime.InferenceSession(
                model, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ArtifactError(
                f"model artifact {directory / ONNX_FILE} cannot be loaded: {exc}"
            ) from None
        engine = self.metadata["engine"]
        self._input: str = engine["input"]
        self._output: list[str] = [engine["output"]]
        self._one_lock = threading.Lock()
        self._one_in = np.zeros((1, len(FEATURES)), dtype=np.float32)
        self._one_out = np.zeros((1, 2), dtype=np.float32)
        self._one_binding = self._session.io_binding()
        self._one_binding.bind_cpu_input(self._input, self._one_in)
        self._one_binding.bind_output(
            engine["output"], "cpu", 0, np.float32, [1, 2], self._one_out.ctypes.data
        )
        self._run_one = _bound_run(self._session, self._one_binding)
        # The same buffers as plain float32 sequences: one row in and out without numpy calls.
        self._pack_one = partial(_FLOAT32_ROW.pack_into, self._one_in.data.cast("B"), 0)
        self._one_out_values = self._one_out.data.cast("B").cast("f")
        self.threshold: float = float(self.metadata["threshold"])
        self.model_version: str = self.metadata["model_version"]
        features = self.metadata["features"]
        if [feature["name"] for feature in features] != list(FEATURES):
            raise ArtifactError(f"model metadata in {directory} does not list the nine features")
        self.medians = np.array([feature["median"] for feature in features], dtype=np.float32)
        # What explanations are measured against: the probability of the all-medians tumor.
        self.baseline_probability = float(self.malignant_probabilities(self.medians)[0])
        # What the model saw and predicted at training, for drift monitoring (None: older model).
        self.drift_reference: DriftReference | None = DriftReference.from_metadata(self.metadata)

    def malignant_probabilities(self, rows: npt.ArrayLike) -> np.ndarray:
        """Malignant probability of each (n, 9) row (NaN where not measured), in one engine call."""
        rows = np.asarray(rows)
        if rows.size == len(FEATURES):
            return np.array([self.malignant_probability(rows.ravel().tolist())])
        batch = rows.astype(np.float32).reshape(-1, len(FEATURES))
        probabilities = self._session.run(self._output, {self._input: batch})[0]
        return np.asarray(probabilities[:, 1], dtype=np.float64)

    def malignant_probability(self, scores: Sequence[float]) -> float:
        """The malignant probability of one row of nine scores (NaN where not measured): the
        same figure as `malignant_probabilities`, without a numpy call on the way.

        The row goes through buffers bound to the session once (half the cost of `run`, which
        allocates its input and output on every call), written and read as plain float32
        values: each numpy call costs a few microseconds, more than the arithmetic. Locked: the
        buffers are shared."""
        with self._one_lock:
            self._pack_one(*scores)  # to float32, rounded as numpy casts
            self._run_one()
            return self._one_out_values[1]

    def labels(self, probabilities: np.ndarray) -> np.ndarray:
        """True where a malignant probability reaches the threshold."""
        return np.asarray(probabilities >= self.threshold)

    def label(self, probability: float) -> bool:
        """`labels` for one probability (without numpy's cost per call)."""
        return probability >= self.threshold

    def predict_proba(self, tumor: Tumor) -> dict[Prediction, float]:
        """The probability of each class for one tumor."""
        malignant = float(self.malignant_probabilities(np.array([tumor.to_row()]))[0])
        return {Prediction.BENIGN: 1.0 - malignant, Prediction.MALIGNANT: malignant}

    def predict(self, tumor: Tumor) -> Prediction:
        """The diagnosis for one tumor."""
        return self.predict_many([tumor])[0]

    def predict_many(self, tumors: Sequence[Tumor]) -> list[Prediction]:
        """Diagnoses for many tumors, scored in one engine call."""
        if not tumors:
            return []
        rows = np.array([tumor.to_row() for tumor in tumors], dtype=np.float64)
        malignant = self.labels(self.malignant_probabilities(rows))
        return [Prediction.MALIGNANT if m else Prediction.BENIGN for m in malignant]

    def predict_frame(self, frame: pd.DataFrame, *, explain: bool = False) -> pd.DataFrame:
        """Score a DataFrame holding the nine feature columns (NaN or None: not measured; other
        columns are ignored). Returns a DataFrame with the same index and the columns
        `prediction`, `malignant_probability` (6 decimals, as the API gives it) and `imputed`
        (the names of the imputed scores, `;`-separated), plus `contribution_<feature>` columns
        with `explain`; `attrs` holds `model_version` and `threshold`. Every bad cell raises at
        once in an `InvalidTumorError` keyed `row <label>.<column>`. Needs pandas
        (`pip install 'oncology-model[pandas]'`), imported here only: serving never loads it."""
        from oncology_model.frames import predict_frame

        answers: pd.DataFrame = predict_frame(self, frame, explain=explain)
        return answers

    def contributions(self, rows: np.ndarray, *, decimals: int | None = None) -> np.ndarray:
        """Exact Shapley values of the malignant probability of each row against the baseline
        tumor (every score at its training median): shape (n, 9), each row summing to
        p(row) - `baseline_probability`, rounded to `decimals` when given. A zero is always
        0.0, never -0.0. 512 evaluations per row, one engine call per 1,024 rows (see
        `oncology_model.explaining`)."""
        values = exact_shapley(self.malignant_probabilities, rows, self.medians)
        if decimals is not None:
            values = values.round(decimals)
        # A tiny negative rounding error (or rounded to nothing) is -0.0; adding 0.0 makes it 0.0.
        return values + 0.0


def _bound_run(
    session: onnxruntime.InferenceSession, binding: onnxruntime.IOBinding
) -> Callable[[], None]:
    """`session.run_with_iobinding(binding)` as one call into the engine's C++ session.

    The public wrapper re-checks on every call whether WebGPU graph capture is on (a second
    call into the engine, never true for the CPU provider), a few microseconds per single
    prediction. Its C++ target is used when this onnxruntime exposes it, else the wrapper."""
    native_session = getattr(session, "_sess", None)
    native_binding = getattr(binding, "_iobinding", None)
    if native_session is None or native_binding is None:
        return partial(session.run_with_iobinding, binding)
    return partial(native_session.run_with_iobinding, native_binding, None)


def _check_engine_version(metadata: dict[str, Any], directory: Path) -> None:
    required = metadata["engine"]["min_version"]
    if version_tuple(onnxruntime.__version__) < version_tuple(required):
        raise ArtifactError(
            f"model artifact {directory / ONNX_FILE} needs onnxruntime >= {required}, "
            f"but {onnxruntime.__version__} is installed"
        )
