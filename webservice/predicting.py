"""Answering prediction requests from the WSGI environ: the one implementation of the contract.

Both routes to it use these functions: `PredictionLane` (the fast WSGI route that serves the
requests) and the flask-restx resources (which document the endpoints and answer identically
when the app runs without the lane).
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import parse_qs

import numpy as np
import orjson

from oncology_model.datamodel import InvalidTumorError
from oncology_model.validation import validate_row, validate_rows
from webservice.csvbody import CSV_ANSWER, csv_answer, csv_rows, is_csv, wants_csv
from webservice.jsonbody import read_json
from webservice.metrics import record_batch_size
from webservice.observability import ANONYMOUS, CALLER, request_id
from webservice.problems import Problem
from webservice.records.outcomes import case_reference_error
from webservice.records.store import AnswerRecord, now
from webservice.service import Service
from webservice.tally import Observed, record_predictions

JSON = "application/json"


class Answer(NamedTuple):
    """A 200 answer: its body and Content-Type, and what the metrics and the prediction record
    keep of its predictions (recorded by the route that sends it, `record`, once the answer is
    built), with the clients' case references."""

    body: bytes
    content_type: str
    observed: Observed | None = None
    case_references: list[str | None] | None = None


def record(answer: Answer, environ: dict[str, Any], service: Service) -> None:
    """Count an answer's predictions in the metrics and queue them for the prediction record."""
    if answer.observed is not None:
        record_observed(
            answer.observed, environ.get(CALLER, ANONYMOUS), answer.case_references, service
        )


def record_observed(
    observed: Observed,
    caller: str,
    case_references: list[str | None] | None,
    service: Service,
) -> None:
    """Count answered predictions in the metrics and queue them for the prediction record: the
    one place both happen, for every transport."""
    record_predictions(observed)
    if service.recorder is not None:
        service.recorder.add(
            AnswerRecord(
                observed.id_block + "000000",
                now(),
                service.model_version,
                service.track,
                caller,
                request_id.get(),
                service.threshold,
                observed.rows,
                observed.answered,
                observed.flags,
                case_references,
            )
        )


def answer_single(environ: dict[str, Any], service: Service, *, max_bytes: int) -> Answer:
    """POST /v1/predictions: the answer for one tumor, as JSON or, when the client asks for it,
    as a one-row CSV with the batch's columns."""
    explain = explain_requested(environ)
    reference = header_case_reference(environ)
    rows = [validate_row(read_json(environ, max_bytes))]
    answers, observed = answering(service).predictions(rows, explain=explain)
    references: list[str | None] | None = None if reference is None else [reference]
    if wants_csv(environ):
        return Answer(csv_answer(answers, explain=explain), CSV_ANSWER, observed, references)
    return Answer(orjson.dumps(answers[0]), JSON, observed, references)


def answer_batch(
    environ: dict[str, Any], service: Service, *, max_bytes: int, max_batch: int
) -> Answer:
    """POST /v1/predictions/batch: the answers for up to `max_batch` tumors sent as JSON or as
    CSV (`webservice.csvbody`), given as JSON or, when the client asks for it, as CSV."""
    explain = explain_requested(environ)
    if is_csv(environ):
        rows, references = csv_rows(environ, max_bytes, max_batch)
    else:
        rows, references = json_rows(environ, max_bytes, max_batch)
    answers, observed = answering(service).predictions(rows, explain=explain)
    if wants_csv(environ):
        return Answer(csv_answer(answers, explain=explain), CSV_ANSWER, observed, references)
    return Answer(orjson.dumps({"predictions": answers}), JSON, observed, references)


def json_rows(
    environ: dict[str, Any], max_bytes: int, max_batch: int
) -> tuple[np.ndarray, list[str | None] | None]:
    """The validated rows of a JSON batch body, and its case references. The parsed tumors are
    freed on return, before the answers are built: those then reuse the parsed objects' memory."""
    tumors, references = batch_items(read_json(environ, max_bytes, csv_too=True), max_batch)
    record_batch_size(len(tumors))
    return validate_rows(tumors, "tumors"), references


CASE_REFERENCE_HEADER = "HTTP_CASE_REFERENCE"


def header_case_reference(environ: dict[str, Any]) -> str | None:
    """The single prediction's `Case-Reference` header (a lab's accession number), if sent."""
    value = environ.get(CASE_REFERENCE_HEADER)
    if value is None:
        return None
    problem = case_reference_error(value)
    if problem:
        raise InvalidTumorError({"Case-Reference": problem})
    return str(value)


def answering(service: Service) -> Service:
    """The Service, when it may answer predictions: a verified model (else 503, `not_loaded`),
    and, when records are required, room in the record's buffer (else 503)."""
    with_model(service)
    if not service.recording:
        raise not_recording()
    return service


def not_recording() -> Problem:
    """503: records are required and the record's buffer is full (the database is away)."""
    return Problem(
        503,
        "Predictions are on hold: every answer must be recorded (ONCOLOGY_RECORDS=required) "
        "and the prediction record cannot be written; retry shortly.",
        kind="records-unavailable",
        headers={"Retry-After": "5"},
    )


def with_model(service: Service) -> Service:
    """The Service, or a 503 problem when it has no verified model to answer with."""
    if not service.loaded:
        raise not_loaded(service)
    return service


def not_loaded(service: Service) -> Problem:
    """Why a Service without a model cannot answer: still loading (retry), or failed for good."""
    if service.error is None:
        return Problem(
            503,
            "The model is still loading; retry in a few seconds.",
            kind="model-loading",
            headers={"Retry-After": "1"},
        )
    return Problem(
        503,
        f"The model failed to load: {service.error}; this will not recover until the artifacts "
        "are fixed and the service is restarted.",
        kind="model-failed",
    )


def explain_requested(environ: dict[str, Any]) -> bool:
    """The `explain` query parameter: true/1 or false/0 (default false)."""
    query = environ.get("QUERY_STRING")
    if not query:
        return False  # the common case, without parsing
    values = parse_qs(query, keep_blank_values=True).get("explain")
    if values is None or values[-1] in ("false", "0"):
        return False
    if values[-1] in ("true", "1"):
        return True
    rule = f"{values[-1]!r} is not a boolean: use true or false (or 1 or 0)"
    raise Problem(
        422,
        f"The query parameter explain is {values[-1]!r}: use true or false.",
        {"explain": rule},
        kind="invalid-query-parameter",
    )


BATCH_FIELDS = ("tumors", "case_references")


def batch_items(body: object, max_batch: int) -> tuple[list[Any], list[str | None] | None]:
    """The `tumors` list of a batch body and its optional `case_references` (one per tumor,
    a lab's accession number or null), checking the envelope and the batch size."""
    if not isinstance(body, dict):
        raise InvalidTumorError({"body": "must be a JSON object with the field tumors"})
    errors = {
        str(name): "is not a batch field; expected tumors and optionally case_references"
        for name in body
        if name not in BATCH_FIELDS
    }
    tumors = body.get("tumors")
    rule = f"must be an array of 1 to {max_batch} tumors"
    if "tumors" not in body:
        errors["tumors"] = f"is required: {rule}"
    elif not isinstance(tumors, list):
        errors["tumors"] = rule
    elif not 1 <= len(tumors) <= max_batch:
        errors["tumors"] = f"has {len(tumors)} tumors: {rule}"
    references = body.get("case_references")
    if references is not None:
        if not isinstance(references, list) or (
            isinstance(tumors, list) and len(references) != len(tumors)
        ):
            errors["case_references"] = (
                "must be an array with one case reference (or null) per tumor"
            )
        else:
            for i, reference in enumerate(references):
                problem = None if reference is None else case_reference_error(reference)
                if problem:
                    errors[f"case_references[{i}]"] = problem
    if errors:
        raise InvalidTumorError(errors)
    assert isinstance(tumors, list)
    return tumors, references
