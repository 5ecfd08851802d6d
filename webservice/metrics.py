"""Prometheus metrics, correct across gunicorn workers (prometheus-client's multiprocess mode).

gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at an in-memory folder before any worker starts
and marks each exited worker dead; without it (tests, a single process) the default registry is
used. Label values are always from a fixed set, never from the client, so series stay bounded.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from oncology_model.datamodel import FEATURES
from oncology_model.drift import PROBABILITY_BUCKETS, VALUE_LABELS, DriftReference

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter(
    "oncology_http_requests_total",
    "HTTP requests answered (caller: a name from the tokens file, anonymous when none was needed,"
    " unauthenticated when refused)",
    ["endpoint", "method", "status", "caller"],
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
    buckets=PROBABILITY_BUCKETS,
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
READY = Gauge(
    "oncology_ready",
    "1 when this pod's workers have a loaded, verified and self-checked model (what /readyz "
    "requires), else 0",
    multiprocess_mode="livemin",
)

# The training reference (oncology_model.drift), set once per worker at start. Every worker of a
# pod holds the same values: "livemostrecent" exports one series per pod, never a sum.
REFERENCE_FEATURE_RATIO = Gauge(
    "oncology_reference_feature_ratio",
    "Share of the training rows with this value of this feature (null: not measured)",
    ["feature", "value"],
    multiprocess_mode="livemostrecent",
)
REFERENCE_MALIGNANT_PREVALENCE = Gauge(
    "oncology_reference_malignant_prevalence",
    "Share of the training rows labelled malignant",
    multiprocess_mode="livemostrecent",
)
REFERENCE_PREDICTED_MALIGNANT_RATIO = Gauge(
    "oncology_reference_predicted_malignant_ratio",
    "Share of the training rows the model diagnoses as malignant at its threshold",
    multiprocess_mode="livemostrecent",
)
REFERENCE_PROBABILITY_BUCKET_RATIO = Gauge(
    "oncology_reference_malignant_probability_bucket_ratio",
    "Share of the training rows whose malignant probability is at most le (cumulative, like the "
    "buckets of oncology_malignant_probability)",
    ["le"],
    multiprocess_mode="livemostrecent",
)

_KNOWN_FIELDS = frozenset((*FEATURES, "body", "tumors", "rows", "explain", "Content-Type"))
# Cell (feature j, value v) is j * 11 + v, with v = 0 for null.
_FEATURE_OFFSETS = np.arange(len(FEATURES)) * len(VALUE_LABELS)
FLUSH_SECONDS = 1.0


# Validated rows (NaN = not measured): an (n, 9) array, or a list of one row for a single
# prediction (`validate_row`), which then makes no numpy call at all.
Rows = np.ndarray | list[list[float]]
Diagnoses = np.ndarray | list[bool]  # True: malignant; a list for the few rows of a single request
Probabilities = np.ndarray | list[float]  # malignant; a list for a single prediction
_Predictions = tuple[Rows, Probabilities, Diagnoses]  # rows, probabilities, diagnoses
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
        self._pending: list[_Predictions] = []
        self._pending_rows = 0
        self._requests: list[tuple[str, str, str, float, str]] = []
        self._flusher: threading.Thread | None = None
        # Resolved once: `.labels()` costs a dict look-up and a lock on every call. This also makes
        # every (feature, value) series exist at zero from start-up, so drift monitoring sees a
        # value that never arrives.
        self._feature_children = [
            FEATURE_VALUES.labels(f, v) for f in FEATURES for v in VALUE_LABELS
        ]
        self._class_children = (PREDICTIONS.labels("benign"), PREDICTIONS.labels("malignant"))

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

    def _after_add(self, overflowing: bool) -> None:
        if overflowing:
            self.flush()
        if self._flusher is None:
            self._start_flusher()

    def flush(self) -> None:
        """Count everything pending into the shared metrics."""
        with self._lock:
            pending, self._pending, self._pending_rows = self._pending, [], 0
            requests, self._requests = self._requests, []
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
        if pending:
            self._count_predictions(pending)

    def _count_predictions(self, pending: list[_Predictions]) -> None:
        n_malignant = 0
        cell_counts = np.zeros(len(self._feature_children), dtype=np.int64)
        for rows, malignant, flags in _joined(pending):
            n_malignant += int(np.count_nonzero(flags))
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

    def _start_flusher(self) -> None:
        # Started on first use, so in each gunicorn worker after the fork, never in the master.
        def loop() -> None:
            while True:
                time.sleep(FLUSH_SECONDS)
                self.flush()

        self._flusher = threading.Thread(target=loop, name="metrics-flush", daemon=True)
        self._flusher.start()


TALLY = Tally()


def record_predictions(rows: Rows, malignant: Probabilities, flags: Diagnoses) -> None:
    """Count one answered request's input values, malignant probabilities and diagnoses."""
    TALLY.add_predictions(rows, malignant, flags)


def record_request(endpoint: str, method: str, status: str, seconds: float, caller: str) -> None:
    """Count one answered request: labels from fixed sets (callers: the tokens files' names),
    and its duration."""
    TALLY.add_request(endpoint, method, status, seconds, caller)


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
    """Count rejected fields by name: `tumors[3].mitoses` (JSON) and `row 4.mitoses` (CSV) count
    as `mitoses`, a whole bad item as `tumors` or `rows`."""
    for path in errors:
        field = path.rsplit(".", 1)[-1]
        if field.startswith("tumors["):
            field = "tumors"
        elif field.startswith("row "):
            field = "rows"
        REJECTED_VALUES.labels(field if field in _KNOWN_FIELDS else "unknown_field").inc()


def record_model(version: str, onnx_sha256: str) -> None:
    MODEL_INFO.labels(version, onnx_sha256).set(1)


def record_ready(ready: bool) -> None:
    READY.set(1 if ready else 0)


def record_reference(reference: DriftReference) -> bool:
    """Export the training reference as gauges; False (nothing exported) when its probability
    buckets are not the ones this service's histogram counts in."""
    if reference.probability_buckets != PROBABILITY_BUCKETS:
        return False
    for feature, shares in reference.feature_values.items():
        for value, share in shares.items():
            REFERENCE_FEATURE_RATIO.labels(feature, value).set(share)
    REFERENCE_MALIGNANT_PREVALENCE.set(reference.malignant_prevalence)
    REFERENCE_PREDICTED_MALIGNANT_RATIO.set(reference.predicted_malignant_ratio)
    bounds = (*reference.probability_buckets, float("inf"))
    for bound, share in zip(bounds, reference.probability_cumulative, strict=True):
        # The histogram's own `le` spelling, so that Prometheus matches the two bucket by bucket.
        le = floatToGoString(bound)  # type: ignore[no-untyped-call]  # untyped lib
        REFERENCE_PROBABILITY_BUCKET_RATIO.labels(le).set(share)
    return True


def exposition(accept: str) -> tuple[bytes, str]:
    """The metrics page in the format `accept` asks for (Prometheus text by default), every
    worker's figures combined in multiprocess mode."""
    TALLY.flush()  # this worker's latest; the others flush within FLUSH_SECONDS
    registry = REGISTRY
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped lib
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
