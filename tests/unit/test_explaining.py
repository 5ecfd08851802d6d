"""Explanations: exact Shapley values of the malignant probability, which add up."""

from __future__ import annotations

from collections.abc import Callable
from itertools import permutations

import numpy as np
import pytest

from oncology_model import Classifier
from oncology_model.explaining import CHUNK, exact_shapley


def shapley_by_orderings(
    value: Callable[[np.ndarray], np.ndarray], row: np.ndarray, baseline: np.ndarray
) -> np.ndarray:
    """The textbook definition: each feature's mean marginal change over every joining order."""
    k = len(row)
    totals = np.zeros(k)
    orders = list(permutations(range(k)))
    for order in orders:
        current = baseline.astype(np.float64).copy()
        before = value(current[np.newaxis])[0]
        for feature in order:
            current[feature] = row[feature]
            after = value(current[np.newaxis])[0]
            totals[feature] += after - before
            before = after
    return totals / len(orders)


def nonlinear(rows: np.ndarray) -> np.ndarray:
    """A model with interactions, so that the weights of every coalition size matter."""
    x = rows.astype(np.float64)
    return np.tanh(0.3 * x[:, 0] * x[:, 1] - x[:, 2] + 0.1 * x[:, 3] ** 2)


def test_matches_the_definition_over_every_ordering() -> None:
    row, baseline = np.array([3.0, 7.0, 2.0, 9.0]), np.array([1.0, 2.0, 5.0, 4.0])
    exact = exact_shapley(nonlinear, row[np.newaxis], baseline)[0]
    np.testing.assert_allclose(exact, shapley_by_orderings(nonlinear, row, baseline), atol=1e-6)


def test_symmetric_features_get_equal_shares() -> None:
    def symmetric_in_0_and_1(rows: np.ndarray) -> np.ndarray:
        x = rows.astype(np.float64)
        return 1 / (1 + np.exp(-(x[:, 0] * x[:, 1] + x[:, 0] + x[:, 1] - 3 * x[:, 2])))

    values = exact_shapley(symmetric_in_0_and_1, np.array([[6.0, 6.0, 2.0]]), np.ones(3))[0]
    assert values[0] == pytest.approx(values[1], abs=1e-9)
    assert values[0] > 0.01


def test_a_feature_the_model_ignores_gets_zero() -> None:
    values = exact_shapley(nonlinear, np.array([[3.0, 7.0, 2.0, 9.0, 8.0]]), np.ones(5))[0]
    assert abs(values[4]) < 1e-12  # nonlinear never reads feature 4 (0 up to float rounding)
    assert np.all(np.abs(values[:4]) > 1e-3)


def test_contributions_add_up_to_the_probability_minus_the_baseline(
    classifier: Classifier,
) -> None:
    rng = np.random.default_rng(11)
    rows = rng.integers(1, 11, size=(300, 9)).astype(float)
    rows[rng.random(rows.shape) < 0.05] = np.nan
    contributions = classifier.contributions(rows)
    expected = classifier.malignant_probabilities(rows) - classifier.baseline_probability
    np.testing.assert_allclose(contributions.sum(axis=1), expected, atol=1e-6, rtol=0)


def test_scores_at_the_median_or_missing_contribute_nothing(classifier: Classifier) -> None:
    row = np.array([10, 1, 2, 1, 2, np.nan, 1, 1, 1], dtype=float)
    at_median = np.flatnonzero(row == classifier.medians)
    assert len(at_median) >= 3
    contributions = classifier.contributions(row)[0]
    assert np.all(np.abs(contributions[at_median]) < 1e-12)
    assert abs(contributions[5]) < 1e-12  # bare_nuclei not measured: imputed with the median
    assert contributions[0] > 0.01  # a high clump thickness raises the risk


def test_a_clearly_malignant_tumor_has_large_contributions(classifier: Classifier) -> None:
    row = np.full((1, 9), 10.0)
    probability = classifier.malignant_probabilities(row)[0]
    assert probability > 0.999
    contributions = classifier.contributions(row)[0]
    assert contributions.max() > 0.2  # not "no field mattered", as one-at-a-time deltas said
    assert np.all(contributions > 0)
    assert contributions.sum() == pytest.approx(probability - classifier.baseline_probability)
    assert classifier.baseline_probability < 0.1


def test_one_engine_call_per_chunk_and_chunks_change_nothing(classifier: Classifier) -> None:
    calls: list[int] = []

    def counted(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return classifier.malignant_probabilities(rows)

    rows = np.random.default_rng(5).integers(1, 11, size=(CHUNK + 3, 9)).astype(float)
    together = exact_shapley(counted, rows, classifier.medians)
    assert calls == [CHUNK * 512, 3 * 512]
    calls.clear()
    exact_shapley(counted, rows[:1], classifier.medians)
    assert calls == [512]
    np.testing.assert_array_equal(together[-3:], classifier.contributions(rows[-3:]))
