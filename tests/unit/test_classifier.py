"""The Classifier: verified loading, and ONNX predictions equal to the joblib reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from oncology_model import ArtifactError, Classifier, Prediction, Tumor
from oncology_model.dataset import load_dataset
from oncology_model.integrity import JOBLIB_FILE, METADATA_FILE, ONNX_FILE
from oncology_model.reference import load_reference_pipeline
from oncology_model.verify import SEED_TUMOR


def test_seed_tumor_is_benign(classifier: Classifier) -> None:
    assert classifier.predict(SEED_TUMOR) == Prediction.BENIGN


def test_predict_applies_the_chosen_threshold(classifier: Classifier) -> None:
    assert 0 < classifier.threshold <= 0.5
    probabilities = classifier.malignant_probabilities(load_dataset().X)
    between = (probabilities >= classifier.threshold) & (probabilities < 0.5)
    assert between.any(), "no training row lies between the threshold and 0.5"
    tumors = [Tumor(*(None if np.isnan(v) else int(v) for v in row)) for row in load_dataset().X]
    predicted = classifier.predict_many(tumors)
    for index in np.flatnonzero(between):
        assert predicted[index] == Prediction.MALIGNANT


def test_predict_proba_sums_to_one(classifier: Classifier) -> None:
    probabilities = classifier.predict_proba(SEED_TUMOR)
    assert set(probabilities) == {Prediction.BENIGN, Prediction.MALIGNANT}
    assert probabilities[Prediction.BENIGN] + probabilities[Prediction.MALIGNANT] == pytest.approx(
        1
    )
    assert probabilities[Prediction.MALIGNANT] < classifier.threshold


def test_predict_many_equals_predict_one_by_one(classifier: Classifier) -> None:
    tumors = [SEED_TUMOR, Tumor(*[10] * 9), Tumor(5, 4, 4, 5, 7, None, 3, 2, 1)]
    assert classifier.predict_many(tumors) == [classifier.predict(t) for t in tumors]
    assert classifier.predict_many([]) == []


def test_onnx_equals_joblib_reference_on_training_rows(classifier: Classifier) -> None:
    reference = load_reference_pipeline()
    X = load_dataset().X
    expected = reference.predict_proba(X)[:, 1]
    actual = classifier.malignant_probabilities(X)
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)
    threshold = classifier.threshold
    assert np.array_equal(actual >= threshold, expected >= threshold)


def test_onnx_equals_joblib_reference_on_random_inputs(classifier: Classifier) -> None:
    rng = np.random.default_rng(7)
    X = rng.integers(1, 11, size=(20_000, 9)).astype(float)
    X[rng.random(X.shape) < 0.05] = np.nan  # some scores not measured
    expected = load_reference_pipeline().predict_proba(X)[:, 1]
    actual = classifier.malignant_probabilities(X)
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)
    assert np.array_equal(actual >= classifier.threshold, expected >= classifier.threshold)


def test_tampered_model_is_refused_naming_the_file(artifacts_copy: Path) -> None:
    model = artifacts_copy / ONNX_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"{ONNX_FILE}.*fails verification"):
        Classifier(artifacts_dir=artifacts_copy)


def test_truncated_model_is_refused(artifacts_copy: Path) -> None:
    model = artifacts_copy / ONNX_FILE
    model.write_bytes(model.read_bytes()[:100])
    with pytest.raises(ArtifactError, match=ONNX_FILE):
        Classifier(artifacts_dir=artifacts_copy)


def test_missing_model_is_refused(artifacts_copy: Path) -> None:
    (artifacts_copy / ONNX_FILE).unlink()
    with pytest.raises(ArtifactError, match=rf"{ONNX_FILE} is missing"):
        Classifier(artifacts_dir=artifacts_copy)


def test_missing_metadata_is_refused(artifacts_copy: Path) -> None:
    (artifacts_copy / METADATA_FILE).unlink()
    with pytest.raises(ArtifactError, match=rf"{METADATA_FILE} is missing"):
        Classifier(artifacts_dir=artifacts_copy)


def test_tampered_reference_is_never_unpickled(artifacts_copy: Path) -> None:
    (artifacts_copy / JOBLIB_FILE).write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(ArtifactError, match=rf"{JOBLIB_FILE}.*fails verification"):
        load_reference_pipeline(artifacts_dir=artifacts_copy)


def edit_metadata(directory: Path, section: str, key: str, value: str) -> None:
    path = directory / METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata[section][key] = value
    path.write_text(json.dumps(metadata))


def test_incompatible_engine_version_is_refused(artifacts_copy: Path) -> None:
    edit_metadata(artifacts_copy, "engine", "min_version", "99.0")
    with pytest.raises(ArtifactError, match=r"needs onnxruntime >= 99.0"):
        Classifier(artifacts_dir=artifacts_copy)


def test_reference_needs_the_same_scikit_learn(artifacts_copy: Path) -> None:
    edit_metadata(artifacts_copy, "reference", "scikit_learn", "0.1")
    with pytest.raises(ArtifactError, match=r"scikit-learn 0.1"):
        load_reference_pipeline(artifacts_dir=artifacts_copy)


def test_one_row_at_a_time_equals_the_batch(classifier: Classifier) -> None:
    """Single rows take a pre-bound path through the engine; it agrees with batches (float32
    kernels for one row and for many may round differently in the 7th digit)."""
    rows = np.random.default_rng(11).integers(1, 11, size=(300, 9)).astype(float)
    rows[::4, 5] = np.nan
    batch = classifier.malignant_probabilities(rows)
    one_by_one = np.concatenate([classifier.malignant_probabilities(row[None, :]) for row in rows])
    np.testing.assert_allclose(one_by_one, batch, atol=1e-6, rtol=0)
    assert np.array_equal(one_by_one >= classifier.threshold, batch >= classifier.threshold)
    # The plain-Python entry (a single prediction's): Python floats, the batch's figures.
    plain = [classifier.malignant_probability(row) for row in rows.tolist()]
    assert all(type(p) is float for p in plain)
    np.testing.assert_allclose(plain, batch, atol=1e-6, rtol=0)
    assert np.array_equal(np.array(plain) >= classifier.threshold, batch >= classifier.threshold)
