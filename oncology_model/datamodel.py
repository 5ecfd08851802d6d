"""The datamodel: a `Tumor` (nine cytology scores), its `Prediction`, and the rules.

The rules live here, once, for every caller: `score_error` (a score), `field_errors` (a parsed-JSON
tumor object), `cell_value` and `cell_error` (a CSV cell, which is text), all reporting every bad
field at once in an `InvalidTumorError`. The `Tumor` constructor and `Tumor.from_dict` apply them;
`oncology_model.validation` applies them to many tumors at once, with fast paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any, ClassVar

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


def as_float(score: Score | float) -> float:
    """A score as the model reads it: a float, NaN where not measured."""
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
        return [as_float(getattr(self, name)) for name in FEATURES]

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
