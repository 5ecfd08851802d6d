"""Outcomes and records, transport-neutral: look a prediction up, join outcomes to it, erase it.

The flask-restx resources (`webservice.resources.records`) call these. Every failure is a
`Problem`: 404 when this server keeps no records, has no such prediction or it was erased, 422
naming each bad field, 503 when the database cannot be reached.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import sqlalchemy as sa

from webservice.csvbody import is_csv
from webservice.jsonbody import read_body, read_json
from webservice.metrics import record_confirmed
from webservice.problems import Problem
from webservice.records import ids
from webservice.records.outcomes import InvalidOutcomeError, report, reports
from webservice.records.store import Change, Erased, RecordStore
from webservice.service import Service

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long an outcome for a just-answered prediction waits for it to reach the record (written by
# another worker or pod within its flush interval) before the prediction counts as unknown.
SETTLE_SECONDS = 3.0
STATUSES = ("applied", "unchanged", "corrected", "conflict", "unknown", "erased")


def store_of(service: Service) -> RecordStore:
    """The record store, or 404 when this server keeps no records."""
    if service.records is None:
        raise Problem(
            404,
            "This server keeps no prediction records (ONCOLOGY_RECORDS=off).",
            kind="records-off",
        )
    return service.records


def reached(call: Callable[[], T]) -> T:
    """`call()`, with a database that cannot be reached answered as 503 (logged without data)."""
    try:
        return call()
    except sa.exc.OperationalError as error:
        log.error("the prediction record cannot be reached: %s", type(error.orig).__name__)
        raise Problem(
            503,
            "The prediction record cannot be reached; retry shortly.",
            kind="records-unavailable",
            headers={"Retry-After": "5"},
        ) from None


def invalid_id(prediction_id: str) -> Problem:
    return Problem(
        422,
        "The prediction id is not valid.",
        {"prediction_id": f"{prediction_id[:40]!r} {ids.RULE}"},
        kind="invalid-prediction-id",
    )


def unknown(prediction_id: str) -> Problem:
    return Problem(
        404, f"There is no prediction {prediction_id} on record.", kind="unknown-prediction"
    )


def erased(prediction_id: str) -> Problem:
    """404 (of the kind erased-prediction): it existed, and nothing of it is left to show."""
    return Problem(404, f"Prediction {prediction_id} was erased.", kind="erased-prediction")


def get_record(service: Service, prediction_id: str) -> dict[str, Any]:
    """GET /v1/predictions/{id}: the record with its outcome and history."""
    store = store_of(service)
    if ids.parse(prediction_id) is None:
        raise invalid_id(prediction_id)
    settle(service, [prediction_id])
    try:
        found = reached(lambda: store.record(prediction_id))
    except Erased:
        raise erased(prediction_id) from None
    if found is None:
        raise unknown(prediction_id)
    return found


def erase(service: Service, prediction_id: str) -> dict[str, str]:
    """DELETE /v1/predictions/{id}: erase the prediction's medical data (right to erasure);
    `erased`, or `already erased` when it was (idempotent)."""
    store = store_of(service)
    if ids.parse(prediction_id) is None:
        raise invalid_id(prediction_id)
    settle(service, [prediction_id])
    result = reached(lambda: store.erase(prediction_id))
    if result == "unknown":
        raise unknown(prediction_id)
    return {"prediction_id": prediction_id, "status": result}


def put_outcome(
    service: Service, prediction_id: str, body: object, caller: str
) -> tuple[int, dict[str, Any]]:
    """PUT /v1/predictions/{id}/outcome: (201, record) when new, (200, record) when the same
    again or corrected; 409 when it contradicts the stored one; 404, 422."""
    store = store_of(service)
    if ids.parse(prediction_id) is None:
        raise invalid_id(prediction_id)
    outcome = validated(lambda: report(body, prediction_id=prediction_id))
    settle(service, [prediction_id])
    changes: list[Change] = []
    (result,) = reached(lambda: store.apply_outcomes([outcome], by=caller, changes=changes))
    record_confirmed(changes)
    status = result["status"]
    if status == "unknown":
        raise unknown(prediction_id)
    if status == "erased":
        raise erased(prediction_id)
    if status == "conflict":
        stored = result["stored_outcome"]
        raise Problem(
            409,
            f"Prediction {prediction_id} already has the outcome {stored}, confirmed differently; "
            'send "corrects": true to replace it (the earlier one is kept in its history).',
            {"outcome": f"contradicts the stored outcome ({stored}) without corrects: true"},
            kind="outcome-conflict",
        )
    record = reached(lambda: store.record(prediction_id))
    return (201 if status == "applied" else 200), {"status": status, "record": record}


def post_outcomes(
    service: Service, environ: dict[str, Any], caller: str, *, max_bytes: int
) -> dict[str, Any]:
    """POST /v1/outcomes: up to 10,000 outcomes (JSON or CSV), answered per row."""
    store = store_of(service)
    if is_csv(environ):
        items: object = csv_outcomes(read_body(environ, max_bytes))
    else:
        body = read_json(environ, max_bytes, csv_too=True)
        if not isinstance(body, dict) or body.keys() != {"outcomes"}:
            raise Problem(
                422,
                "The body must be an object with the field outcomes.",
                {"body": "must be a JSON object with only the field outcomes"},
                kind="invalid-outcome",
            )
        items = body["outcomes"]
    outcomes = validated(lambda: reports(items))
    settle(service, [o.prediction_id for o in outcomes if o.prediction_id])  # case references too
    changes: list[Change] = []
    results = reached(lambda: store.apply_outcomes(outcomes, by=caller, changes=changes))
    record_confirmed(changes)
    summary = dict.fromkeys(STATUSES, 0)
    for result in results:
        summary[result["status"]] += 1
    return {"summary": summary, "results": results}


QUALITY_FILTERS = ("since", "until", "model_version", "track")


def get_quality(service: Service, query: dict[str, str]) -> dict[str, Any]:
    """GET /v1/quality: realized and estimated quality per model version and track, over a
    window (`since`, `until`: YYYY-MM-DD, UTC), beside the served model card's cross-validation
    figures."""
    from webservice.records.quality import Window, quality

    store = store_of(service)
    errors = {
        name: f"is not a filter of quality; use {', '.join(QUALITY_FILTERS)}"
        for name in query
        if name not in QUALITY_FILTERS
    }
    days: dict[str, dt.datetime | None] = {}
    for name in ("since", "until"):
        text = query.get(name)
        days[name] = None
        if text is not None:
            try:
                day = dt.date.fromisoformat(text)
                if len(text) != 10:
                    raise ValueError(text)
                days[name] = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            except ValueError:
                errors[name] = f"{text[:20]!r} must be a date YYYY-MM-DD (UTC)"
    if errors:
        raise Problem(
            422, "A filter of quality is not valid.", errors, kind="invalid-query-parameter"
        )
    window = Window(days["since"], days["until"], query.get("model_version"), query.get("track"))
    settle(service, [])  # this worker's answers of the last moments count too
    validation = None
    if service.loaded:
        validation = {service.model_version: service.card["cross_validation"]["metrics"]}
    return reached(lambda: quality(store, window, validation=validation))


CSV_COLUMNS = ("prediction_id", "case_reference", "outcome", "source", "confirmed_on", "corrects")


def csv_outcomes(data: bytes) -> list[dict[str, Any]]:
    """The outcomes of a CSV body (a header row naming its columns, then one row per outcome;
    an empty cell is a field left out), as the JSON objects they stand for."""
    try:
        text = data.decode("utf-8-sig")
        records = [r for r in csv.reader(io.StringIO(text, newline=""), strict=True) if r]
    except (UnicodeDecodeError, csv.Error) as error:
        raise Problem(
            400,
            f"The body is not valid CSV: {error}.",
            {"body": "not valid UTF-8 CSV"},
            kind="invalid-csv",
        ) from None
    if not records:
        raise outcome_problem({"body": "is empty: send a header row, then outcomes"})
    header = [name.strip() for name in records[0]]
    errors = {
        f"header.{name}": f"is not an outcome column; expected {', '.join(CSV_COLUMNS)}"
        for name in header
        if name not in CSV_COLUMNS
    }
    errors.update(
        {f"header.{name}": "appears more than once" for name in header if header.count(name) > 1}
    )
    if errors:
        raise outcome_problem(errors)
    items: list[dict[str, Any]] = []
    for number, row in enumerate(records[1:], start=1):
        if len(row) != len(header):
            raise outcome_problem(
                {f"row {number}": f"has {len(row)} cells; the header has {len(header)}"}
            )
        item: dict[str, Any] = {
            name: cell.strip() for name, cell in zip(header, row, strict=True) if cell.strip()
        }
        if "corrects" in item:
            item["corrects"] = {"true": True, "false": False}.get(
                item["corrects"].lower(), item["corrects"]
            )
        items.append(item)
    return items


def validated(call: Callable[[], T]) -> T:
    try:
        return call()
    except InvalidOutcomeError as error:
        raise outcome_problem(error.errors) from None


def outcome_problem(errors: dict[str, str]) -> Problem:
    count = len(errors)
    return Problem(
        422,
        "1 field breaks the outcome contract."
        if count == 1
        else f"{count} fields break the outcome contract.",
        errors,
        kind="invalid-outcome",
    )


def settle(service: Service, prediction_ids: Sequence[str]) -> None:
    """Make sure answers given just now are on record before they are looked up: write this
    worker's buffer, then wait (up to SETTLE_SECONDS) for recent ids not yet found, which another
    worker or pod writes within its flush interval."""
    store = service.records
    if store is None:
        return
    if service.recorder is not None:
        service.recorder.flush(timeout=SETTLE_SECONDS)
    wanted = [pid for pid in prediction_ids if ids.parse(pid)]
    now_ms = time.time() * 1000
    horizon = now_ms - SETTLE_SECONDS * 1000 - 1000  # older ones had time to be written
    recent = [pid for pid in wanted if horizon <= ids.answered_ms(pid) <= now_ms + 1000]
    deadline = time.monotonic() + SETTLE_SECONDS
    while recent:
        found = reached(partial(store.exists, recent))
        recent = [pid for pid in recent if pid not in found]
        if not recent or time.monotonic() > deadline:
            return
        time.sleep(0.05)
