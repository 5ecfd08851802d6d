"""DataFrames in and out: `Classifier.predict_frame` answers as the JSON API does."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from flask.testing import FlaskClient

from oncology_model import FEATURES, Classifier, InvalidTumorError
from oncology_model.dataset import load_dataset
from tests.helpers import SEED_JSON, json_tumors, tumors_frame


def test_frame_answers_equal_the_json_api(classifier: Classifier, client: FlaskClient) -> None:
    frame = tumors_frame()
    answers = classifier.predict_frame(frame, explain=True)
    response = client.post(
        "/v1/predictions/batch?explain=true", json={"tumors": json_tumors(frame)}
    )
    expected = response.get_json()["predictions"]
    assert answers.index.equals(frame.index)
    assert list(answers.columns[:3]) == ["prediction", "malignant_probability", "imputed"]
    assert answers["prediction"].tolist() == [p["prediction"] for p in expected]
    np.testing.assert_allclose(
        answers["malignant_probability"], [p["probabilities"]["malignant"] for p in expected],
        atol=1e-6, rtol=0,
    )  # fmt: skip
    assert answers["imputed"].tolist() == [";".join(p["imputed"]) for p in expected]
    for name in FEATURES:
        np.testing.assert_allclose(
            answers[f"contribution_{name}"], [p["contributions"][name] for p in expected],
            atol=1e-6, rtol=0,
        )  # fmt: skip
    assert answers.attrs["model_version"] == expected[0]["model_version"]
    assert answers.attrs["threshold"] == expected[0]["threshold"]
    assert "contribution_mitoses" not in classifier.predict_frame(frame).columns


def test_frame_of_the_training_data_matches_the_classifier(classifier: Classifier) -> None:
    data = load_dataset()
    frame = pd.DataFrame(data.X, columns=list(FEATURES))
    answers = classifier.predict_frame(frame)
    probabilities = classifier.malignant_probabilities(data.X)
    np.testing.assert_allclose(answers["malignant_probability"], probabilities, atol=5e-7, rtol=0)
    assert ((answers["prediction"] == "malignant") == (probabilities >= classifier.threshold)).all()
    assert (answers["imputed"] != "").sum() == 16


@pytest.mark.parametrize(
    "column",
    [
        pd.array([1, None, 10], dtype="Int64"),
        pd.Series([1, None, 10], dtype=object),
        pd.Series([1.0, np.nan, 10.0]),
        pd.Series([np.int8(1), None, np.int64(10)], dtype=object),
    ],
)
def test_missing_scores_in_any_dtype(classifier: Classifier, column: object) -> None:
    frame = pd.DataFrame({name: [5, 5, 5] for name in FEATURES})
    frame["mitoses"] = column
    answers = classifier.predict_frame(frame)
    assert answers["imputed"].tolist() == ["", "mitoses", ""]


def test_bad_cells_are_named_by_row_label_and_column_all_at_once(classifier: Classifier) -> None:
    frame = pd.DataFrame({name: [5, 5, 5] for name in FEATURES}, index=["a", "b", "c"])
    frame["mitoses"] = [11, 2.5, "x"]
    frame["clump_thickness"] = pd.Series([True, False, True], index=frame.index)
    frame["bare_nuclei"] = [0.0, np.inf, 3.0]
    with pytest.raises(InvalidTumorError) as caught:
        classifier.predict_frame(frame)
    errors = caught.value.errors
    assert set(errors) == {
        "row a.mitoses", "row b.mitoses", "row c.mitoses",
        "row a.clump_thickness", "row b.clump_thickness", "row c.clump_thickness",
        "row a.bare_nuclei", "row b.bare_nuclei",
    }  # fmt: skip
    assert "out of range" in errors["row a.mitoses"]
    assert "not a whole number" in errors["row b.mitoses"]
    assert "'x' is not a number" in errors["row c.mitoses"]
    assert "boolean" in errors["row a.clump_thickness"]
    assert "out of range" in errors["row a.bare_nuclei"]


def test_text_columns_blame_only_their_bad_cells(classifier: Classifier) -> None:
    """One `abc` makes pandas read the whole column as text: the good cells are still read as
    the numbers they stand for (the CSV reader's rules), and only the bad one is named."""
    header = ",".join(["sample_code_number", *FEATURES])
    text = "\n".join(
        [header, "P-1,4,1,2,1,2,?,1,1,1", "P-2,abc,1,1,1,2,1,1,1,1", "P-3, 10 ,1,1,1,2,,1,1,1"]
    )
    frame = pd.read_csv(io.StringIO(text), index_col="sample_code_number")
    assert not pd.api.types.is_numeric_dtype(frame["clump_thickness"])
    with pytest.raises(InvalidTumorError) as caught:
        classifier.predict_frame(frame)
    assert caught.value.errors == {
        "row P-2.clump_thickness": "'abc' is not a number: must be an integer from 1 to 10, "
        "or null when not measured"
    }
    good = frame.drop(index="P-2")
    numbers = pd.DataFrame(
        [[4, 1, 2, 1, 2, np.nan, 1, 1, 1], [10, 1, 1, 1, 2, np.nan, 1, 1, 1]],
        columns=list(FEATURES),
        index=pd.Index(["P-1", "P-3"], name="sample_code_number"),
    )
    expected = classifier.predict_frame(numbers)
    answers = classifier.predict_frame(good)
    pd.testing.assert_frame_equal(answers, expected)
    assert answers.loc["P-1", "malignant_probability"] == 0.012068


def test_repeated_labels_are_told_apart_by_position(classifier: Classifier) -> None:
    frame = pd.DataFrame({name: [5, 0, 0] for name in FEATURES}, index=[7, 7, 8])
    with pytest.raises(InvalidTumorError) as caught:
        classifier.predict_frame(frame)
    assert "row 7 (position 1).clump_thickness" in caught.value.errors
    assert "row 8 (position 2).mitoses" in caught.value.errors


def test_missing_columns_are_named(classifier: Classifier) -> None:
    frame = (
        pd.DataFrame([SEED_JSON])
        .drop(columns=["mitoses"])
        .rename(columns={"clump_thickness": "ct"})
    )
    with pytest.raises(InvalidTumorError) as caught:
        classifier.predict_frame(frame)
    assert set(caught.value.errors) == {"mitoses", "clump_thickness"}


def test_empty_frame_gives_an_empty_answer(classifier: Classifier) -> None:
    answers = classifier.predict_frame(pd.DataFrame(columns=list(FEATURES)), explain=True)
    assert len(answers) == 0 and "contribution_mitoses" in answers.columns
