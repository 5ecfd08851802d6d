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
    _calibration_plot(
        directory / "calibration_curve.png", pooled_y, pooled_p, metadata, chosen_folds
    )
    _confusion_plot(directory / "confusion_matrix.png", confusion, metadata, chosen_folds)


def _confusion(y: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    return {
        "true_benign": int(np.sum((y == 0) & ~predicted)),
        "false_malignant": int(np.sum((y == 0) & predicted)),
        "false_benign": int(np.sum((y == 1) & ~predicted)),
        "true_malignant": int(np.sum((y == 1) & predicted)),
    }


def _subject(metadata: dict[str, Any], folds: list[dict[str, Any]], pooled: int) -> str:
    """Which model a plot shows and what it pools, as a second title line."""
    repeats = len({fold["repeat"] for fold in folds})
    rows = metadata["training_data"]["rows"]
    return (
        f"{metadata['candidate'].replace('_', ' ')} (chosen), model {metadata['model_version']}\n"
        f"out-of-fold: {repeats} repeats x {len(folds) // repeats} folds, "
        f"{pooled:,} = {repeats} x {rows} predictions"
    )


def _roc_plot(path: Path, folds: list[dict[str, Any]], metadata: dict[str, Any]) -> None:
    figure, panels = plt.subplots(1, 2, figsize=(10, 5.2))
    auc = metadata["cross_validation"]["chosen"]["roc_auc"]
    y = np.concatenate([fold["y"] for fold in folds])
    p = np.concatenate([fold["p"] for fold in folds])
    at_threshold = p >= metadata["threshold"]
    operating_point = (np.mean(at_threshold[y == 0]), np.mean(at_threshold[y == 1]))
    pooled_fpr, pooled_tpr, _ = roc_curve(y, p)
    for axes, zoomed in zip(panels, (False, True), strict=True):
        for index, fold in enumerate(folds):
            fpr, tpr, _ = roc_curve(fold["y"], fold["p"])
            label = f"each of the {len(folds)} validation folds" if index == 0 else None
            axes.plot(fpr, tpr, color="tab:blue", alpha=0.25, linewidth=1, label=label)
        axes.plot(pooled_fpr, pooled_tpr, color="black", linewidth=1.5, label="pooled")
        axes.plot(
            *operating_point,
            marker="o",
            color="tab:red",
            linestyle="none",
            label=f"threshold {metadata['threshold']:.3f} (pooled)",
        )
        axes.set(xlabel="1 - specificity (false alarms)", ylabel="sensitivity")
        if zoomed:
            axes.set(xlim=(0, 0.2), ylim=(0.8, 1.0), title="Zoom into the grey box")
        else:
            axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
            axes.set(
                xlim=(0, 1),
                ylim=(0, 1.01),
                title=f"ROC, AUC per fold {auc['mean']:.4f} ± {auc['std']:.4f}",
            )
            axes.indicate_inset((0, 0.8, 0.2, 0.2), edgecolor="grey")
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right", fontsize="small")
    figure.suptitle(_subject(metadata, folds, len(y)), fontsize="medium")
    _save(figure, path)


def _calibration_plot(
    path: Path, y: np.ndarray, p: np.ndarray, metadata: dict[str, Any], folds: list[dict[str, Any]]
) -> None:
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    figure, axes = plt.subplots(figsize=(5.5, 5.5))
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    axes.plot(predicted, observed, marker="o", label="10 bins of equal count")
    axes.set(
        xlabel="predicted malignant probability",
        ylabel="observed malignant fraction",
        title="Calibration, pooled",
    )
    axes.legend(loc="upper left", fontsize="small")
    figure.suptitle(_subject(metadata, folds, len(y)), fontsize="medium")
    _save(figure, path)


def _confusion_plot(
    path: Path, confusion: dict[str, int], metadata: dict[str, Any], folds: list[dict[str, Any]]
) -> None:
    matrix = np.array(
        [
            [confusion["true_benign"], confusion["false_malignant"]],
            [confusion["false_benign"], confusion["true_malignant"]],
        ]
    )
    figure, axes = plt.subplots(figsize=(5.5, 5))
    axes.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        share = count / matrix[row].sum()
        axes.text(column, row, f"{count:,}\n({share:.1%} of row)", ha="center", va="center",
                  color=color)  # fmt: skip
    axes.set_xticks([0, 1], ["benign", "malignant"])
    axes.set_yticks([0, 1], ["benign", "malignant"])
    axes.set(
        xlabel="predicted",
        ylabel="actual",
        title=f"Confusion at threshold {metadata['threshold']:.3f}, pooled",
    )
    figure.suptitle(_subject(metadata, folds, int(matrix.sum())), fontsize="medium")
    _save(figure, path)


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
