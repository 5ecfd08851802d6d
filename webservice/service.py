"""The `Service`: owns the classifier of one worker and turns validated rows into answers."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from oncology_model import ArtifactError, Classifier
from oncology_model.datamodel import FEATURES
from oncology_model.integrity import ONNX_FILE
from oncology_model.storage import ObjectUrl, is_url
from oncology_model.validation import FEW
from oncology_model.verify import verified_classifier
from webservice import metrics
from webservice.records import ids
from webservice.tally import Observed, Rows

if TYPE_CHECKING:
    from webservice.records.store import RecordStore
    from webservice.records.writer import RecordWriter

log = logging.getLogger(__name__)


INTENDED_USE = (
    "A research and teaching example of serving a tabular classifier. It is not a medical "
    "device and must not be used to diagnose, treat or triage any patient."
)
LIMITATIONS = (
    "Trained on 699 fine-needle aspirates from one hospital (University of Wisconsin, "
    "1989-1992), scored 1..10 by one group of cytologists; scores from other labs, protocols or "
    "populations may not mean the same. Probabilities are calibrated on that data only. The "
    "threshold favours sensitivity, so false alarms are expected."
)


class Service:
    """Loads, verifies and self-checks the classifier once; `error` says why it is not ready.

    `artifacts_dir` is a folder, or an `s3://BUCKET/PREFIX/` model version, downloaded into a
    temporary folder first (every artifact checked against the metadata's SHA-256 as it arrives,
    see `oncology_model.model_storage`). Until `load` has run the Service is still starting;
    after a failed load it stays unready (`error` names the cause, such as the missing or
    altered object) for the life of the process."""

    def __init__(self, *, artifacts_dir: str | None = None, load: bool = True) -> None:
        self.classifier: Classifier | None = None
        self.error: str | None = None
        self.shutting_down = False
        self.model_version = "none"
        self.source = artifacts_dir if artifacts_dir and is_url(artifacts_dir) else None
        self.artifacts_dir = Path(artifacts_dir) if artifacts_dir and not self.source else None
        self.track = "stable"
        # The prediction record (`webservice.records`), when on: its writer and store.
        self.recorder: RecordWriter | None = None
        self.records: RecordStore | None = None
        if load:
            self.load()

    def load(self) -> None:
        """Load, verify and self-check the model (once); on failure set `error` and log it."""
        try:
            if self.source is not None:
                self.artifacts_dir = downloaded(self.source)
            classifier = verified_classifier(artifacts_dir=self.artifacts_dir)
        except ArtifactError as exc:
            self.error = str(exc)
            log.error("model not loaded, the service stays unready: %s", exc)
            metrics.record_ready(False)
            return
        self.classifier = classifier
        self.model_version = classifier.model_version
        self.card = model_card(classifier.metadata)
        metrics.record_model(self.model_version, self.card["artifacts"][ONNX_FILE])
        metrics.record_validation(self.model_version, self.card["cross_validation"]["metrics"])
        metrics.record_ready(True)
        reference = classifier.drift_reference
        if reference is None or not metrics.record_reference(reference):
            log.warning(
                "model %s has no drift reference for this service's metrics: retrain it "
                "(make train) to monitor drift",
                self.model_version,
            )

    @property
    def loaded(self) -> bool:
        """The model is loaded, verified and self-checked: predictions can be answered."""
        return self.classifier is not None

    @property
    def ready(self) -> bool:
        """Loaded, not shutting down, and recording if records are required: the load balancer
        may send new requests.

        Shutting down never refuses a request that reached this worker: those are answered."""
        return self.loaded and not self.shutting_down and self.recording

    @property
    def recording(self) -> bool:
        """False only when records are required and the record's buffer is full."""
        return self.recorder is None or self.recorder.accepting

    @property
    def threshold(self) -> float:
        assert self.classifier is not None, "callers check `loaded` first"
        return self.classifier.threshold

    def scores(self, rows: Rows) -> tuple[list[float], list[bool], Observed]:
        """Malignant probabilities (rounded) and diagnoses (True: malignant) of validated rows
        (NaN = not measured), from one engine call, and what the metrics and the record keep of
        them, with the answer's prediction-id block (the caller records it: the Service has no
        side effects)."""
        classifier = self.classifier
        assert classifier is not None, "callers check `loaded` first"
        if (
            len(rows) <= FEW
        ):  # plain Python beats numpy's fixed cost per call (see `oncology_model.validation.FEW`)
            probabilities = (
                [classifier.malignant_probability(_as_lists(rows)[0])]  # no numpy call at all
                if len(rows) == 1
                else classifier.malignant_probabilities(rows).tolist()
            )
            flags = list(map(classifier.label, probabilities))
            answered = round6(probabilities)
            return answered, flags, Observed(rows, probabilities, flags, ids.new_block(), answered)
        malignant = classifier.malignant_probabilities(rows)
        labels = classifier.labels(malignant)
        # Rounded to 6 decimals: float32 inference carries no more, and answers stay readable.
        answered = round6(malignant)
        observed = Observed(rows, malignant, labels, ids.new_block(), answered)
        return answered, labels.tolist(), observed

    def contributions(self, rows: Rows) -> np.ndarray:
        """Each row's per-feature contributions to its malignant probability (rounded), (n, 9)."""
        assert self.classifier is not None, "callers check `loaded` first"
        return self.classifier.contributions(np.asarray(rows), decimals=6)

    def predictions(
        self, rows: Rows, *, explain: bool = False
    ) -> tuple[list[dict[str, Any]], Observed]:
        """One answer per validated row (NaN = not measured), from one engine call: JSON-ready
        dicts, `imputed` a tuple of the names of the scores not measured (a JSON array); and
        what the metrics count of them."""
        malignant, flags, observed = self.scores(rows)
        threshold, version = self.threshold, self.model_version
        answers: list[dict[str, Any]] = [
            {
                "prediction_id": prediction_id,
                "prediction": "malignant" if flag else "benign",
                "probabilities": {"benign": benign, "malignant": p},
                "threshold": threshold,
                "imputed": NONE_IMPUTED,
                "model_version": version,
            }
            for prediction_id, flag, benign, p in zip(
                ids.ids(observed.id_block, len(flags)),
                flags,
                complements6(malignant),
                malignant,
                strict=True,
            )
        ]
        for index, absent in not_measured(rows):
            answers[index]["imputed"] = tuple(
                name for name, missing in zip(FEATURES, absent, strict=True) if missing
            )
        if explain:
            contributions = self.contributions(rows).tolist()
            for answer, deltas in zip(answers, contributions, strict=True):
                answer["contributions"] = dict(zip(FEATURES, deltas, strict=True))
        return answers, observed


def init_records(service: Service, settings: dict[str, Any]) -> None:
    """The prediction record, unless off: its store and this process's writer, the database
    migrated first when DB_MIGRATE (gunicorn's master migrates once and turns it off for its
    workers and the gRPC processes). A database that cannot be reached leaves the service
    answering; the writer buffers and retries."""
    if settings["RECORDS"] == "off":
        return
    from webservice.records.store import RecordStore, engine_for, migrate_at_start
    from webservice.records.writer import RecordWriter

    engine = engine_for(settings["DATABASE_URL"])
    if settings["DB_MIGRATE"]:
        migrate_at_start(engine)
    service.records = RecordStore(engine)
    service.recorder = RecordWriter(
        service.records,
        capacity=settings["RECORDS_BUFFER"],
        interval=settings["RECORDS_FLUSH_SECONDS"],
        required=settings["RECORDS"] == "required",
    )


# Shared by every answer without imputed scores: one object instead of one list per answer.
NONE_IMPUTED: tuple[str, ...] = ()

# Up to this many rows, plain Python beats numpy's fixed cost per call (several microseconds for
# `round` alone): a single prediction takes the Python branches below, a batch the numpy ones.
# Both give the same figures: numpy rounds to 6 decimals by scaling by 1e6, rounding half to
# even (as Python's `round` does) and dividing by 1e6.


def round6(values: np.ndarray | list[float]) -> list[float]:
    """`values.round(6).tolist()`, exactly."""
    if isinstance(values, list):
        return [round(value * 1e6) / 1e6 for value in values]
    return list(values.round(6).tolist())


def complements6(probabilities: list[float]) -> list[float]:
    """1 - p for each probability, rounded like `round6`."""
    if len(probabilities) <= FEW:
        return [round((1.0 - p) * 1e6) / 1e6 for p in probabilities]
    return round6(1.0 - np.array(probabilities))


def _as_lists(rows: Rows) -> list[list[float]]:
    return rows if isinstance(rows, list) else list(rows.tolist())


def not_measured(rows: Rows) -> list[tuple[int, list[bool]]]:
    """(index, which of the nine scores are NaN) for each row with a score not measured."""
    if len(rows) <= FEW:
        found = []
        for index, row in enumerate(_as_lists(rows)):
            total = sum(row)  # NaN if any score is (validated scores are finite otherwise)
            if total != total:
                found.append((index, [value != value for value in row]))
        return found
    missing = np.isnan(rows)
    if not missing.any():
        return []
    return [
        (index, missing[index].tolist()) for index in np.flatnonzero(missing.any(axis=1)).tolist()
    ]


def downloaded(source: str) -> Path:
    """The model version at the URL `source`, downloaded and verified into a temporary folder
    removed when the process exits; the download (what, how big, how long) is logged."""
    from oncology_model.model_storage import DOWNLOAD_FAILED, fetched_model

    failed = os.environ.get(DOWNLOAD_FAILED)
    if failed:
        raise ArtifactError(failed)
    try:
        url = ObjectUrl.parse(source)
    except ValueError as exc:
        raise ArtifactError(str(exc)) from None
    try:
        fetched = fetched_model(url)
    except OSError as exc:  # a StorageError before any object (the client itself)
        raise ArtifactError(f"model {source}: {exc}") from None
    atexit.register(shutil.rmtree, fetched.directory, ignore_errors=True)
    log.info("%s", fetched.summary())
    return fetched.directory


def model_card(metadata: dict[str, Any]) -> dict[str, Any]:
    """The public description of the model, from its metadata."""
    cv = metadata["cross_validation"]
    return {
        "name": metadata["name"],
        "version": metadata["model_version"],
        "package_version": metadata["package_version"],
        "algorithm": metadata["algorithm"],
        "engine": {"name": metadata["engine"]["name"], "opset": metadata["engine"]["opset"]},
        "features": [
            {
                "name": f["name"],
                "min": f["min"],
                "max": f["max"],
                "median": f["median"],
                "description": f["description"],
            }
            for f in metadata["features"]
        ],
        "classes": ["benign", "malignant"],
        "threshold": metadata["threshold"],
        "cross_validation": {
            "scheme": cv["scheme"],
            "selection_rule": cv["selection_rule"],
            "target_sensitivity": cv["target_sensitivity"],
            "metrics": cv["chosen"],
        },
        "artifacts": {name: a["sha256"] for name, a in metadata["artifacts"].items()},
        "training_data": metadata["training_data"],
        "trained_at": metadata["trained_at"],
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
    }
