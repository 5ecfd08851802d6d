"""Validation of many tumors at once, for the web service and the data tools: parsed-JSON
objects (`validate_rows`, `validate_row` for one), row-major scores (`validate_flat`, tensors)
and CSV records (`validate_cells`, `header_order`).

Every rule and every message is the datamodel's (`oncology_model.datamodel`: `score_error`,
`field_errors`, `cell_error`); what lives here are the fast paths that prove the common, plainly
valid input in a few C-level passes before anything is checked one field at a time. A fast path
only ever accepts what the datamodel's rules accept (a property test pins this).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import orjson

from oncology_model.datamodel import (
    FEATURES,
    NOT_MEASURED_CELLS,
    SCORE_MAX,
    SCORE_MIN,
    InvalidTumorError,
    Score,
    as_float,
    cell_error,
    cell_value,
    field_errors,
)

FEW = 8
"""Up to this many rows, a plain Python loop beats numpy's fixed cost per call."""
_FEATURE_SET = frozenset(FEATURES)
_FEATURE_LIST = ", ".join(FEATURES)


_PLAIN_CELLS: dict[str, float] = {
    **{str(v): float(v) for v in range(SCORE_MIN, SCORE_MAX + 1)},
    **dict.fromkeys(NOT_MEASURED_CELLS, math.nan),
}


def header_order(header: Sequence[str]) -> list[int]:
    """The position in a CSV header of each feature, in `FEATURES` order. Every missing, unknown
    or repeated column is named at once as `header.<column>`."""
    names = [name.strip() for name in header]
    expected = f"the header names the nine features, in any order: {_FEATURE_LIST}"
    errors = {
        f"header.{name}": "appears more than once" for name in set(names) if names.count(name) > 1
    }
    errors.update(
        {f"header.{name}": f"is missing: {expected}" for name in FEATURES if name not in names}
    )
    errors.update(
        {
            f"header.{name}": f"is not a feature name: {expected}"
            for name in dict.fromkeys(names)
            if name not in _FEATURE_SET
        }
    )
    if errors:
        raise InvalidTumorError(errors)
    return [names.index(name) for name in FEATURES]


def validate_cells(header: Sequence[str], records: Sequence[Sequence[str]]) -> np.ndarray:
    """Validate the text records of a headered CSV (the nine feature names, in any order) and
    return them as a float (n, 9) array, NaN where not measured.

    Errors name `header.<column>` for a missing, unknown or repeated column, `row N` (from 1,
    after the header) for a record of the wrong width and `row N.<column>` for a bad cell.
    """
    order = header_order(header)
    width = len(header)
    errors: dict[str, str] = {}
    if all(len(record) == width for record in records):
        ordered = operator.itemgetter(*order)
        try:
            flat = [_PLAIN_CELLS[cell] for record in records for cell in ordered(record)]
            return np.array(flat, dtype=np.float64).reshape(len(records), len(FEATURES))
        except KeyError:
            pass  # some cell is not plainly 1..10 or empty: judged one by one below
    rows: list[list[float]] = []
    for number, record in enumerate(records, start=1):
        if len(record) != width:
            errors[f"row {number}"] = f"has {len(record)} cells; the header has {width}"
            continue
        row = []
        for name, position in zip(FEATURES, order, strict=True):
            text = record[position]
            error = cell_error(text)
            if error is None:
                row.append(as_float(cast(Score | float, cell_value(text))))
            else:
                errors[f"row {number}.{name}"] = error
        rows.append(row)
    if errors:
        raise InvalidTumorError(errors)
    return np.array(rows, dtype=np.float64).reshape(len(records), len(FEATURES))


_PLAIN_TYPES = frozenset((int, type(None)))  # not bool: type(True) is bool


_scores_of = operator.itemgetter(*FEATURES)


def validate_rows(items: Sequence[object], path: str = "") -> np.ndarray:
    """Validate parsed-JSON tumors and return them as a float (n, 9) array, NaN for null.

    First the whole list at once: when every item is an object of exactly the nine fields with
    integer or null scores in range (the common case), a few C-level passes and one numpy
    comparison prove it. Otherwise each item goes through `field_errors`, which decides (5.0 is
    fine) and words every error; the fast pass only ever accepts what `field_errors` accepts.
    `path` names a batch: "tumors" gives error keys like "tumors[3].mitoses".
    """
    rows = _plain_rows(items)
    if rows is not None:
        return rows
    values: list[list[float]] = []
    errors: dict[str, str] = {}
    for i, item in enumerate(items):
        item_errors = field_errors(item, f"{path}[{i}]." if path else "")
        if item_errors:
            errors.update(item_errors)
        elif isinstance(item, Mapping):
            values.append([as_float(item[name]) for name in FEATURES])
    if errors:
        raise InvalidTumorError(errors)
    return np.array(values, dtype=np.float64).reshape(len(items), len(FEATURES))


def _plain_rows(candidates: Sequence[object]) -> np.ndarray | None:
    """The rows if every item is plainly valid (see `validate_rows`), else None."""
    if not candidates:
        return np.empty((0, len(FEATURES)))
    if len(candidates) <= FEW:
        flat = _few_plain_scores(candidates)
        return None if flat is None else np.array(flat, dtype=np.float64).reshape(-1, len(FEATURES))
    if set(map(type, candidates)) != {dict}:
        return None
    items = cast(Sequence[dict[str, Any]], candidates)
    # Exactly the nine keys: nine entries, all nine of which the getter finds.
    if set(map(len, items)) != {len(FEATURES)}:
        return None
    try:
        flat = list(itertools.chain.from_iterable(map(_scores_getter(items[0]), items)))
    except KeyError:
        return None
    values = _small_ints(flat)
    if values is None:  # a null (not measured) or another kind of score: each one's type
        if not set(map(type, flat)) <= _PLAIN_TYPES:
            return None
        try:
            values = np.array(flat, dtype=np.float64)  # None: NaN
        except (ValueError, OverflowError):  # beyond float range: said per item
            return None
    rows = values.reshape(len(items), len(FEATURES))
    with np.errstate(invalid="ignore"):
        plain = ((rows >= SCORE_MIN) & (rows <= SCORE_MAX)) | np.isnan(rows)
    return rows if plain.all() else None


def _small_ints(scores: list[Any]) -> np.ndarray | None:
    """The scores as floats if each is an int (of any int type but bool) from 0 to 255, else
    None.

    Two C passes, faster than checking each score's type (a third of the validation of a
    10,000-tumor batch): bytes take ints from 0 to 255 and whatever converts to one, bools too
    (as 1 and 0); orjson then writes a bool as true or false, and refuses what is not an int
    (numpy's ints, say).
    """
    try:
        as_bytes = bytearray(scores)
        text = orjson.dumps(scores)
    except (TypeError, ValueError):
        return None
    if b"true" in text or b"false" in text:
        return None
    return np.frombuffer(as_bytes, dtype=np.uint8).astype(np.float64)


def _scores_getter(first: dict[str, Any]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """`_scores_of`, looking the nine fields up with `first`'s own key strings (KeyError if it
    lacks one). orjson, like Python's json, gives every object of a body the same key objects,
    and a dict finds the very same object without comparing characters: over a batch this step
    takes little more than half the time."""
    keys = {key: key for key in first}
    return operator.itemgetter(*(keys[name] for name in FEATURES))


def _few_plain_scores(candidates: Sequence[object]) -> list[Score] | None:
    """The scores of a few items, row-major, if every item is plainly valid (the rules of
    `_plain_rows`, one score at a time), else None."""
    flat: list[Score] = []
    for item in candidates:
        if type(item) is not dict or len(item) != len(FEATURES):
            return None
        try:
            scores = _scores_of(item)
        except KeyError:
            return None
        for score in scores:
            if score is not None and (
                type(score) is not int or not SCORE_MIN <= score <= SCORE_MAX
            ):
                return None
        flat.extend(scores)
    return flat


def validate_row(item: object) -> list[float]:
    """`validate_rows` for one item, as a list of nine numbers (NaN for null): the same rules,
    errors and figures, without numpy's fixed cost per call (a single prediction makes none)."""
    scores = _few_plain_scores((item,))
    if scores is None:
        return list(validate_rows([item])[0].tolist())  # raises the errors, or converts 5.0
    if None in scores:
        return [math.nan if score is None else score for score in scores]
    return cast(list[float], scores)


def validate_flat(values: Sequence[object] | np.ndarray, path: str) -> np.ndarray:
    """Validate scores given row-major, nine per row in `FEATURES` order, and return them as a
    float (n, 9) array: the tensor form of `validate_rows`, with the same rules and messages.

    `values` holds parsed-JSON scores (None when not measured), or is a numeric array in which NaN
    means not measured (binary tensor data, which has no null). Plainly valid scores pass in one
    quick check; otherwise each row is checked as a tumor object by `validate_rows`, so errors read
    `path[3].mitoses` (rows counted from 0). The caller makes sure there are nine per row.
    """
    k = len(FEATURES)
    if isinstance(values, np.ndarray):
        rows = values.astype(np.float64).reshape(-1, k)
        with np.errstate(invalid="ignore"):
            plain = (rows >= SCORE_MIN) & (rows <= SCORE_MAX) & (rows == np.floor(rows))
        if (plain | np.isnan(rows)).all():
            return rows
        items: list[Any] = [None if v != v else v for v in values.ravel().tolist()]
    else:
        plain_rows = _plain_flat(values)
        if plain_rows is not None:
            return plain_rows
        items = list(values)
    tumors = [dict(zip(FEATURES, items[i : i + k], strict=True)) for i in range(0, len(items), k)]
    return validate_rows(tumors, path)


def _plain_flat(values: Sequence[object]) -> np.ndarray | None:
    """The (n, 9) rows if every value is plainly a valid score or None (see `validate_flat`)."""
    for value in values:
        kind = type(value)
        if kind is int:
            if not SCORE_MIN <= cast(int, value) <= SCORE_MAX:
                return None
        elif kind is float:
            number = cast(float, value)
            if not (number.is_integer() and SCORE_MIN <= number <= SCORE_MAX):
                return None
        elif value is not None:
            return None
    return np.array(values, dtype=np.float64).reshape(-1, len(FEATURES))
