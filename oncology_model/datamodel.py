"""The datamodel: a `Tumor` (nine cytology scores) and its `Prediction`.

Validation lives here, once, for every caller: the `Tumor` constructor, `Tumor.from_dict` for parsed
JSON, and `validate_rows`, the vectorised path the web service uses for batches. All of them apply
`score_error` and report every bad field at once in an `InvalidTumorError`. CSV cells (the batch
endpoint, `oncology-predict`) are text: `cell_value` reads one as the value it stands for and
`cell_error` words what is wrong with it, with the same rules.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Any, ClassVar, cast

import numpy as np
import orjson

FEATURES: tuple[str, ...] = (
    "clump_thickness",
    "uniformity_of_cell_size",
    "uniformity_of_cell_shape",
    "marginal_adhesion",
    "single_epithelial_cell_size",
    "bare_nuclei",
    "bland_chromatin",
    "normal_nucleoli",
    "mitoses",
)
"""The nine cytology scores, in the order of the UCI file and of the model's input columns."""

FEATURE_DESCRIPTIONS: dict[str, str] = {
    "clump_thickness": "Thickness of cell clumps (monolayer 1, multilayer 10).",
    "uniformity_of_cell_size": "Uniformity of cell size (uniform 1, varied 10).",
    "uniformity_of_cell_shape": "Uniformity of cell shape (uniform 1, varied 10).",
    "marginal_adhesion": "Marginal adhesion between cells (cohesive 1, lost 10).",
    "single_epithelial_cell_size": "Single epithelial cell size (normal 1, enlarged 10).",
    "bare_nuclei": "Bare nuclei, without surrounding cytoplasm (rare 1, frequent 10).",
    "bland_chromatin": "Bland chromatin texture of the nucleus (uniform 1, coarse 10).",
    "normal_nucleoli": "Normal nucleoli (small and few 1, prominent 10).",
    "mitoses": "Mitoses, the rate of cell division (rare 1, frequent 10).",
}

SCORE_MIN = 1
SCORE_MAX = 10
SCORE_RULE = f"must be an integer from {SCORE_MIN} to {SCORE_MAX}, or null when not measured"
MISSING_RULE = f"is required: an integer from {SCORE_MIN} to {SCORE_MAX}, or null when not measured"

Score = int | None


class InvalidTumorError(ValueError):
    """Bad tumor input; `errors` maps every bad field (or path) to the rule it breaks."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("invalid tumor: " + "; ".join(f"{k}: {v}" for k, v in self.errors.items()))


class Prediction(Enum):
    """The diagnosis a classifier gives a tumor."""

    BENIGN = "benign"
    MALIGNANT = "malignant"

    @classmethod
    def from_class(cls, class_id: int) -> Prediction:
        """Map the UCI file's class column (2 benign, 4 malignant)."""
        if type(class_id) is not bool:
            if class_id == 2:
                return cls.BENIGN
            if class_id == 4:
                return cls.MALIGNANT
        raise ValueError(f"unknown class {class_id!r}: expected 2 (benign) or 4 (malignant)")

    @classmethod
    def from_classifier(cls, value: int) -> Prediction:
        """Map a classifier's label (0 benign, 1 malignant)."""
        if type(value) is not bool:
            if value == 0:
                return cls.BENIGN
            if value == 1:
                return cls.MALIGNANT
        raise ValueError(
            f"unknown classifier label {value!r}: expected 0 (benign) or 1 (malignant)"
        )


def score_error(value: object) -> str | None:
    """The rule `value` breaks as a score, or None when it is a valid score (or null)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):  # a bool is never a score
        return None if SCORE_MIN <= value <= SCORE_MAX else f"{value} is out of range: {SCORE_RULE}"
    if type(value) is float:
        # JSON has one number type: 5.0 is the integer 5, but 2.5, NaN and Infinity are not.
        if not (math.isfinite(value) and value.is_integer()):
            return f"{value!r} is not a whole number: {SCORE_RULE}"
        return (
            None if SCORE_MIN <= value <= SCORE_MAX else f"{value:g} is out of range: {SCORE_RULE}"
        )
    return f"got {_json_type(value)}: {SCORE_RULE}"


NOT_MEASURED_CELLS = ("", "?")
"""CSV cells that mean "not measured": empty, or `?` as in the UCI file."""


def cell_value(text: str) -> Score | float | str:
    """What a CSV cell stands for: None when not measured, an int or float when it is a number
    (`5`, `5.0`; `score_error` then judges it like a JSON number), else the text itself."""
    text = text.strip()
    if text in NOT_MEASURED_CELLS:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def cell_error(text: str) -> str | None:
    """The rule a CSV cell breaks as a score, or None when it is a valid score or not measured."""
    value = cell_value(text)
    if isinstance(value, str):
        return f"{value!r} is not a number: {SCORE_RULE}"
    return score_error(value)


ANSWER_COLUMNS: tuple[str, ...] = ("prediction", "malignant_probability", "imputed")
"""The columns of a tabular answer (a DataFrame, a CSV); `imputed` joins names with `;`."""
CONTRIBUTION_COLUMNS: tuple[str, ...] = tuple(f"contribution_{name}" for name in FEATURES)
"""With explain, one more column per feature."""
_PLAIN_CELLS: dict[str, float] = {
    **{str(v): float(v) for v in range(SCORE_MIN, SCORE_MAX + 1)},
    **dict.fromkeys(NOT_MEASURED_CELLS, math.nan),
}


def header_order(header: Sequence[str]) -> list[int]:
    """The position in a CSV header of each feature, in `FEATURES` order. Every missing, unknown
    or repeated column is named at once as `header.<column>`."""
    names = [name.strip() for name in header]
    expected = f"the header names the nine features, in any order: {_field_list()}"
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
                row.append(_as_float(cast(Score | float, cell_value(text))))
            else:
                errors[f"row {number}.{name}"] = error
        rows.append(row)
    if errors:
        raise InvalidTumorError(errors)
    return np.array(rows, dtype=np.float64).reshape(len(records), len(FEATURES))


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a value of type {type(value).__name__}"


def field_errors(data: object, prefix: str = "") -> dict[str, str]:
    """Every rule a parsed-JSON tumor object breaks, keyed by `prefix` + field name."""
    if not isinstance(data, Mapping):
        return {
            prefix.rstrip(".") or "body": f"must be a JSON object with the fields {_field_list()}"
        }
    errors = {
        prefix + name: error
        for name in FEATURES
        if (error := (MISSING_RULE if name not in data else score_error(data[name])))
    }
    for name in data:
        if name not in _FEATURE_SET:
            errors[prefix + str(name)] = f"is not a tumor field; expected only {_field_list()}"
    return errors


def _field_list() -> str:
    return ", ".join(FEATURES)


_FEATURE_SET = frozenset(FEATURES)
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
            values.append([_as_float(item[name]) for name in FEATURES])
    if errors:
        raise InvalidTumorError(errors)
    return np.array(values, dtype=np.float64).reshape(len(items), len(FEATURES))


def _plain_rows(candidates: Sequence[object]) -> np.ndarray | None:
    """The rows if every item is plainly valid (see `validate_rows`), else None."""
    if not candidates:
        return np.empty((0, len(FEATURES)))
    if len(candidates) <= _FEW:
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


_FEW = 8  # up to this many items, a plain loop beats numpy's fixed cost per call


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


def _as_float(score: Score | float) -> float:
    return math.nan if score is None else float(score)


class Tumor:
    """One tumor's nine cytology scores, each an integer 1..10 or None when not measured.

    Construct it positionally in `FEATURES` order, by keyword, or with `Tumor.from_dict`.
    Every bad, missing or unknown field is reported at once in an `InvalidTumorError`.
    """

    __slots__ = FEATURES
    FEATURES: ClassVar[tuple[str, ...]] = FEATURES

    clump_thickness: Score
    uniformity_of_cell_size: Score
    uniformity_of_cell_shape: Score
    marginal_adhesion: Score
    single_epithelial_cell_size: Score
    bare_nuclei: Score
    bland_chromatin: Score
    normal_nucleoli: Score
    mitoses: Score

    def __init__(self, *scores: Score, **named: Score) -> None:
        data: dict[str, Any] = dict(named)
        errors: dict[str, str] = {}
        if len(scores) > len(FEATURES):
            errors["scores"] = f"got {len(scores)} positional scores; a tumor has {len(FEATURES)}"
        for name, score in zip(FEATURES, scores, strict=False):
            if name in data:
                errors[name] = "is given both by position and by keyword"
            data[name] = score
        errors.update(field_errors(data))
        if errors:
            raise InvalidTumorError(errors)
        for name in FEATURES:
            value = data[name]
            object.__setattr__(self, name, None if value is None else int(value))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tumor:
        """Build a tumor from a parsed JSON object with exactly the nine fields."""
        if not isinstance(data, Mapping):  # the constructor checks everything else
            raise InvalidTumorError(field_errors(data))
        return cls(**data)

    def to_dict(self) -> dict[str, Score]:
        """The nine scores by name, as JSON would carry them."""
        return {name: getattr(self, name) for name in FEATURES}

    def to_row(self) -> list[float]:
        """The model's input row: the scores as floats, NaN where not measured."""
        return [_as_float(getattr(self, name)) for name in FEATURES]

    @property
    def missing(self) -> list[str]:
        """Names of the scores that were not measured."""
        return [name for name in FEATURES if getattr(self, name) is None]

    def __iter__(self) -> Iterator[Score]:
        return (getattr(self, name) for name in FEATURES)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Tumor is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tumor):
            return NotImplemented
        return tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return "Tumor(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in FEATURES) + ")"
