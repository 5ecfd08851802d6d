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
from webservice.problems import Problem
from webservice.service import Service
from webservice.tally import Observed, record_predictions

JSON = "application/json"


class Answer(NamedTuple):
    """A 200 answer: its body and Content-Type, and what the metrics count of its predictions
    (recorded by the route that sends it, `record`, once the answer is built)."""

    body: bytes
    content_type: str
    observed: Observed | None = None


def record(answer: Answer) -> None:
    """Count an answer's predictions in the metrics: the one place they are recorded."""
    if answer.observed is not None:
        record_predictions(answer.observed)


def answer_single(environ: dict[str, Any], service: Service, *, max_bytes: int) -> Answer:
    """POST /v1/predictions: the answer for one tumor, as JSON or, when the client asks for it,
    as a one-row CSV with the batch's columns."""
    explain = explain_requested(environ)
    rows = [validate_row(read_json(environ, max_bytes))]
    answers, observed = with_model(service).predictions(rows, explain=explain)
    if wants_csv(environ):
        return Answer(csv_answer(answers, explain=explain), CSV_ANSWER, observed)
    return Answer(orjson.dumps(answers[0]), JSON, observed)


def answer_batch(
    environ: dict[str, Any], service: Service, *, max_bytes: int, max_batch: int
) -> Answer:
    """POST /v1/predictions/batch: the answers for up to `max_batch` tumors sent as JSON or as
    CSV (`webservice.csvbody`), given as JSON or, when the client asks for it, as CSV."""
    explain = explain_requested(environ)
    if is_csv(environ):
        rows = csv_rows(environ, max_bytes, max_batch)
    else:
        rows = json_rows(environ, max_bytes, max_batch)
    answers, observed = with_model(service).predictions(rows, explain=explain)
    if wants_csv(environ):
        return Answer(csv_answer(answers, explain=explain), CSV_ANSWER, observed)
    return Answer(orjson.dumps({"predictions": answers}), JSON, observed)


def json_rows(environ: dict[str, Any], max_bytes: int, max_batch: int) -> np.ndarray:
    """The validated rows of a JSON batch body. The parsed tumors are freed on return, before
    the answers are built: those then reuse the parsed objects' memory."""
    tumors = batch_items(read_json(environ, max_bytes, csv_too=True), max_batch)
    record_batch_size(len(tumors))
    return validate_rows(tumors, "tumors")


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


def batch_items(body: object, max_batch: int) -> list[Any]:
    """The `tumors` list of a batch body, checking the envelope and the batch size."""
    if not isinstance(body, dict):
        raise InvalidTumorError({"body": "must be a JSON object with the field tumors"})
    errors = {
        str(name): "is not a batch field; expected only tumors" for name in body if name != "tumors"
    }
    tumors = body.get("tumors")
    rule = f"must be an array of 1 to {max_batch} tumors"
    if "tumors" not in body:
        errors["tumors"] = f"is required: {rule}"
    elif not isinstance(tumors, list):
        errors["tumors"] = rule
    elif not 1 <= len(tumors) <= max_batch:
        errors["tumors"] = f"has {len(tumors)} tumors: {rule}"
    if errors:
        raise InvalidTumorError(errors)
    assert isinstance(tumors, list)
    return tumors
