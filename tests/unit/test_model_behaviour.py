"""What the model must do whatever the training run: clinical sanity, monotonicity, figures."""

from __future__ import annotations

import itertools

import numpy as np

from oncology_model import Classifier, Prediction, Tumor


def test_clearly_malignant_profile(classifier: Classifier) -> None:
    assert classifier.predict(Tumor(*[10] * 9)) == Prediction.MALIGNANT
    assert classifier.predict_proba(Tumor(*[10] * 9))[Prediction.MALIGNANT] > 0.99


def test_clearly_benign_profile(classifier: Classifier) -> None:
    assert classifier.predict(Tumor(*[1] * 9)) == Prediction.BENIGN


def test_raising_any_score_never_lowers_the_malignant_probability(classifier: Classifier) -> None:
    levels = (1, 4, 7, 10)
    grid = np.array(list(itertools.product(levels, repeat=9)), dtype=float)  # 262,144 tumors
    base = classifier.malignant_probabilities(grid)
    for feature in range(9):
        raised = grid.copy()
        raised[:, feature] = np.minimum(raised[:, feature] + 3, 10)
        higher = classifier.malignant_probabilities(raised)
        # float32 inference: allow rounding noise, never a real decrease
        assert (higher >= base - 1e-6).all(), f"feature {feature} lowers the probability"


def test_cross_validation_figures_meet_the_targets(classifier: Classifier) -> None:
    figures = classifier.metadata["cross_validation"]["chosen"]
    assert figures["roc_auc"]["mean"] >= 0.99
    assert figures["sensitivity"]["mean"] >= 0.97
    assert figures["accuracy"]["mean"] >= 0.96
    for name in ("roc_auc", "accuracy", "sensitivity", "specificity", "brier"):
        assert figures[name]["std"] > 0  # a real spread over the folds
