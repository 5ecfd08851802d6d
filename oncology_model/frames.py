"""DataFrames in and out: `Classifier.predict_frame` and the columns `oncology-predict` appends.

pandas is an optional extra (`oncology-model[pandas]`): this module imports it, and only
`Classifier.predict_frame` (lazily) and the data tools import this module; serving never does.
Cells are judged by `datamodel.score_error`, the rule every other input meets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from oncology_model.datamodel import (
    ANSWER_COLUMNS,
    CONTRIBUTION_COLUMNS,
    FEATURES,
    SCORE_MAX,
    SCORE_MIN,
    InvalidTumorError,
    cell_error,
    cell_value,
    score_error,
)

if TYPE_CHECKING:
    from oncology_model.classifier import Classifier

IMPUTED_SEPARATOR = ";"
# The `imputed` text of each of the 512 patterns of missing scores (bit j: feature j missing).
_IMPUTED_TEXT = np.array(
    [
        IMPUTED_SEPARATOR.join(name for j, name in enumerate(FEATURES) if pattern >> j & 1)
        for pattern in range(1 << len(FEATURES))
    ],
    dtype=object,
)
_BITS = 1 << np.arange(len(FEATURES))


def predict_frame(classifier: Classifier, frame: pd.DataFrame, *, explain: bool = False) -> Any:
    """See `Classifier.predict_frame`."""
    rows = frame_rows(frame)
    answers = prediction_frame(classifier, rows, explain=explain)
    answers.index = frame.index
    return answers


def frame_rows(frame: pd.DataFrame) -> np.ndarray:
    """The nine feature columns as a float (n, 9) array, NaN where not measured.

    NaN, None and pd.NA are "not measured"; other columns are ignored. Every missing column and
    every bad cell is reported at once, keyed `row <label>.<column>` (`row <label> (position i)`
    when labels repeat), with the rule `score_error` gives the same value anywhere else.
    """
    if not isinstance(frame, pd.DataFrame):
        raise InvalidTumorError(
            {"frame": f"must be a pandas DataFrame, got {type(frame).__name__}"}
        )
    errors = {name: "is required: a column of the frame" for name in FEATURES if name not in frame}
    if errors:
        raise InvalidTumorError(errors)
    rows = np.empty((len(frame), len(FEATURES)), dtype=np.float64)
    bad: list[tuple[int, str, str]] = []
    for j, name in enumerate(FEATURES):
        column = frame[name]
        if isinstance(column, pd.DataFrame):
            raise InvalidTumorError({name: "appears twice among the frame's columns"})
        rows[:, j] = _column_values(column, name, bad)
    if bad:
        labels = frame.index
        unique = labels.is_unique
        raise InvalidTumorError(
            {
                f"row {labels[i]}.{name}"
                if unique
                else f"row {labels[i]} (position {i}).{name}": rule
                for i, name, rule in sorted(bad, key=lambda error: error[0])
            }
        )
    return rows


def _column_values(column: pd.Series, name: str, bad: list[tuple[int, str, str]]) -> np.ndarray:
    """A column as floats (NaN: not measured); each bad cell appended to `bad` (position,
    name, rule). Numeric columns are checked at once; others cell by cell, text cells under the
    CSV reader's rules (`" 4"` is 4, `"?"` and `""` are not measured)."""
    dtype = column.dtype
    numeric = pd.api.types.is_numeric_dtype(dtype)
    if (
        numeric
        and not pd.api.types.is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
    ):
        values: np.ndarray = column.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            fine = np.isnan(values) | (
                (values >= SCORE_MIN) & (values <= SCORE_MAX) & (values == np.floor(values))
            )
        for i in np.flatnonzero(~fine).tolist():
            bad.append((i, name, str(score_error(_plain(column.iloc[i])))))
        return values
    values = np.empty(len(column), dtype=np.float64)
    for i, cell in enumerate(column.to_numpy(dtype=object).tolist()):
        value = _plain(cell)
        if isinstance(value, str):
            error, value = cell_error(value), cell_value(value)
        else:
            error = score_error(value)
        if error is None:
            values[i] = np.nan if value is None else value
        else:
            bad.append((i, name, error))
    return values


def _plain(cell: Any) -> Any:
    """A cell as plain Python: None when missing (NaN, None, pd.NA), numpy scalars unwrapped."""
    if isinstance(cell, np.generic):
        cell = cell.item()
    if cell is None or cell is pd.NA or cell is pd.NaT or (type(cell) is float and cell != cell):
        return None
    return cell


def prediction_frame(classifier: Classifier, rows: np.ndarray, *, explain: bool) -> pd.DataFrame:
    """The answer columns for validated rows: the same figures the JSON API gives (malignant
    probability rounded to 6 decimals, the label from the unrounded one)."""
    malignant = classifier.malignant_probabilities(rows) if len(rows) else np.empty(0)
    flags = classifier.labels(malignant)
    pattern = np.isnan(rows).astype(np.int64) @ _BITS if len(rows) else np.empty(0, np.int64)
    prediction, probability, imputed = ANSWER_COLUMNS
    columns: dict[str, Any] = {
        prediction: np.where(flags, "malignant", "benign").astype(object),
        probability: malignant.round(6),
        imputed: _IMPUTED_TEXT[pattern],
    }
    if explain:
        contributions = (
            classifier.contributions(rows, decimals=6)
            if len(rows)
            else np.empty((0, len(FEATURES)))
        )
        columns.update(zip(CONTRIBUTION_COLUMNS, contributions.T, strict=True))
    answers = pd.DataFrame(columns)
    answers.attrs.update(model_version=classifier.model_version, threshold=classifier.threshold)
    return answers
