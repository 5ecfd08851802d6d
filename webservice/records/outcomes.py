"""Outcomes sent back: the confirmed diagnosis of a prediction, validated field by field.

Transport-neutral: the JSON and CSV endpoints turn their bodies into dicts and call `report`
(one outcome) or `reports` (a bulk request), which name every bad field and its rule.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

from webservice.records import ids

OUTCOMES = ("benign", "malignant")
MAX_BULK = 10_000
CASE_REFERENCE_RULE = (
    "must be 1 to 64 characters: letters, digits and . _ : / # - (a lab's accession number)"
)
SOURCE_RULE = "must be 1 to 64 characters naming how the outcome was confirmed, e.g. histology"
_CASE_REFERENCE = re.compile(r"[A-Za-z0-9._:/#-]{1,64}").fullmatch
_SOURCE = re.compile(r"[^\x00-\x1f\x7f]{1,64}").fullmatch
FIELDS = ("prediction_id", "case_reference", "outcome", "source", "confirmed_on", "corrects")


class Report(NamedTuple):
    """One outcome: for a prediction id or for every prediction of a case reference."""

    prediction_id: str | None
    case_reference: str | None
    outcome: str
    source: str
    confirmed_on: dt.date | None
    corrects: bool


class InvalidOutcomeError(ValueError):
    """Outcomes that break the contract: `errors` maps each bad field's path to its rule."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(f"{len(errors)} field(s) break the outcome contract")
        self.errors = errors


def case_reference_error(value: object) -> str | None:
    """Why `value` is no case reference, or None."""
    if type(value) is str and _CASE_REFERENCE(value):
        return None
    return f"{_shown(value)} {CASE_REFERENCE_RULE}"


def report(
    body: object, *, prediction_id: str | None = None, today: dt.date | None = None
) -> Report:
    """One outcome from a JSON object; `prediction_id` is the path's when the body has none."""
    errors: dict[str, str] = {}
    found = _report(body, "", errors, today or dt.date.today(), prediction_id)
    if errors or found is None:
        raise InvalidOutcomeError(errors)
    return found


def reports(items: object, *, today: dt.date | None = None) -> list[Report]:
    """A bulk request's outcomes: 1 to MAX_BULK objects, each naming its prediction."""
    rule = f"must be an array of 1 to {MAX_BULK:,} outcomes"
    if type(items) is not list or not 1 <= len(items) <= MAX_BULK:
        size = f"has {len(items)} outcomes: " if type(items) is list else ""
        raise InvalidOutcomeError({"outcomes": size + rule})
    errors: dict[str, str] = {}
    day = today or dt.date.today()
    found = [_report(item, f"outcomes[{i}].", errors, day, None) for i, item in enumerate(items)]
    if errors:
        raise InvalidOutcomeError(errors)
    return [item for item in found if item is not None]


def _report(
    body: object, at: str, errors: dict[str, str], today: dt.date, path_id: str | None
) -> Report | None:
    if type(body) is not dict:
        errors[at.rstrip(".") or "body"] = "must be an object with outcome and source"
        return None
    for name in body.keys() - set(FIELDS):
        errors[at + str(name)] = f"is not an outcome field; expected {', '.join(FIELDS)}"
    prediction_id = body.get("prediction_id", path_id)
    case_reference = body.get("case_reference")
    if path_id is not None:
        if "prediction_id" in body and body["prediction_id"] != path_id:
            errors[at + "prediction_id"] = "must be the path's prediction id, or left out"
        if case_reference is not None:
            errors[at + "case_reference"] = "cannot be sent with a prediction id in the path"
    elif (prediction_id is None) == (case_reference is None):
        errors[at + "prediction_id"] = "is required, or else case_reference: send exactly one"
    if prediction_id is not None and (
        type(prediction_id) is not str or not ids.parse(prediction_id)
    ):
        errors[at + "prediction_id"] = f"{_shown(prediction_id)} {ids.RULE}"
    if case_reference is not None and path_id is None:
        problem = case_reference_error(case_reference)
        if problem:
            errors[at + "case_reference"] = problem
    outcome = body.get("outcome")
    if outcome not in OUTCOMES:
        errors[at + "outcome"] = (
            "is required: benign or malignant"
            if outcome is None
            else f"{_shown(outcome)} must be benign or malignant"
        )
    source = body.get("source")
    if type(source) is not str or not _SOURCE(source):
        errors[at + "source"] = ("is required: " if source is None else _shown(source) + " ") + (
            SOURCE_RULE
        )
    confirmed_on = _date(body.get("confirmed_on"), at + "confirmed_on", errors, today)
    corrects = body.get("corrects", False)
    if type(corrects) is not bool:
        errors[at + "corrects"] = f"{_shown(corrects)} must be true or false"
    if any(key.startswith(at) or key == "body" for key in errors):
        return None
    return Report(prediction_id, case_reference, str(outcome), str(source), confirmed_on, corrects)


def _date(value: object, field: str, errors: dict[str, str], today: dt.date) -> dt.date | None:
    if value is None:
        return None
    rule = "must be a date YYYY-MM-DD, not after today (a day's margin for time zones)"
    if type(value) is not str:
        errors[field] = f"{_shown(value)} {rule}"
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        errors[field] = f"{_shown(value)} {rule}"
        return None
    if len(value) != 10 or day > today + dt.timedelta(days=1):
        errors[field] = f"{_shown(value)} {rule}"
        return None
    return day


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
