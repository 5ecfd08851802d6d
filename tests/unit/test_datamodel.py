"""The datamodel: construction, validation of every bad input, and Prediction mapping.

Some calls here pass deliberately wrong types, to check the errors callers get at run time;
those lines carry `type: ignore` for mypy.
"""

from __future__ import annotations

import enum
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oncology_model.datamodel import FEATURES, InvalidTumorError, Prediction, Tumor
from oncology_model.validation import validate_row, validate_rows

SEED = dict(zip(FEATURES, (4, 1, 2, 1, 2, 1, 1, 1, 1), strict=True))


def test_positional_keyword_and_dict_construction_agree() -> None:
    positional = Tumor(4, 1, 2, 1, 2, 1, 1, 1, 1)
    assert positional == Tumor(**SEED) == Tumor.from_dict(SEED)
    assert positional.clump_thickness == 4
    assert positional.uniformity_of_cell_shape == 2
    assert positional.to_dict() == SEED
    assert list(positional) == [4, 1, 2, 1, 2, 1, 1, 1, 1]


def test_none_means_not_measured() -> None:
    tumor = Tumor.from_dict({**SEED, "bare_nuclei": None})
    assert tumor.bare_nuclei is None
    assert tumor.missing == ["bare_nuclei"]
    assert math.isnan(tumor.to_row()[FEATURES.index("bare_nuclei")])


def test_whole_floats_are_integers() -> None:
    tumor = Tumor.from_dict({**SEED, "mitoses": 5.0})
    assert tumor.mitoses == 5 and type(tumor.mitoses) is int


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (0, "out of range"),
        (11, "out of range"),
        (-3, "out of range"),
        (2.5, "not a whole number"),
        (float("nan"), "not a whole number"),
        (float("inf"), "not a whole number"),
        (1e300, "out of range"),
        ("5", "got a string"),
        (True, "got a boolean"),
        (False, "got a boolean"),
        ([5], "got an array"),
        ({"v": 5}, "got an object"),
    ],
)
def test_each_bad_score_is_named_with_its_rule(value: object, rule: str) -> None:
    with pytest.raises(InvalidTumorError) as caught:
        Tumor.from_dict({**SEED, "mitoses": value})
    assert list(caught.value.errors) == ["mitoses"]
    assert rule in caught.value.errors["mitoses"]
    assert "1 to 10" in caught.value.errors["mitoses"]


class _Grade(enum.IntEnum):
    LOW = 1
    HIGH = 10
    TOO_HIGH = 11


def test_a_score_may_be_any_int_but_a_bool() -> None:
    tumor = Tumor.from_dict({**SEED, "mitoses": _Grade.HIGH})
    assert tumor.mitoses == 10 and type(tumor.mitoses) is int
    with pytest.raises(InvalidTumorError) as caught:
        Tumor.from_dict({**SEED, "mitoses": _Grade.TOO_HIGH})
    assert "11 is out of range" in caught.value.errors["mitoses"]
    with pytest.raises(InvalidTumorError) as caught:
        Tumor.from_dict({**SEED, "mitoses": np.int64(5)})
    assert "got a value of type int64" in caught.value.errors["mitoses"]


def test_every_bad_field_is_reported_at_once() -> None:
    data = {**SEED, "clump_thickness": 0, "mitoses": "5", "bland_chromatin": True}
    del data["normal_nucleoli"]
    data["mitosis"] = 3
    with pytest.raises(InvalidTumorError) as caught:
        Tumor.from_dict(data)
    assert set(caught.value.errors) == {
        "clump_thickness",
        "mitoses",
        "bland_chromatin",
        "normal_nucleoli",
        "mitosis",
    }
    assert caught.value.errors["normal_nucleoli"] == (
        "is required: an integer from 1 to 10, or null when not measured"
    )
    assert "not a tumor field" in caught.value.errors["mitosis"]


def test_constructor_reports_missing_unknown_and_bad_fields() -> None:
    with pytest.raises(InvalidTumorError) as caught:
        Tumor(4, 1, 2, 1, 2, 1, 1, 11, colour=3)  # type: ignore[arg-type]
    assert set(caught.value.errors) == {"normal_nucleoli", "mitoses", "colour"}
    with pytest.raises(InvalidTumorError) as caught:
        Tumor(*range(1, 11))
    assert "scores" in caught.value.errors
    with pytest.raises(InvalidTumorError) as caught:
        Tumor(4, clump_thickness=4)
    assert "both by position and by keyword" in caught.value.errors["clump_thickness"]


def test_not_an_object_is_rejected() -> None:
    with pytest.raises(InvalidTumorError) as caught:
        Tumor.from_dict([4, 1, 2])  # type: ignore[arg-type]
    assert "JSON object" in caught.value.errors["body"]


def test_tumor_is_immutable_and_hashable() -> None:
    tumor = Tumor(*SEED.values())
    with pytest.raises(AttributeError):
        tumor.mitoses = 3  # type: ignore[misc]
    assert len({tumor, Tumor(**SEED)}) == 1


def test_validate_rows_matches_the_datamodel_and_names_paths() -> None:
    good = [SEED, {**SEED, "bare_nuclei": None}, {**SEED, "mitoses": 7.0}]
    rows = validate_rows(good)
    assert rows.shape == (3, 9)
    assert rows[0].tolist() == Tumor(**SEED).to_row()
    assert np.isnan(rows[1, FEATURES.index("bare_nuclei")])
    assert rows[2, FEATURES.index("mitoses")] == 7.0
    bad = [SEED, {**SEED, "mitoses": True}, "x", {**SEED, "clump_thickness": 1.0, "extra": 1}]
    with pytest.raises(InvalidTumorError) as caught:
        validate_rows(bad, "tumors")
    assert set(caught.value.errors) == {"tumors[1].mitoses", "tumors[2]", "tumors[3].extra"}
    assert "boolean" in caught.value.errors["tumors[1].mitoses"]


def test_validate_rows_agrees_with_score_rules_for_every_value() -> None:
    candidates = [None, True, False, 0, 1, 5, 10, 11, 1.0, 10.0, 2.5, "3", -1]
    for value in candidates:
        item = {**SEED, "mitoses": value}
        try:
            Tumor.from_dict(item)
            accepted = True
        except InvalidTumorError:
            accepted = False
        try:
            validate_rows([item])
            fast_accepted = True
        except InvalidTumorError:
            fast_accepted = False
        assert accepted == fast_accepted, value


@pytest.mark.parametrize(
    ("class_id", "expected"), [(2, Prediction.BENIGN), (4, Prediction.MALIGNANT)]
)
def test_prediction_from_class(class_id: int, expected: Prediction) -> None:
    assert Prediction.from_class(class_id) is expected


@pytest.mark.parametrize("class_id", [0, 1, 3, 5, True, "2"])
def test_prediction_from_unknown_class_names_the_value(class_id: object) -> None:
    with pytest.raises(ValueError, match=repr(class_id)):
        Prediction.from_class(class_id)  # type: ignore[arg-type]


def test_prediction_from_classifier() -> None:
    assert Prediction.from_classifier(0) is Prediction.BENIGN
    assert Prediction.from_classifier(1) is Prediction.MALIGNANT
    assert Prediction.from_classifier(np.int64(1)) is Prediction.MALIGNANT  # type: ignore[arg-type]
    for bad in (2, -1, True, None):
        with pytest.raises(ValueError, match="unknown classifier label"):
            Prediction.from_classifier(bad)  # type: ignore[arg-type]
    assert Prediction.BENIGN.value == "benign" and Prediction.MALIGNANT.value == "malignant"


_SCORE_VALUES = st.one_of(
    st.integers(min_value=-3, max_value=14),
    st.none(),
    st.booleans(),
    st.sampled_from([1.0, 10.0, 2.5, float("nan"), float("inf"), 10**400, "5", [1], {}]),
)
_TUMORS = st.one_of(
    st.fixed_dictionaries({name: _SCORE_VALUES for name in FEATURES}),
    st.fixed_dictionaries({name: st.integers(1, 10) | st.none() for name in FEATURES}),
    st.dictionaries(st.sampled_from([*FEATURES, "mitosis", "x"]), _SCORE_VALUES, max_size=10),
    st.sampled_from(["tumor", 5, None, [1, 2]]),
)


def _rekeyed(item: dict[str, object], order: list[str]) -> dict[str, object]:
    """`item` with its keys in `order`, each key a string object of its own."""
    return {name.encode().decode(): item[name] for name in order}


_VALID = st.fixed_dictionaries({n: st.integers(1, 10) for n in FEATURES})
# Valid tumors as other clients and parsers send them: fields in any order, keys not shared.
_REKEYED = st.builds(_rekeyed, _VALID, st.permutations(FEATURES))
# Valid tumors but for one score that bytes take for an int from 0 to 255, or nearly.
_INT_LIKE = st.builds(
    lambda item, name, value: {**item, name: value},
    _VALID,
    st.sampled_from(FEATURES),
    st.sampled_from(
        [True, False, np.int64(5), np.bool_(True), _Grade.LOW, _Grade.TOO_HIGH, 0, 255, 256]
    ),
)


@given(
    st.one_of(
        st.lists(_TUMORS, min_size=1, max_size=8),  # the few-items pass
        st.lists(_TUMORS, min_size=9, max_size=30),  # the whole-list pass
        st.lists(_REKEYED | _TUMORS, min_size=9, max_size=30),
        st.lists(_INT_LIKE | _VALID, min_size=9, max_size=30),
        st.lists(_VALID, min_size=9),
    )
)
@settings(max_examples=600, deadline=None)
def test_validate_rows_equals_the_datamodel_item_by_item(items: list[object]) -> None:
    """The batch path (with its all-at-once fast pass) agrees with Tumor.from_dict on every item."""
    expected_rows, expected_errors = [], {}
    for i, item in enumerate(items):
        try:
            expected_rows.append(Tumor.from_dict(item).to_row())  # type: ignore[arg-type]
        except InvalidTumorError as error:
            prefix = f"tumors[{i}]."
            for key, rule in error.errors.items():
                expected_errors[prefix + key if key != "body" else f"tumors[{i}]"] = rule
    if expected_errors:
        with pytest.raises(InvalidTumorError) as caught:
            validate_rows(items, "tumors")
        assert caught.value.errors == expected_errors
    else:
        np.testing.assert_array_equal(validate_rows(items, "tumors"), np.array(expected_rows))


@given(_TUMORS | _REKEYED | _INT_LIKE)
@settings(max_examples=600, deadline=None)
def test_validate_row_equals_validate_rows_for_one_item(item: object) -> None:
    """A single prediction's path without numpy gives the batch path's row (as plain numbers,
    NaN for null) or the same errors."""
    try:
        expected = validate_rows([item])[0]
    except InvalidTumorError as error:
        with pytest.raises(InvalidTumorError) as caught:
            validate_row(item)
        assert caught.value.errors == error.errors
        return
    row = validate_row(item)
    assert type(row) is list
    assert all(type(value) in (int, float) for value in row), row
    np.testing.assert_array_equal(np.array(row), expected)
