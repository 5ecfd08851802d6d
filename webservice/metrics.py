"""Prometheus metrics, correct across gunicorn workers (prometheus-client's multiprocess mode).

gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at an in-memory folder before any worker starts
and marks each exited worker dead; without it (tests, a single process) the default registry is
used. Label values are always from a fixed set, never from the client, so series stay bounded.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

from oncology_model.datamodel import FEATURES, SCORE_MAX, SCORE_MIN

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter(
    "oncology_http_requests_total", "HTTP requests answered", ["endpoint", "method", "status"]
)
LATENCY = Histogram(
    "oncology_http_request_duration_seconds",
    "Time from receiving a request to the end of its answer",
    ["endpoint", "status"],
    buckets=LATENCY_BUCKETS,
)
PREDICTIONS = Counter("oncology_predictions_total", "Diagnoses given", ["prediction"])
MALIGNANT_PROBABILITY = Histogram(
    "oncology_malignant_probability",
    "Malignant probability of each diagnosed tumor",
    buckets=(0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),
)
FEATURE_VALUES = Counter(
    "oncology_feature_values_total",
    "Scores received per feature and value (null: not measured), to watch input drift",
    ["feature", "value"],
)
REJECTED_VALUES = Counter(
    "oncology_rejected_values_total",
    "Fields rejected by validation (unknown_field: a field that is not a tumor score)",
    ["field"],
)
BATCH_SIZE = Histogram(
    "oncology_batch_size",
    "Tumors per batch request",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000),
)
MODEL_INFO = Gauge(
    "oncology_model_info",
    "The model this worker serves (value 1)",
    ["version", "onnx_sha256"],
    multiprocess_mode="liveall",
)

_VALUE_LABELS = ["null", *(str(v) for v in range(SCORE_MIN, SCORE_MAX + 1))]
_KNOWN_FIELDS = frozenset((*FEATURES, "body", "tumors", "explain", "Content-Type"))
# Cell (feature j, value v) is j * 11 + v, with v = 0 for null.
_FEATURE_OFFSETS = np.arange(len(FEATURES)) * len(_VALUE_LABELS)
_OFFSETS = _FEATURE_OFFSETS.tolist()
FLUSH_SECONDS = 1.0


class PredictionTally:
    """This worker's running totals of diagnoses, probabilities and input values.

    Updating a dozen shared (memory-mapped, locked) counters on every request would cost more
    than the prediction itself; adding into local lists costs a microsecond or two. The totals
    reach the shared metrics every FLUSH_SECONDS (a daemon thread), whenever this worker
    serves /metrics, and when it exits (gunicorn's worker_exit hook).
    """

    SMALL = 8  # up to this many rows, plain Python beats numpy's per-call overhead

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bounds = list(MALIGNANT_PROBABILITY._upper_bounds)
        self._reset()
        self._flusher: threading.Thread | None = None
        # Resolved once: `.labels()` costs a dict look-up and a lock on every call.
        self._feature_children = [
            FEATURE_VALUES.labels(f, v) for f in FEATURES for v in _VALUE_LABELS
        ]
        self._class_children = (PREDICTIONS.labels("benign"), PREDICTIONS.labels("malignant"))

    def _reset(self) -> None:
        self._cells = [0] * (len(FEATURES) * len(_VALUE_LABELS))
        self._buckets = [0] * len(self._bounds)
        self._sum = 0.0
        self._malignant = 0
        self._benign = 0

    def add(self, rows: np.ndarray, malignant: np.ndarray, n_malignant: int) -> None:
        """Count one answered request: its rows (NaN = null) and malignant probabilities."""
        if len(rows) <= self.SMALL:
            cell_counts: dict[int, int] = {}
            for row in rows.tolist():
                for offset, value in zip(_OFFSETS, row, strict=True):
                    cell = offset + (0 if value != value else int(value))  # NaN != NaN
                    cell_counts[cell] = cell_counts.get(cell, 0) + 1
            probabilities = malignant.tolist()
            bucket_list = [bisect_left(self._bounds, p) for p in probabilities]
            total = sum(probabilities)
        else:
            cells = np.where(np.isnan(rows), 0, rows).astype(np.intp) + _FEATURE_OFFSETS
            counts = np.bincount(cells.ravel(), minlength=len(self._cells))
            occurred = np.flatnonzero(counts)
            cell_counts = dict(zip(occurred.tolist(), counts[occurred].tolist(), strict=True))
            bucket_list = np.searchsorted(self._bounds, malignant, side="left").tolist()
            total = float(malignant.sum())
        with self._lock:
            for cell, count in cell_counts.items():
                self._cells[cell] += count
            for bucket in bucket_list:
                self._buckets[bucket] += 1
            self._sum += total
            self._malignant += n_malignant
            self._benign += len(malignant) - n_malignant
        if self._flusher is None:
            self._start_flusher()

    def flush(self) -> None:
        """Move the totals into the shared metrics."""
        with self._lock:
            cells, buckets, total = self._cells, self._buckets, self._sum
            benign, malignant = self._benign, self._malignant
            self._reset()
        if benign:
            self._class_children[0].inc(benign)
        if malignant:
            self._class_children[1].inc(malignant)
        if any(buckets):
            histogram = MALIGNANT_PROBABILITY
            histogram._sum.inc(total)
            for bucket, count in zip(histogram._buckets, buckets, strict=True):
                if count:
                    bucket.inc(count)
        for cell, count in enumerate(cells):
            if count:
                self._feature_children[cell].inc(count)

    def _start_flusher(self) -> None:
        # Started on first use, so in each gunicorn worker after the fork, never in the master.
        def loop() -> None:
            while True:
                time.sleep(FLUSH_SECONDS)
                self.flush()

        self._flusher = threading.Thread(target=loop, name="metrics-flush", daemon=True)
        self._flusher.start()


TALLY = PredictionTally()


def record_predictions(rows: np.ndarray, malignant: np.ndarray, n_malignant: int) -> None:
    """Count one answered request's diagnoses, probabilities and input values."""
    TALLY.add(rows, malignant, n_malignant)


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


def record_batch_size(size: int) -> None:
    BATCH_SIZE.observe(size)


def record_rejections(errors: dict[str, str]) -> None:
    """Count rejected fields by name: `tumors[3].mitoses` counts as `mitoses`."""
    for path in errors:
        field = path.rsplit(".", 1)[-1]
        if field.startswith("tumors["):
            field = "tumors"
        REJECTED_VALUES.labels(field if field in _KNOWN_FIELDS else "unknown_field").inc()


def record_model(version: str, onnx_sha256: str) -> None:
    MODEL_INFO.labels(version, onnx_sha256).set(1)


def exposition(accept: str) -> tuple[bytes, str]:
    """The metrics page in the format `accept` asks for (Prometheus text by default), every
    worker's figures combined in multiprocess mode."""
    TALLY.flush()  # this worker's latest; the others flush within FLUSH_SECONDS
    registry = REGISTRY
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
