"""Is it right? Realized quality from the record's confirmed outcomes, estimated quality from the
calibrated probabilities, and the canary's verdict on outcomes.

Per model version and track, over a time window:

- realized: confirmed cases by predicted and true class; sensitivity, specificity, PPV and NPV
  with 95 % Wilson intervals (Brown, Cai and DasGupta 2001); the Brier score and a calibration
  table over the confirmed cases;
- how many answers have an outcome, per predicted class, and a warning when benign answers are
  confirmed much less often than malignant ones (verification bias: sensitivity from confirmed
  cases alone is then too high);
- estimated (CBPE): every answer's malignant probability taken as the chance it is malignant, so
  expected true and false positives are sums of probabilities. It holds while the model stays
  calibrated and the scores relate to outcomes as in training; it needs no outcome at all.

`compare` judges a candidate (the canary, or a model version) against a baseline on sensitivity
and specificity with Newcombe's interval for each difference; see `verdict` for the rule.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from webservice.records.schema import answer_days, answers, outcomes
from webservice.records.store import ERASED, RecordStore

Z95 = 1.959963984540054  # two-sided 95 %
Z_INTERIM = 3.290526731491926  # two-sided 99.9 %: Haybittle-Peto's bound for early looks
BINS = 10  # calibration table: [0, 0.1), ..., [0.9, 1.0]
# Benign answers confirmed less than this share as often as malignant ones: verification bias.
BIAS_RATIO = 0.5


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a rate; (0, 1) without cases."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10) for p1 - p2, from two Wilson intervals;
    (-1, 1) when either rate has no cases."""
    if n1 == 0 or n2 == 0:
        return -1.0, 1.0
    p1, p2 = k1 / n1, k2 / n2
    low1, high1 = wilson(k1, n1, z)
    low2, high2 = wilson(k2, n2, z)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2)
    high = difference + math.sqrt((high1 - p1) ** 2 + (p2 - low2) ** 2)
    return max(-1.0, low), min(1.0, high)


def rate(successes: int, n: int) -> dict[str, Any]:
    """A rate with its 95 % Wilson interval and the cases it stands on."""
    low, high = wilson(successes, n)
    return {
        "value": successes / n if n else None,
        "low": low,
        "high": high,
        "successes": successes,
        "cases": n,
    }


@dataclass
class Group:
    """What one model version on one track answered, and what was confirmed of it."""

    model_version: str
    track: str
    answered: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.int64))
    # confusion[predicted, true]: 0 benign, 1 malignant
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((2, 2), dtype=np.int64))
    brier_sum: float = 0.0
    bin_cases: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))
    bin_probability: np.ndarray = field(default_factory=lambda: np.zeros(BINS))
    bin_malignant: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))
    # expected[predicted, true] from the probabilities of every answer (CBPE)
    expected: np.ndarray = field(default_factory=lambda: np.zeros((2, 2)))

    def add_confirmed(self, probability: float, predicted: int, malignant: int) -> None:
        self.confusion[predicted, malignant] += 1
        self.brier_sum += (probability - malignant) ** 2
        column = min(int(probability * BINS), BINS - 1)
        self.bin_cases[column] += 1
        self.bin_probability[column] += probability
        self.bin_malignant[column] += malignant

    def report(self) -> dict[str, Any]:
        (tn, fn), (fp, tp) = self.confusion.tolist()
        confirmed = int(self.confusion.sum())
        answered_benign, answered_malignant = self.answered.tolist()
        share_benign = int(tn + fn) / answered_benign if answered_benign else None
        share_malignant = int(tp + fp) / answered_malignant if answered_malignant else None
        warnings = []
        if (
            share_benign is not None
            and share_malignant
            and share_benign < (BIAS_RATIO * share_malignant)
        ):
            warnings.append(
                f"verification bias: {share_benign:.0%} of benign answers are confirmed against "
                f"{share_malignant:.0%} of malignant ones, so missed cancers rarely come back and "
                "the sensitivity shown is too high; confirm a random sample of benign answers"
            )
        (etn, efn), (efp, etp) = self.expected.tolist()
        return {
            "model_version": self.model_version,
            "track": self.track,
            "answered": {"benign": answered_benign, "malignant": answered_malignant},
            "confirmed": {
                "cases": confirmed,
                "of_benign_answers": {"cases": int(tn + fn), "share": share_benign},
                "of_malignant_answers": {"cases": int(tp + fp), "share": share_malignant},
            },
            "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
            "realized": {
                "sensitivity": rate(tp, tp + fn),
                "specificity": rate(tn, tn + fp),
                "ppv": rate(tp, tp + fp),
                "npv": rate(tn, tn + fn),
                "brier": self.brier_sum / confirmed if confirmed else None,
                "calibration": [
                    {
                        "from": i / BINS,
                        "to": (i + 1) / BINS,
                        "cases": int(self.bin_cases[i]),
                        "mean_probability": float(self.bin_probability[i] / self.bin_cases[i]),
                        "observed_malignant": rate(
                            int(self.bin_malignant[i]), int(self.bin_cases[i])
                        ),
                    }
                    for i in range(BINS)
                    if self.bin_cases[i]
                ],
            },
            "estimated": {
                "expected": {"tp": etp, "fp": efp, "fn": efn, "tn": etn},
                "sensitivity": etp / (etp + efn) if etp + efn else None,
                "specificity": etn / (etn + efp) if etn + efp else None,
                "ppv": etp / (etp + efp) if etp + efp else None,
                "npv": etn / (etn + efn) if etn + efn else None,
                "assumes": "the probabilities stay calibrated and the scores relate to outcomes "
                "as in training (CBPE)",
            },
            "warnings": warnings,
        }


@dataclass(frozen=True)
class Window:
    """Which answers count: answered in [since, until), of a model version, on a track."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    model_version: str | None = None
    track: str | None = None

    def day_clauses(self) -> list[Any]:
        """The window on the day rows: whole days, UTC."""
        clauses: list[Any] = []
        if self.since is not None:
            clauses.append(answer_days.c.day >= self.since.date())
        if self.until is not None:
            clauses.append(answer_days.c.day < self.until.date())
        if self.model_version is not None:
            clauses.append(answer_days.c.model_version == self.model_version)
        if self.track is not None:
            clauses.append(answer_days.c.track == self.track)
        return clauses

    def where(self) -> list[Any]:
        clauses: list[Any] = []
        if self.since is not None:
            clauses.append(answers.c.answered_at >= self.since)
        if self.until is not None:
            clauses.append(answers.c.answered_at < self.until)
        if self.model_version is not None:
            clauses.append(answers.c.model_version == self.model_version)
        if self.track is not None:
            clauses.append(answers.c.track == self.track)
        return clauses


def groups(store: RecordStore, window: Window, *, by: str = "version") -> list[Group]:
    """The answers in the window and their confirmed outcomes, per (model version, track), or
    per track alone (`by="track"`, versions pooled). Answer counts and expected cases come from
    the day rows (`answer_days`: whole days, UTC); confirmed cases from the outcomes, reading
    only the answers that have one."""
    found: dict[tuple[str, str], Group] = {}

    def group_of(version: str, track: str) -> Group:
        key = (version if by == "version" else "*", track)
        if key not in found:
            found[key] = Group(*key)
        return found[key]

    with store.engine.connect() as connection:
        for day in connection.execute(sa.select(answer_days).where(*window.day_clauses())):
            group = group_of(day.model_version, day.track)
            group.answered += (day.answered_benign, day.answered_malignant)
            group.expected += (
                (day.expected_tn, day.expected_fn),
                (day.expected_fp, day.expected_tp),
            )
        for row, confirmed in confirmed_answers(
            connection,
            window,
            answers.c.model_version,
            answers.c.track,
            answers.c.malignant_probabilities,
        ):
            group = group_of(row.model_version, row.track)
            predicted = np.frombuffer(row.diagnoses, dtype=np.uint8)
            probabilities = np.frombuffer(row.malignant_probabilities, dtype="<f8")
            for position, outcome in confirmed:
                if predicted[position] != ERASED:
                    malignant = 1 if outcome == "malignant" else 0
                    probability = float(probabilities[position])
                    group.add_confirmed(probability, int(predicted[position]), malignant)
    return [found[key] for key in sorted(found)]


def confirmed_answers(
    connection: sa.Connection, window: Window, *columns: sa.Column[Any]
) -> Iterator[tuple[Any, list[tuple[int, str]]]]:
    """The answers in the window that have outcomes, with their (position, outcome) pairs in
    position order: `columns` of each answers row besides its id and diagnoses, in batches of
    200 rows (only the answers with an outcome are read, however many the record holds)."""
    confirmed: dict[int, list[tuple[int, str]]] = {}
    for answer_id, position, outcome in connection.execute(
        sa.select(outcomes.c.answer_id, outcomes.c.position, outcomes.c.outcome)
        .join(answers, answers.c.id == outcomes.c.answer_id)
        .where(*window.where())
    ):
        confirmed.setdefault(answer_id, []).append((position, outcome))
    chosen = sorted(confirmed)
    for start in range(0, len(chosen), 200):
        for row in connection.execute(
            sa.select(answers.c.id, answers.c.diagnoses, *columns).where(
                answers.c.id.in_(chosen[start : start + 200])
            )
        ):
            yield row, sorted(confirmed[row.id])


def quality(
    store: RecordStore, window: Window, *, validation: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The quality report: each (model version, track) in the window, and the model card's
    cross-validation figures beside them (`validation`: version -> figures)."""
    reports = []
    for group in groups(store, window):
        report = group.report()
        if validation and group.model_version in validation:
            report["validation"] = validation[group.model_version]
        reports.append(report)
    return {"window": _window(window), "groups": reports}


def _window(window: Window) -> dict[str, Any]:
    return {
        "since": window.since.isoformat() if window.since else None,
        "until": window.until.isoformat() if window.until else None,
        "model_version": window.model_version,
        "track": window.track,
    }


# The canary's verdict

PROMOTE, WAIT, ROLL_BACK = "PROMOTE", "WAIT", "ROLL BACK"


@dataclass(frozen=True)
class Plan:
    """Decided before the canary starts, never while watching it: the margins of
    non-inferiority and the confirmed cases of each class each side needs (140 malignant gives
    a sensitivity near 0.9 to within about 0.05, Buderer 1996)."""

    sensitivity_margin: float = 0.05
    specificity_margin: float = 0.10
    malignant_cases: int = 140
    benign_cases: int = 140


def verdict(candidate: Group, baseline: Group, plan: Plan = Plan()) -> dict[str, Any]:
    """PROMOTE, WAIT or ROLL BACK, on outcomes.

    Looked at every hour, a verdict could turn PROMOTE by chance; so the sample size is fixed
    beforehand (`Plan`) and the looks before it cannot promote: they can only roll back, and
    only on an interval as strict as Haybittle-Peto's (99.9 %), which leaves the final look's
    95 % level almost untouched however often one asks. At the planned size, one look at 95 %:
    PROMOTE when both differences (candidate minus baseline) are above minus their margins
    (non-inferior), ROLL BACK otherwise. Before it, WAIT names the outcomes still needed.
    """
    (c_tn, c_fn), (c_fp, c_tp) = candidate.confusion.tolist()
    (b_tn, b_fn), (b_fp, b_tp) = baseline.confusion.tolist()
    counts = {
        "candidate": {"malignant": c_tp + c_fn, "benign": c_tn + c_fp},
        "baseline": {"malignant": b_tp + b_fn, "benign": b_tn + b_fp},
    }
    needed = {
        side: {
            "malignant": max(0, plan.malignant_cases - cases["malignant"]),
            "benign": max(0, plan.benign_cases - cases["benign"]),
        }
        for side, cases in counts.items()
    }
    final = not any(n for side in needed.values() for n in side.values())
    z = Z95 if final else Z_INTERIM
    metrics = {
        "sensitivity": (c_tp, c_tp + c_fn, b_tp, b_tp + b_fn, plan.sensitivity_margin),
        "specificity": (c_tn, c_tn + c_fp, b_tn, b_tn + b_fp, plan.specificity_margin),
    }
    judged = {}
    for name, (k1, n1, k2, n2, margin) in metrics.items():
        low, high = newcombe(k1, n1, k2, n2, z)
        judged[name] = {
            "candidate": rate(k1, n1),
            "baseline": rate(k2, n2),
            "difference": {
                "value": (k1 / n1 - k2 / n2) if n1 and n2 else None,
                "low": low,
                "high": high,
                "level": 0.95 if final else 0.999,
            },
            "margin": margin,
            "worse_beyond_margin": high < -margin,
            "non_inferior": low > -margin,
        }
    if any(m["worse_beyond_margin"] for m in judged.values()):
        decision, why = ROLL_BACK, "worse than the baseline beyond the margin, with confidence"
    elif final and all(m["non_inferior"] for m in judged.values()):
        decision, why = PROMOTE, "non-inferior on sensitivity and specificity at the planned size"
    elif final:
        decision, why = ROLL_BACK, "not shown non-inferior at the planned size"
    else:
        decision, why = WAIT, "more confirmed outcomes are needed before a verdict"
    return {
        "verdict": decision,
        "why": why,
        "candidate": {"model_version": candidate.model_version, "track": candidate.track},
        "baseline": {"model_version": baseline.model_version, "track": baseline.track},
        "plan": plan.__dict__,
        "confirmed": counts,
        "needed": needed,
        "metrics": judged,
    }
