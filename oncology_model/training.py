"""Train, evaluate honestly, and export the model (`oncology-train`: `oncology_model.training_cli`).

1. Every candidate is evaluated by repeated, stratified cross-validation grouped by
   `sample_code_number` (ids repeat in this data; a sample never sits on both sides of a split).
   Each candidate is a full pipeline: median imputation, the model, and Platt (sigmoid)
   calibration fitted on grouped inner folds of the training part only.
2. Selection rule: the highest mean ROC AUC wins; candidates within `AUC_TIE` of it count as tied
   and the simplest of them (earliest in `CANDIDATES`) is chosen.
3. Threshold: the largest malignant-probability threshold whose pooled out-of-fold sensitivity
   reaches `TARGET_SENSITIVITY` (missing a cancer costs more than a false alarm); never above 0.5.
   Threshold-dependent figures of each fold use a threshold chosen without that fold's labels.
4. The chosen pipeline is refitted on all rows and saved as joblib (the reference) and ONNX (what
   is served), with `metadata.json` holding the hashes, versions, threshold and CV figures, and
   the training distribution that drift monitoring compares live traffic with.

Determinism: seeds are fixed and the outputs are written in a fixed form, so the same data, seed
and library versions give byte-identical `model.onnx` and `model.joblib`, on any x86-64 machine
(the command pins OpenBLAS's kernel: `training_cli.PINNED_BLAS`). The one varying field is the
training date in `metadata.json`; set SOURCE_DATE_EPOCH to fix it too.
"""

from __future__ import annotations

import io
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnxruntime
import skl2onnx
import sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from oncology_model.datamodel import FEATURE_DESCRIPTIONS, FEATURES, SCORE_MAX, SCORE_MIN
from oncology_model.dataset import (
    FINGERPRINT,
    Dataset,
    row_fingerprints,
)
from oncology_model.drift import METADATA_KEY as DRIFT_REFERENCE
from oncology_model.drift import drift_reference
from oncology_model.integrity import (
    JOBLIB_FILE,
    METADATA_FILE,
    METADATA_FORMAT,
    ONNX_FILE,
    ArtifactError,
    sha256_of,
    write_json,
)

SEED = 20261121
N_SPLITS = 5
N_REPEATS = 5
N_CALIBRATION_SPLITS = 3
AUC_TIE = 0.002
TARGET_SENSITIVITY = 0.98
ONNX_OPSET = 17
ONNX_INPUT = "tumors"
ONNX_OUTPUT = "probabilities"
METRICS = ("roc_auc", "accuracy", "sensitivity", "specificity", "brier")


@dataclass(frozen=True)
class Candidate:
    name: str
    algorithm: str
    make: Callable[[int], ClassifierMixin]
    scale: bool = False  # standardise the scores first (outside the calibrator: see build_pipeline)


CANDIDATES: tuple[Candidate, ...] = (
    Candidate(
        "logistic_regression",
        "L2-regularised logistic regression on standardised scores",
        lambda seed: LogisticRegression(C=1.0, max_iter=1000),
        scale=True,
    ),
    Candidate(
        "random_forest",
        "random forest of 100 trees, monotonically increasing in every score",
        lambda seed: RandomForestClassifier(
            n_estimators=100,
            min_samples_leaf=2,
            monotonic_cst=[1] * len(FEATURES),
            random_state=seed,
            n_jobs=1,
        ),
    ),
)


def build_pipeline(candidate: Candidate, groups: np.ndarray, y: np.ndarray, seed: int) -> Pipeline:
    """Imputation (+ scaling) + calibrated model; calibration folds are grouped like the CV.

    The calibrator wraps the bare model, never a pipeline: skl2onnx calibrates a pipeline's
    probabilities where scikit-learn calibrates its decision function, and the two would differ.
    """
    splits = list(
        StratifiedGroupKFold(N_CALIBRATION_SPLITS, shuffle=True, random_state=seed).split(
            np.zeros((len(y), 1)), y, groups
        )
    )
    scaling = [("scale", StandardScaler())] if candidate.scale else []
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            *scaling,
            (
                "calibrated",
                CalibratedClassifierCV(
                    candidate.make(seed), method="sigmoid", cv=splits, ensemble=False
                ),
            ),
        ]
    )


def out_of_fold(candidate: Candidate, data: Dataset, seed: int) -> list[dict[str, Any]]:
    """Malignant probabilities for every validation fold of the repeated grouped CV.

    The folds are fitted in parallel on every core the process may use (joblib's processes: the
    forest's many small fits hold the GIL too long for threads to help). Each fold is seeded on its
    own and the results come back in order, so they do not depend on the number of cores.
    """
    splits = [
        (repeat, train, valid)
        for repeat in range(N_REPEATS)
        for train, valid in StratifiedGroupKFold(
            N_SPLITS, shuffle=True, random_state=seed + repeat
        ).split(data.X, data.y, data.sample_ids)
    ]

    def fold(repeat: int, train: np.ndarray, valid: np.ndarray) -> dict[str, Any]:
        pipeline = build_pipeline(candidate, data.sample_ids[train], data.y[train], seed)
        pipeline.fit(data.X[train], data.y[train])
        return {
            "repeat": repeat,
            "y": data.y[valid],
            "p": pipeline.predict_proba(data.X[valid])[:, 1],
        }

    return list(joblib.Parallel(n_jobs=-1)(
        joblib.delayed(fold)(*split) for split in splits
    ))  # fmt: skip


def choose_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The largest threshold (<= 0.5) at which `p >= threshold` finds TARGET_SENSITIVITY of y."""
    malignant = np.sort(p[y == 1])
    allowed_misses = int(np.floor((1 - TARGET_SENSITIVITY) * len(malignant)))
    return float(min(0.5, malignant[allowed_misses]))


def fold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = p >= threshold
    positives, negatives = y == 1, y == 0
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "accuracy": float(np.mean(predicted == positives)),
        "sensitivity": float(np.mean(predicted[positives])),
        "specificity": float(np.mean(~predicted[negatives])),
        "brier": float(brier_score_loss(y, p)),
    }


def evaluate(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-fold figures, each fold's threshold chosen on the other folds of its repeat."""
    per_fold = []
    for fold in folds:
        others = [f for f in folds if f["repeat"] == fold["repeat"] and f is not fold]
        threshold = choose_threshold(
            np.concatenate([f["y"] for f in others]), np.concatenate([f["p"] for f in others])
        )
        per_fold.append({**fold_metrics(fold["y"], fold["p"], threshold), "threshold": threshold})
    summary = {name: _spread([fold[name] for fold in per_fold]) for name in (*METRICS, "threshold")}
    return {"summary": summary, "folds": per_fold}


def _spread(values: list[float]) -> dict[str, float]:
    array = np.array(values)
    return {
        "mean": round(float(array.mean()), 6),
        "std": round(float(array.std(ddof=1)), 6),
        "min": round(float(array.min()), 6),
        "max": round(float(array.max()), 6),
    }


def select(results: dict[str, dict[str, Any]]) -> str:
    """The selection rule of the module docstring, among the candidates evaluated."""
    best = max(r["summary"]["roc_auc"]["mean"] for r in results.values())
    for candidate in CANDIDATES:
        result = results.get(candidate.name)
        if result is not None and result["summary"]["roc_auc"]["mean"] >= best - AUC_TIE:
            return candidate.name
    raise AssertionError("unreachable: the best candidate is within the tie of itself")


def serving_pipeline(pipeline: Pipeline) -> Pipeline:
    """The pipeline to export to ONNX: algebraically the same model, in as few steps as can be.

    A Platt-calibrated logistic regression on standardised scores is one logistic function of
    the imputed scores: p = 1 / (1 + exp(a * (w . (x - mean) / scale + b0) + b)). Folding the
    scaler and the calibrator into one LogisticRegression gives 2 ONNX nodes instead of 17 and
    halves single-row inference time; the equivalence tests hold the ONNX model to the joblib
    reference. Any other pipeline is exported as it is.
    """
    steps = pipeline.named_steps
    calibrated = steps["calibrated"]
    if not (
        "scale" in steps
        and calibrated.method == "sigmoid"
        and len(calibrated.calibrated_classifiers_) == 1
        and isinstance(calibrated.calibrated_classifiers_[0].estimator, LogisticRegression)
    ):
        return pipeline
    fitted = calibrated.calibrated_classifiers_[0]
    model, platt, scaler = fitted.estimator, fitted.calibrators[0], steps["scale"]
    weights = model.coef_[0] / scaler.scale_
    intercept = model.intercept_[0] - float(np.sum(weights * scaler.mean_))
    folded = LogisticRegression()
    folded.classes_ = model.classes_
    folded.coef_ = (-platt.a_ * weights)[np.newaxis, :]
    folded.intercept_ = np.array([-platt.a_ * intercept - platt.b_])
    return Pipeline([("impute", steps["impute"]), ("model", folded)])


def export_onnx(pipeline: Pipeline) -> bytes:
    """The fitted pipeline as ONNX: input float32 (n, 9) with NaN, output (n, 2) probabilities."""
    model = skl2onnx.to_onnx(
        serving_pipeline(pipeline),
        initial_types=[(ONNX_INPUT, FloatTensorType([None, len(FEATURES)]))],
        target_opset={"": ONNX_OPSET, "ai.onnx.ml": 3},
        options={"zipmap": False},
    )
    outputs = [o.name for o in model.graph.output]
    if ONNX_OUTPUT not in outputs:
        # skl2onnx names the outputs "label" and "probabilities"; anything else is a surprise.
        raise ArtifactError(f"ONNX export has outputs {outputs}, expected {ONNX_OUTPUT!r}")
    return bytes(model.SerializeToString())


def served_probabilities(onnx_bytes: bytes, rows: np.ndarray) -> np.ndarray:
    """Malignant probabilities of `rows` from the exported ONNX model: exactly what is served."""
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    output = session.run([ONNX_OUTPUT], {ONNX_INPUT: rows.astype(np.float32)})[0]
    return np.asarray(output[:, 1], dtype=np.float64)


def dump_joblib(pipeline: Pipeline) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    return buffer.getvalue()


def library_versions() -> dict[str, str]:
    names = ("numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "joblib")
    versions = {name: importlib_metadata.version(name) for name in names}
    versions["python"] = platform.python_version()
    return versions


def training_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.replace(microsecond=0).isoformat()


def package_version() -> str:
    """The package's public version: a model's wheel is versioned 1.0.0+<model hash>, and a model
    trained by it is still a model of oncology-model 1.0.0."""
    try:
        return importlib_metadata.version("oncology-model").split("+")[0]
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


CANDIDATE_NAMES = tuple(candidate.name for candidate in CANDIDATES)


def train(
    *,
    data: Dataset,
    out_dir: Path,
    report_dir: Path | None,
    seed: int = SEED,
    candidates: tuple[str, ...] = CANDIDATE_NAMES,
    log: Any = print,
) -> dict[str, Any]:
    """Evaluate the candidates, choose one, fit it on all rows, write artifacts and report."""
    unknown = sorted(set(candidates) - set(CANDIDATE_NAMES))
    if unknown or not candidates:
        raise ValueError(f"candidates must be some of {', '.join(CANDIDATE_NAMES)}: {unknown}")
    started = time.perf_counter()
    results, oof = {}, {}
    for candidate in (c for c in CANDIDATES if c.name in candidates):
        log(f"{candidate.name:>20}: {N_REPEATS} x {N_SPLITS}-fold grouped cross-validation...")
        oof[candidate.name] = out_of_fold(candidate, data, seed)
        results[candidate.name] = evaluate(oof[candidate.name])
        summary = results[candidate.name]["summary"]
        log(
            f"{candidate.name:>20}: ROC AUC {_fmt(summary['roc_auc'])}, sensitivity "
            f"{_fmt(summary['sensitivity'])}, accuracy {_fmt(summary['accuracy'])}"
        )
    chosen = next(c for c in CANDIDATES if c.name == select(results))
    pooled_y = np.concatenate([f["y"] for f in oof[chosen.name]])
    pooled_p = np.concatenate([f["p"] for f in oof[chosen.name]])
    threshold = choose_threshold(pooled_y, pooled_p)

    log(f"fitting {chosen.name} on all {data.n_rows} rows and exporting it")
    pipeline = build_pipeline(chosen, data.sample_ids, data.y, seed)
    pipeline.fit(data.X, data.y)
    onnx_bytes = export_onnx(pipeline)
    joblib_bytes = dump_joblib(pipeline)
    metadata = model_metadata(
        data=data,
        chosen=chosen,
        pipeline=pipeline,
        onnx_bytes=onnx_bytes,
        joblib_bytes=joblib_bytes,
        threshold=threshold,
        results=results,
        seed=seed,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ONNX_FILE).write_bytes(onnx_bytes)
    (out_dir / JOBLIB_FILE).write_bytes(joblib_bytes)
    write_json(out_dir / METADATA_FILE, metadata)
    log(f"chosen: {chosen.name}, threshold {threshold:.4f}, artifacts in {out_dir}")
    if report_dir is not None:
        from oncology_model.report import write_report

        write_report(report_dir, metadata, results, pooled_y, pooled_p, oof[chosen.name])
        log(f"report in {report_dir}")
    log(f"done in {time.perf_counter() - started:.1f} s")
    return metadata


def model_metadata(
    *,
    data: Dataset,
    chosen: Candidate,
    pipeline: Pipeline,
    onnx_bytes: bytes,
    joblib_bytes: bytes,
    threshold: float,
    results: dict[str, dict[str, Any]],
    seed: int,
) -> dict[str, Any]:
    """`metadata.json` of a trained model: what it is, how it was chosen and judged, what it
    learned from, the hashes of its artifacts, and the reference monitoring compares with."""
    version = package_version()
    medians = pipeline.named_steps["impute"].statistics_
    return {
        "format": METADATA_FORMAT,
        "name": "oncology-breast-cancer-classifier",
        "package_version": version,
        "model_version": f"{version}+{sha256_of(onnx_bytes)[:12]}",
        "algorithm": f"{chosen.algorithm}, median imputation, Platt-calibrated",
        "candidate": chosen.name,
        "trained_at": training_date(),
        "seed": seed,
        "threshold": round(threshold, 6),
        "classes": {"0": "benign", "1": "malignant"},
        "features": [
            {
                "name": name,
                "min": SCORE_MIN,
                "max": SCORE_MAX,
                "median": float(medians[i]),
                "description": FEATURE_DESCRIPTIONS[name],
            }
            for i, name in enumerate(FEATURES)
        ],
        "engine": {
            "name": "onnxruntime",
            "file": ONNX_FILE,
            "input": ONNX_INPUT,
            "output": ONNX_OUTPUT,
            "opset": ONNX_OPSET,
            "min_version": ".".join(onnxruntime.__version__.split(".")[:2]),
        },
        "reference": {"file": JOBLIB_FILE, "scikit_learn": sklearn.__version__},
        "artifacts": {
            ONNX_FILE: {"sha256": sha256_of(onnx_bytes), "bytes": len(onnx_bytes)},
            JOBLIB_FILE: {"sha256": sha256_of(joblib_bytes), "bytes": len(joblib_bytes)},
        },
        "training_data": {
            "file": data.source,
            "sha256": data.sha256,
            "rows": data.n_rows,
            # What selected the rows, for files exported with a manifest (`oncology-cases`).
            **({"manifests": list(data.manifests)} if data.manifests else {}),
        },
        # For the gate: which evaluation rows this model has seen (row_fingerprints' docstring).
        "training_rows": {"fingerprint": FINGERPRINT, "distinct": row_fingerprints(data)},
        "libraries": library_versions(),
        "cross_validation": {
            "scheme": (
                f"{N_REPEATS}x repeated stratified {N_SPLITS}-fold, grouped by sample_code_number"
            ),
            "target_sensitivity": TARGET_SENSITIVITY,
            "selection_rule": (
                f"highest mean ROC AUC; within {AUC_TIE} of it, the simplest candidate"
            ),
            "chosen": results[chosen.name]["summary"],
            "candidates": {name: r["summary"] for name, r in results.items()},
        },
        # What monitoring compares live traffic with (oncology_model.drift).
        DRIFT_REFERENCE: drift_reference(
            data.X, data.y, served_probabilities(onnx_bytes, data.X), round(threshold, 6)
        ).to_metadata(),
    }


def _fmt(spread: dict[str, float]) -> str:
    return f"{spread['mean']:.4f} ± {spread['std']:.4f}"
