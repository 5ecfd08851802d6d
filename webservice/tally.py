"""The tally: this worker's observations (requests, diagnoses, input values) on their way to the
metrics (`webservice.metrics`), counted vectorised off the request path."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from prometheus_client import Histogram

from oncology_model.datamodel import FEATURES
from oncology_model.drift import VALUE_LABELS
from webservice.metrics import (
    EXPECTED_CASES,
    FEATURE_VALUES,
    GRPC_LATENCY,
    GRPC_REQUESTS,
    LATENCY,
    MALIGNANT_PROBABILITY,
    PREDICTIONS,
    REQUESTS,
)

FLUSH_SECONDS = 1.0
# Cell (feature j, value v) is j * 11 + v, with v = 0 for null.
_FEATURE_OFFSETS = np.arange(len(FEATURES)) * len(VALUE_LABELS)


# Validated rows (NaN = not measured): an (n, 9) array, or a list of one row for a single
# prediction (`validate_row`), which then makes no numpy call at all.
Rows = np.ndarray | list[list[float]]
Diagnoses = np.ndarray | list[bool]  # True: malignant; a list for the few rows of a single request
Probabilities = np.ndarray | list[float]  # malignant; a list for a single prediction
_Predictions = tuple[Rows, Probabilities, Diagnoses]  # rows, probabilities, diagnoses


class Observed(NamedTuple):
    """What the metrics and the record keep of one request's predictions: its rows, their
    malignant probabilities and diagnoses, the answer's prediction-id block
    (`webservice.records.ids`) and the probabilities as answered (`Service.scores` gives it; the
    request's boundary records it)."""

    rows: Rows
    malignant: Probabilities
    flags: Diagnoses
    id_block: str
    answered: list[float]


JOIN_ROWS = 4096


def _joined(pending: list[_Predictions]) -> Iterator[_Predictions]:
    """The pending requests joined into arrays of at most about JOIN_ROWS rows: few numpy calls,
    and no allocation so large that the C allocator keeps it (a steady RSS)."""
    group: list[_Predictions] = []
    size = 0
    for entry in [*pending, None]:
        if entry is None or (group and size + len(entry[0]) > JOIN_ROWS):
            if len(group) == 1:
                yield group[0]
            elif group:
                yield (
                    np.concatenate([rows for rows, _, _ in group]),
                    np.concatenate([malignant for _, malignant, _ in group]),
                    np.concatenate([flags for _, _, flags in group]),
                )
            group, size = [], 0
        if entry is not None:
            group.append(entry)
            size += len(entry[0])


class Tally:
    """This worker's observations (requests, diagnoses, input values) on their way to the metrics.

    Updating a dozen shared (memory-mapped, locked) metric values on every request would cost more
    than the prediction itself. Instead a request only appends what it saw here; the counting
    happens vectorised, off the request path, when the pending observations are flushed into the
    shared metrics: every FLUSH_SECONDS (a daemon thread), whenever this worker serves /metrics,
    when it exits (gunicorn's worker_exit hook), and at once past MAX_PENDING.
    """

    MAX_PENDING = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending: list[_Predictions] = []
        self._pending_rows = 0
        self._requests: list[tuple[str, str, str, float, str]] = []
        self._grpc_requests: list[tuple[str, str, float, str]] = []
        self._flusher: threading.Thread | None = None
        # Resolved once: `.labels()` costs a dict look-up and a lock on every call. This also makes
        # every (feature, value) series exist at zero from start-up, so drift monitoring sees a
        # value that never arrives.
        self._feature_children = [
            FEATURE_VALUES.labels(f, v) for f in FEATURES for v in VALUE_LABELS
        ]
        self._class_children = (PREDICTIONS.labels("benign"), PREDICTIONS.labels("malignant"))
        self._expected_children: list[Any] | None = None  # once the model is known

    def set_model(self, model_version: str, track: str) -> None:
        """Label the expected cases (CBPE) with the served model and track, from zero."""
        self._expected_children = [
            EXPECTED_CASES.labels(model_version, track, predicted, outcome)
            for predicted in ("benign", "malignant")
            for outcome in ("benign", "malignant")
        ]

    def add_predictions(self, rows: Rows, malignant: Probabilities, flags: Diagnoses) -> None:
        """Queue one request's rows (NaN = null), malignant probabilities and diagnoses."""
        with self._lock:
            self._pending.append((rows, malignant, flags))
            self._pending_rows += len(rows)
            overflowing = self._pending_rows > self.MAX_PENDING
        self._after_add(overflowing)

    def add_request(
        self, endpoint: str, method: str, status: str, seconds: float, caller: str
    ) -> None:
        """Queue one answered request's labels and duration."""
        with self._lock:
            self._requests.append((endpoint, method, status, seconds, caller))
            overflowing = len(self._requests) > self.MAX_PENDING
        self._after_add(overflowing)

    def add_grpc_request(self, method: str, code: str, seconds: float, caller: str) -> None:
        """Queue one answered gRPC call's labels and duration."""
        with self._lock:
            self._grpc_requests.append((method, code, seconds, caller))
            overflowing = len(self._grpc_requests) > self.MAX_PENDING
        self._after_add(overflowing)

    def _after_add(self, overflowing: bool) -> None:
        if overflowing:
            self.flush()
        if self._flusher is None:
            self._start_flusher()

    def flush(self) -> None:
        """Count everything pending into the shared metrics. One flush at a time: a flush for
        /metrics waits for the background one's counting, so the page it serves includes it."""
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending, self._pending_rows = self._pending, [], 0
            requests, self._requests = self._requests, []
            grpc_requests, self._grpc_requests = self._grpc_requests, []
        durations: dict[tuple[str, str, str], list[float]] = {}
        callers: dict[tuple[str, str, str, str], int] = {}
        for endpoint, method, status, seconds, caller in requests:
            durations.setdefault((endpoint, method, status), []).append(seconds)
            key = (endpoint, method, status, caller)
            callers[key] = callers.get(key, 0) + 1
        for labels, count in callers.items():
            REQUESTS.labels(*labels).inc(count)
        for (endpoint, _, status), seconds_list in durations.items():
            _observe_many(LATENCY.labels(endpoint, status), np.array(seconds_list))
        grpc_durations: dict[tuple[str, str], list[float]] = {}
        grpc_callers: dict[tuple[str, str, str], int] = {}
        for method, code, seconds, caller in grpc_requests:
            grpc_durations.setdefault((method, code), []).append(seconds)
            grpc_callers[method, code, caller] = grpc_callers.get((method, code, caller), 0) + 1
        for grpc_labels, count in grpc_callers.items():
            GRPC_REQUESTS.labels(*grpc_labels).inc(count)
        for (method, code), seconds_list in grpc_durations.items():
            _observe_many(GRPC_LATENCY.labels(method, code), np.array(seconds_list))
        if pending:
            self._count_predictions(pending)

    def _count_predictions(self, pending: list[_Predictions]) -> None:
        n_malignant = 0
        cell_counts = np.zeros(len(self._feature_children), dtype=np.int64)
        expected = np.zeros(4)  # (predicted, outcome): bb, bm, mb, mm
        for rows, malignant, flags in _joined(pending):
            n_malignant += int(np.count_nonzero(flags))
            p = np.asarray(malignant, dtype=np.float64)
            called = np.asarray(flags, dtype=bool)
            on_called, on_others = float(p[called].sum()), float(p[~called].sum())
            expected += (
                (~called).sum() - on_others,
                on_others,
                called.sum() - on_called,
                on_called,
            )
            _observe_many(MALIGNANT_PROBABILITY, np.asarray(malignant, dtype=np.float64))
            cells = np.where(np.isnan(rows), 0, rows).astype(np.intp) + _FEATURE_OFFSETS
            cell_counts += np.bincount(cells.ravel(), minlength=len(cell_counts))
        n_total = sum(len(malignant) for _, malignant, _ in pending)
        if n_malignant:
            self._class_children[1].inc(n_malignant)
        if n_malignant < n_total:
            self._class_children[0].inc(n_total - n_malignant)
        for cell in np.flatnonzero(cell_counts).tolist():
            self._feature_children[cell].inc(int(cell_counts[cell]))
        if self._expected_children is not None:
            for child, value in zip(self._expected_children, expected.tolist(), strict=True):
                if value:
                    child.inc(value)

    def _start_flusher(self) -> None:
        # Started on first use, so in each gunicorn worker after the fork, never in the master.
        def loop() -> None:
            while True:
                time.sleep(FLUSH_SECONDS)
                self.flush()

        self._flusher = threading.Thread(target=loop, name="metrics-flush", daemon=True)
        self._flusher.start()


TALLY = Tally()


def record_predictions(observed: Observed) -> None:
    """Count one answered request's input values, malignant probabilities and diagnoses."""
    TALLY.add_predictions(observed.rows, observed.malignant, observed.flags)


def record_request(endpoint: str, method: str, status: str, seconds: float, caller: str) -> None:
    """Count one answered request: labels from fixed sets (callers: the tokens files' names),
    and its duration."""
    TALLY.add_request(endpoint, method, status, seconds, caller)


def record_grpc_request(method: str, code: str, seconds: float, caller: str) -> None:
    """Count one answered gRPC call: its method (of the service's few), status code name, caller,
    and its duration."""
    TALLY.add_grpc_request(method, code, seconds, caller)


def _observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """`observe` for many values at once: one update per bucket instead of one per value.

    prometheus-client keeps per-bucket (not cumulative) counts in `_buckets` and the total in
    `_sum`, exactly what `observe` updates; a test pins this against `observe` one by one.
    """
    bounds = histogram._upper_bounds
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(values.sum()))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=True):
        if count:
            bucket.inc(count)
