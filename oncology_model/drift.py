"""The training reference for drift monitoring: what the model saw and predicted when trained.

Training records it in `metadata.json` (`drift_reference`); the web service exports it as gauges,
and Prometheus compares it with what the service receives (`monitoring/rules.yaml`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from oncology_model.datamodel import FEATURES, SCORE_MAX, SCORE_MIN
from oncology_model.integrity import ArtifactError

# "null" (not measured), then the scores 1..10: the values counted per feature.
VALUE_LABELS: tuple[str, ...] = ("null", *(str(v) for v in range(SCORE_MIN, SCORE_MAX + 1)))
# Upper bounds of the malignant-probability histogram the service exports (+Inf implied).
PROBABILITY_BUCKETS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99,
)  # fmt: skip
METADATA_KEY = "drift_reference"
_DECIMALS = 6


@dataclass(frozen=True)
class DriftReference:
    """Shares over the training rows: of each value per feature, of malignant labels, of
    malignant predictions at the threshold, and of malignant probabilities at or below each
    bucket bound (cumulative, the last one being +Inf)."""

    rows: int
    feature_values: dict[str, dict[str, float]]
    malignant_prevalence: float
    predicted_malignant_ratio: float
    probability_buckets: tuple[float, ...]
    probability_cumulative: tuple[float, ...]

    def to_metadata(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "feature_values": self.feature_values,
            "malignant_prevalence": self.malignant_prevalence,
            "predicted_malignant_ratio": self.predicted_malignant_ratio,
            "malignant_probability": {
                "buckets": list(self.probability_buckets),
                "cumulative_ratio": list(self.probability_cumulative),
            },
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> DriftReference | None:
        """The reference in a model's metadata; None for a model trained before it existed."""
        entry = metadata.get(METADATA_KEY)
        if entry is None:
            return None
        try:
            probability = entry["malignant_probability"]
            shares = entry["feature_values"]
            reference = cls(
                rows=int(entry["rows"]),
                feature_values={
                    name: {label: float(shares[name][label]) for label in VALUE_LABELS}
                    for name in FEATURES
                },
                malignant_prevalence=float(entry["malignant_prevalence"]),
                predicted_malignant_ratio=float(entry["predicted_malignant_ratio"]),
                probability_buckets=tuple(float(b) for b in probability["buckets"]),
                probability_cumulative=tuple(float(r) for r in probability["cumulative_ratio"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"model metadata: {METADATA_KEY} is malformed ({exc!r})") from None
        if len(reference.probability_cumulative) != len(reference.probability_buckets) + 1:
            raise ArtifactError(f"model metadata: {METADATA_KEY} has a bucket count mismatch")
        return reference


def drift_reference(
    rows: np.ndarray, labels: np.ndarray, malignant: np.ndarray, threshold: float
) -> DriftReference:
    """The reference from the training rows (NaN = not measured), their labels (1 malignant),
    and the served model's malignant probabilities for them."""
    n = len(rows)
    codes = np.where(np.isnan(rows), 0, rows).astype(np.intp)  # 0 = null, else the score
    feature_values = {}
    for j, name in enumerate(FEATURES):
        counts = np.bincount(codes[:, j], minlength=len(VALUE_LABELS))
        feature_values[name] = {
            label: _share(int(count), n) for label, count in zip(VALUE_LABELS, counts, strict=True)
        }
    at_or_below = [int(np.count_nonzero(malignant <= bound)) for bound in PROBABILITY_BUCKETS]
    return DriftReference(
        rows=n,
        feature_values=feature_values,
        malignant_prevalence=_share(int(np.count_nonzero(labels == 1)), n),
        predicted_malignant_ratio=_share(int(np.count_nonzero(malignant >= threshold)), n),
        probability_buckets=PROBABILITY_BUCKETS,
        probability_cumulative=(*(_share(count, n) for count in at_or_below), 1.0),
    )


def _share(count: int, total: int) -> float:
    return round(count / total, _DECIMALS)
