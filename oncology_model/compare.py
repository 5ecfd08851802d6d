"""`oncology-compare`: the release gate, a differential test of a candidate model against the
serving one.

Both models run in the served engine (ONNX Runtime after hash verification; nothing is
unpickled) on the same rows: the holdout files when given, otherwise the bundled data. Each
model's metadata records its training rows (as fingerprints): the gate counts the evaluation
rows each model was trained on and marks that model's figures optimistic when there are any.
Each model applies its own threshold; serving's self-check (the seed tumor is benign) is part of
the rule, not an error. On a fixed reference set (the bundled rows and a seeded sample
of the 10^9 possible inputs) the gate also counts the decisions that flip, with examples. The
rule that accepts or refuses is `GateRule.refusals`, the one place it lives. Exit 0 accepted,
1 refused, 2 bad usage or unreadable artifacts or data.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oncology_model.classifier import Classifier
from oncology_model.datamodel import FEATURES, SCORE_MAX, SCORE_MIN, Prediction
from oncology_model.dataset import (
    Dataset,
    DatasetError,
    bundled_data_path,
    count_seen,
    load_datasets,
)
from oncology_model.integrity import ArtifactError, bundled_artifacts_dir, verify_artifacts
from oncology_model.model_storage import LocalData, local_model
from oncology_model.storage import ObjectUrl, StorageError, location, put_bytes
from oncology_model.verify import SEED_TUMOR

REFERENCE_SEED = 20261121
REFERENCE_RANDOM_ROWS = 10_000
MAX_EXAMPLES = 5
FIGURES = ("roc_auc", "sensitivity", "specificity", "brier")
LABELS = {
    "roc_auc": "ROC AUC",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "brier": "Brier",
}


@dataclass(frozen=True)
class GateRule:
    """The release rule: minimums any model must reach, and how much worse than the baseline a
    candidate may be (ROC AUC, sensitivity and specificity may drop by at most the tolerance, the
    Brier score may rise by at most its tolerance)."""

    min_roc_auc: float = 0.98
    min_sensitivity: float = 0.97
    roc_auc_tolerance: float = 0.005
    sensitivity_tolerance: float = 0.02
    specificity_tolerance: float = 0.03
    brier_tolerance: float = 0.01

    def refusals(
        self, candidate: dict[str, float], baseline: dict[str, float], *, seed_benign: bool = True
    ) -> list[str]:
        """Why the candidate is refused; an empty list accepts it. `seed_benign`: the candidate
        passes serving's self-check (the known benign seed tumor is benign)."""
        reasons = []
        if not seed_benign:
            reasons.append("self-check: the known benign seed tumor is called malignant")
        if candidate["roc_auc"] < self.min_roc_auc:
            reasons.append(f"ROC AUC {candidate['roc_auc']:.4f} < minimum {self.min_roc_auc}")
        if candidate["sensitivity"] < self.min_sensitivity:
            reasons.append(
                f"sensitivity {candidate['sensitivity']:.4f} < minimum {self.min_sensitivity}"
            )
        for name, tolerance in (
            ("roc_auc", self.roc_auc_tolerance),
            ("sensitivity", self.sensitivity_tolerance),
            ("specificity", self.specificity_tolerance),
        ):
            drop = baseline[name] - candidate[name]
            if drop > tolerance:
                reasons.append(
                    f"{LABELS[name]} {candidate[name]:.4f} is {drop:.4f} below the baseline's "
                    f"{baseline[name]:.4f} (tolerance {tolerance})"
                )
        rise = candidate["brier"] - baseline["brier"]
        if rise > self.brier_tolerance:
            reasons.append(
                f"Brier score {candidate['brier']:.4f} is {rise:.4f} above the baseline's "
                f"{baseline['brier']:.4f} (tolerance {self.brier_tolerance})"
            )
        return reasons

    def describe(self) -> dict[str, str]:
        """The rule of each figure, as the table shows it."""
        return {
            "roc_auc": f">= {self.min_roc_auc}, >= baseline - {self.roc_auc_tolerance}",
            "sensitivity": f">= {self.min_sensitivity}, >= baseline - {self.sensitivity_tolerance}",
            "specificity": f">= baseline - {self.specificity_tolerance}",
            "brier": f"<= baseline + {self.brier_tolerance}",
        }


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney statistic, ties counted as half."""
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2)[inverse]  # average rank of tied values
    positives = int(y.sum())
    negatives = len(y) - positives
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def figures(classifier: Classifier, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """ROC AUC, sensitivity, specificity (at the model's threshold) and Brier score on X, y."""
    p = classifier.malignant_probabilities(X)
    predicted = classifier.labels(p)
    positives = y == 1
    return {
        "roc_auc": round(roc_auc(y, p), 6),
        "sensitivity": round(float(np.mean(predicted[positives])), 6),
        "specificity": round(float(np.mean(~predicted[~positives])), 6),
        "brier": round(float(np.mean((p - y) ** 2)), 6),
        "threshold": classifier.threshold,
    }


def reference_rows() -> dict[str, np.ndarray]:
    """The fixed reference set: the bundled rows and a seeded sample of all possible inputs."""
    rng = np.random.default_rng(REFERENCE_SEED)
    sample = rng.integers(SCORE_MIN, SCORE_MAX + 1, size=(REFERENCE_RANDOM_ROWS, len(FEATURES)))
    return {
        "bundled rows": load_datasets([bundled_data_path()]).X,
        "random inputs": sample.astype(np.float64),
    }


def flips(candidate: Classifier, baseline: Classifier) -> dict[str, Any]:
    """How many decisions differ on the reference set, and a few of the flipped cases."""
    counts: dict[str, dict[str, int]] = {}
    examples: list[dict[str, Any]] = []
    for name, rows in reference_rows().items():
        p_candidate = candidate.malignant_probabilities(rows)
        p_baseline = baseline.malignant_probabilities(rows)
        flipped = np.flatnonzero(candidate.labels(p_candidate) != baseline.labels(p_baseline))
        counts[name] = {"flipped": len(flipped), "rows": len(rows)}
        for index in flipped[: MAX_EXAMPLES - len(examples)]:
            examples.append(
                {
                    "set": name,
                    "row": int(index),
                    "scores": {
                        f: None if np.isnan(v) else int(v)
                        for f, v in zip(FEATURES, rows[index], strict=True)
                    },
                    "candidate": _decision(candidate, p_candidate[index]),
                    "baseline": _decision(baseline, p_baseline[index]),
                }
            )
    return {"counts": counts, "examples": examples}


def _decision(classifier: Classifier, probability: float) -> dict[str, Any]:
    malignant = bool(classifier.labels(np.array([probability]))[0])
    return {
        "malignant_probability": round(float(probability), 6),
        "prediction": "malignant" if malignant else "benign",
    }


def compare(
    candidate_dir: Path, baseline_dir: Path, holdout: list[Path] | None, rule: GateRule
) -> dict[str, Any]:
    """The gate's whole result (what the JSON file holds)."""
    models = {}
    for role, directory in (("candidate", candidate_dir), ("baseline", baseline_dir)):
        verify_artifacts(directory)  # every file; the Classifier reads only the ONNX model
        models[role] = Classifier(artifacts_dir=directory)
    seed_benign = {
        role: model.predict(SEED_TUMOR) is Prediction.BENIGN for role, model in models.items()
    }
    data = load_datasets(holdout or [bundled_data_path()])
    if len(set(data.y.tolist())) < 2:
        raise DatasetError(f"{data.source}: the evaluation rows need both classes")
    judged = {role: figures(model, data.X, data.y) for role, model in models.items()}
    seen = {role: rows_trained_on(model.metadata, data) for role, model in models.items()}
    refusals = rule.refusals(
        judged["candidate"], judged["baseline"], seed_benign=seed_benign["candidate"]
    )
    return {
        "accepted": not refusals,
        "refusals": refusals,
        "rule": asdict(rule),
        **{
            role: {
                "dir": str(directory),
                "model_version": models[role].model_version,
                "seed_tumor_benign": seed_benign[role],
                # Evaluation rows among its training rows; None when its metadata cannot say.
                "evaluation_rows_trained_on": seen[role],
                "figures_optimistic": seen[role] != 0,
            }
            for role, directory in (("candidate", candidate_dir), ("baseline", baseline_dir))
        },
        "evaluation": {
            "source": data.source if holdout else "the bundled data",
            "holdout": bool(holdout),
            "rows": data.n_rows,
            "malignant": int(data.y.sum()),
        },
        "figures": {
            name: {
                "candidate": judged["candidate"][name],
                "baseline": judged["baseline"][name],
                "difference": round(judged["candidate"][name] - judged["baseline"][name], 6),
            }
            for name in (*FIGURES, "threshold")
        },
        "flips": flips(models["candidate"], models["baseline"]),
    }


def rows_trained_on(metadata: dict[str, Any], data: Dataset) -> int | None:
    """How many rows of `data` the model of `metadata` was trained on (same scores and class),
    or None when its metadata records no training rows (a model from before they were)."""
    recorded = metadata.get("training_rows", {}).get("distinct")
    if recorded is not None:
        return count_seen(data, recorded)
    if metadata.get("training_data", {}).get("sha256") == data.sha256:
        return data.n_rows
    return None


def render(result: dict[str, Any], rule: GateRule) -> str:
    """The side-by-side table the terminal shows."""
    candidate, baseline = result["candidate"], result["baseline"]
    evaluation = result["evaluation"]
    lines = [
        f"candidate: {candidate['model_version']}  ({candidate['dir']})",
        f"baseline:  {baseline['model_version']}  ({baseline['dir']})",
        f"evaluated on {evaluation['rows']} rows ({evaluation['malignant']} malignant) of "
        f"{evaluation['source']}",
        "",
        f"{'figure':<12} {_heading('candidate', candidate):>10} "
        f"{_heading('baseline', baseline):>10} {'difference':>11}  rule",
    ]
    rules = rule.describe()
    for name in (*FIGURES, "threshold"):
        row = result["figures"][name]
        lines.append(
            f"{LABELS.get(name, name):<12} {row['candidate']:>10.4f} {row['baseline']:>10.4f} "
            f"{row['difference']:>+11.4f}  {rules.get(name, '(each model its own)')}"
        )
    lines.append(
        f"{'seed benign':<12} {_yes(candidate['seed_tumor_benign']):>10} "
        f"{_yes(baseline['seed_tumor_benign']):>10} {'':>11}  serving's self-check"
    )
    for role, model in (("candidate", candidate), ("baseline", baseline)):
        trained_on = model["evaluation_rows_trained_on"]
        if trained_on is None:
            lines.append(
                f"{role}*: unknown how many of these rows it was trained on (its metadata "
                "records no training rows): its figures may be optimistic"
            )
        elif trained_on:
            lines.append(
                f"{role}*: optimistic: trained on {trained_on} of these {evaluation['rows']} rows"
            )
    if not evaluation["holdout"]:
        lines.append("Judge on rows neither model was trained on: --holdout FILE_OR_FOLDER [...]")
    counts = result["flips"]["counts"]
    lines += [
        "",
        "decisions that flip: "
        + ", ".join(f"{c['flipped']} of {c['rows']} {name}" for name, c in counts.items()),
    ]
    for example in result["flips"]["examples"]:
        scores = ",".join("?" if v is None else str(v) for v in example["scores"].values())
        sides = [
            f"{role} {example[role]['prediction']} ({example[role]['malignant_probability']:.3f})"
            for role in ("candidate", "baseline")
        ]
        lines.append(f"  {example['set']} row {example['row']} [{scores}]: {', '.join(sides)}")
    lines.append("")
    if result["accepted"]:
        lines.append("ACCEPTED: the candidate meets the minimums and is within the tolerances")
    else:
        lines.append("REFUSED:")
        lines += [f"  - {reason}" for reason in result["refusals"]]
    return "\n".join(lines)


def _heading(role: str, model: dict[str, Any]) -> str:
    """A column heading, starred when the figures below it are (or may be) optimistic."""
    return f"{role}*" if model["figures_optimistic"] else role


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def main(argv: list[str] | None = None) -> int:
    defaults = GateRule()
    parser = argparse.ArgumentParser(
        prog="oncology-compare",
        description="Release gate: judge a candidate model against the serving one.",
    )
    parser.add_argument(
        "--candidate",
        type=location,
        required=True,
        help="the candidate's artifacts (a folder, or s3://BUCKET/PREFIX/ of a model version)",
    )
    parser.add_argument(
        "--baseline",
        type=location,
        help="the serving model's artifacts, as --candidate (default: the bundled model)",
    )
    parser.add_argument(
        "--holdout",
        type=location,
        nargs="+",
        help="UCI files or folders (or s3:// objects or prefixes) neither model was trained on",
    )
    parser.add_argument(
        "--json",
        type=location,
        default=Path("build/gate/compare.json"),
        help="where to write JSON (a file, or s3://BUCKET/KEY)",
    )
    for field, value in asdict(defaults).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=float, default=value)
    args = parser.parse_args(argv)
    rule = GateRule(**{field: getattr(args, field) for field in asdict(defaults)})
    with tempfile.TemporaryDirectory(prefix="oncology-compare-") as scratch:
        holdout = None
        try:
            models = {
                role: local_model(where, Path(scratch))
                for role, where in (
                    ("candidate", args.candidate),
                    ("baseline", args.baseline or bundled_artifacts_dir()),
                )
            }
            holdout = LocalData(args.holdout, Path(scratch)) if args.holdout else None
            result = compare(
                models["candidate"], models["baseline"], holdout.paths if holdout else None, rule
            )
        except (ArtifactError, DatasetError, StorageError) as exc:
            message = holdout.shown(str(exc)) if holdout else str(exc)
            print(f"oncology-compare: {message}", file=sys.stderr)
            return 2
    # The models as named on the command line (a bucket's, not the temporary download).
    result["candidate"]["dir"] = str(args.candidate)
    if args.baseline is not None:
        result["baseline"]["dir"] = str(args.baseline)
    print(render(result, rule))
    text = json.dumps(result, indent=2) + "\n"
    if isinstance(args.json, ObjectUrl):
        try:
            put_bytes(args.json, text.encode())
        except StorageError as exc:
            print(f"oncology-compare: the JSON was not written: {exc}", file=sys.stderr)
            return 2
    else:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text, encoding="utf-8")
    print(f"(JSON: {args.json})")
    return 0 if result["accepted"] else 1


if __name__ == "__main__":
    sys.exit(main())
