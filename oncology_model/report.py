"""The training report: every figure as JSON, plus ROC, calibration and confusion-matrix plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers or in CI

import matplotlib.pyplot as plt
import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

from oncology_model.integrity import write_json


def write_report(
    directory: Path,
    metadata: dict[str, Any],
    results: dict[str, dict[str, Any]],
    pooled_y: np.ndarray,
    pooled_p: np.ndarray,
    chosen_folds: list[dict[str, Any]],
) -> None:
    """Write report.json, roc_curve.png, calibration_curve.png and confusion_matrix.png."""
    directory.mkdir(parents=True, exist_ok=True)
    threshold = metadata["threshold"]
    confusion = _confusion(pooled_y, pooled_p >= threshold)
    write_json(
        directory / "report.json",
        {
            "model_version": metadata["model_version"],
            "chosen": metadata["candidate"],
            "threshold": threshold,
            "cross_validation": metadata["cross_validation"],
            "per_fold": {name: r["folds"] for name, r in results.items()},
            "pooled_out_of_fold_confusion_matrix": confusion,
            "training_data": metadata["training_data"],
        },
    )
    _roc_plot(directory / "roc_curve.png", chosen_folds, metadata)
    _calibration_plot(directory / "calibration_curve.png", pooled_y, pooled_p)
    _confusion_plot(directory / "confusion_matrix.png", confusion, threshold)


def _confusion(y: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    return {
        "true_benign": int(np.sum((y == 0) & ~predicted)),
        "false_malignant": int(np.sum((y == 0) & predicted)),
        "false_benign": int(np.sum((y == 1) & ~predicted)),
        "true_malignant": int(np.sum((y == 1) & predicted)),
    }


def _roc_plot(path: Path, folds: list[dict[str, Any]], metadata: dict[str, Any]) -> None:
    figure, axes = plt.subplots(figsize=(5, 5))
    for fold in folds:
        fpr, tpr, _ = roc_curve(fold["y"], fold["p"])
        axes.plot(fpr, tpr, color="tab:blue", alpha=0.25, linewidth=1)
    auc = metadata["cross_validation"]["chosen"]["roc_auc"]
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    axes.set(
        xlabel="1 - specificity",
        ylabel="sensitivity",
        title=f"ROC per validation fold (AUC {auc['mean']:.4f} ± {auc['std']:.4f})",
    )
    _save(figure, path)


def _calibration_plot(path: Path, y: np.ndarray, p: np.ndarray) -> None:
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    axes.plot(predicted, observed, marker="o")
    axes.set(
        xlabel="predicted malignant probability",
        ylabel="observed malignant fraction",
        title="Calibration (pooled out-of-fold)",
    )
    _save(figure, path)


def _confusion_plot(path: Path, confusion: dict[str, int], threshold: float) -> None:
    matrix = np.array(
        [
            [confusion["true_benign"], confusion["false_malignant"]],
            [confusion["false_benign"], confusion["true_malignant"]],
        ]
    )
    figure, axes = plt.subplots(figsize=(5, 4.5))
    axes.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=color)
    axes.set_xticks([0, 1], ["benign", "malignant"])
    axes.set_yticks([0, 1], ["benign", "malignant"])
    axes.set(
        xlabel="predicted",
        ylabel="actual",
        title=f"Pooled out-of-fold, threshold {threshold:.3f}",
    )
    _save(figure, path)


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
