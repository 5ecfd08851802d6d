"""Prometheus metrics, correct across gunicorn workers (prometheus-client's multiprocess mode):
their definitions, the few recorded as they happen, and the page. Requests and predictions are
counted through `webservice.tally`, off the request path.

gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at an in-memory folder before any worker starts
and marks each exited worker dead; without it (tests, a single process) the default registry is
used. Label values are always from a fixed set, never from the client, so series stay bounded.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from oncology_model.datamodel import FEATURES
from oncology_model.drift import PROBABILITY_BUCKETS, DriftReference

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
# The gRPC service (`webservice.grpcserver`): its own names, since its labels are a gRPC method
# and status code, not an HTTP path and status; the predictions below count both transports.
GRPC_REQUESTS = Counter(
    "oncology_grpc_requests_total",
    "gRPC calls answered, by method (ModelInfer...), status code (OK, INVALID_ARGUMENT...) and "
    "caller (as for HTTP)",
    ["method", "code", "caller"],
)
GRPC_LATENCY = Histogram(
    "oncology_grpc_request_duration_seconds",
    "Time from receiving a gRPC call to the end of its answer",
    ["method", "code"],
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

# The prediction record (`webservice.records.writer`), counted in tumors. Queued is counted as
# each answer is given, so it outlives a killed worker in the metrics files: queued - written -
# dropped is what never reached the record, which the gunicorn master counts as lost.
RECORDS_QUEUED = Counter(
    "oncology_prediction_records_queued_total", "Answered tumors queued for the prediction record"
)
RECORDS_WRITTEN = Counter(
    "oncology_prediction_records_written_total", "Answered tumors written to the prediction record"
)
RECORDS_DROPPED = Counter(
    "oncology_prediction_records_dropped_total",
    "Answered tumors not recorded (full: the buffer was full while the database was unreachable, "
    "the oldest dropped; stopped: still buffered when the worker stopped; rejected: refused by "
    "the database)",
    ["reason"],
)
RECORDS_LOST = Counter(
    "oncology_prediction_records_lost_total",
    "Answered tumors of workers that died without writing them (killed, out of memory)",
)
RECORDS_PENDING = Gauge(
    "oncology_prediction_records_pending",
    "Answered tumors waiting to be written to the prediction record",
    multiprocess_mode="livesum",
)
RECORDS_WRITE_SECONDS = Histogram(
    "oncology_prediction_records_write_seconds",
    "Time to write one group of answers to the prediction record (one transaction)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
RECORDS_WRITE_ERRORS = Counter(
    "oncology_prediction_records_write_errors_total",
    "Failed writes to the prediction record (each retried while the records are buffered)",
)

# Is it right? (`webservice.records.quality`, docs/quality.md): confirmed cases counted as their
# outcomes arrive, a correction taking its earlier cell back; and every answer's expected cases
# (CBPE: its malignant probability as the chance it is malignant), counted as it is answered.
QUALITY_LABELS = ["model_version", "track", "predicted", "outcome"]
CONFIRMED_CASES = Counter(
    "oncology_confirmed_cases",
    "Confirmed outcomes joined to answers, by the answer's model version, track and diagnosis",
    QUALITY_LABELS,
)
RETRACTED_CASES = Counter(
    "oncology_retracted_cases",
    "Confirmed outcomes replaced by a correction (subtract from oncology_confirmed_cases_total)",
    QUALITY_LABELS,
)
EXPECTED_CASES = Counter(
    "oncology_expected_cases",
    "Answers' expected confirmed cases: sums of malignant probabilities (outcome=malignant) and "
    "of their complements (benign), by diagnosis (CBPE; assumes calibration)",
    QUALITY_LABELS,
)
MODEL_VALIDATION = Gauge(
    "oncology_model_validation",
    "The served model card's cross-validation figure (mean over the folds)",
    ["model_version", "figure"],
    multiprocess_mode="livemostrecent",
)


def record_confirmed(changes: list[Any]) -> None:
    """Count confirmed cases as outcomes are applied or corrected (`store.Change`)."""
    for change in changes:
        labels = (change.model_version, change.track, change.predicted)
        CONFIRMED_CASES.labels(*labels, change.outcome).inc()
        if change.replaced is not None:
            RETRACTED_CASES.labels(*labels, change.replaced).inc()


def record_served(version: str, track: str) -> None:
    """The served model's confirmed-case series at zero from the start: Prometheus counts an
    increase only from a series' first sample."""
    for predicted in ("benign", "malignant"):
        for outcome in ("benign", "malignant"):
            CONFIRMED_CASES.labels(version, track, predicted, outcome)
            RETRACTED_CASES.labels(version, track, predicted, outcome)


def record_validation(version: str, cross_validation: dict[str, Any]) -> None:
    for figure in ("sensitivity", "specificity"):
        MODEL_VALIDATION.labels(version, figure).set(cross_validation[figure]["mean"])


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

_KNOWN_FIELDS = frozenset(
    (*FEATURES, "body", "tumors", "rows", "explain", "Content-Type", "case_references",
     "Case-Reference", "case_reference")
)  # fmt: skip


def record_batch_size(size: int) -> None:
    BATCH_SIZE.observe(size)


def record_rejections(errors: dict[str, str]) -> None:
    """Count rejected fields by name: `tumors[3].mitoses` (JSON) and `row 4.mitoses` (CSV) count
    as `mitoses`, a whole bad item as `tumors` or `rows`."""
    for path in errors:
        field = path.rsplit(".", 1)[-1]
        if field.startswith("tumors["):
            field = "tumors"
        elif field.startswith("case_references["):
            field = "case_references"
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
    from webservice.tally import TALLY  # the tally counts into the metrics defined here

    TALLY.flush()  # this worker's latest; the others flush within FLUSH_SECONDS
    registry = REGISTRY
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped lib
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
