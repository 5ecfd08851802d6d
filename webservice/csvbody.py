"""CSV on the batch endpoint, with the standard library's csv module (no pandas in serving).

A request body of `Content-Type: text/csv` is a header row of the nine feature names (any order)
and one row per tumor, an empty cell (or `?`) where a score was not measured; an optional
`case_reference` column carries each tumor's case reference (a lab's accession number). `Accept:
text/csv` asks for the answers as CSV: `prediction_id`, `ANSWER_COLUMNS` (and
`CONTRIBUTION_COLUMNS` with explain), one row per tumor in order. Errors stay problem+json.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from oncology_model.datamodel import (
    ANSWER_COLUMNS,
    CONTRIBUTION_COLUMNS,
    InvalidTumorError,
)
from oncology_model.validation import header_order, validate_cells
from webservice.jsonbody import read_body
from webservice.metrics import record_batch_size
from webservice.problems import Problem
from webservice.records.outcomes import case_reference_error

CSV_TYPE = "text/csv"
CASE_REFERENCE = "case_reference"
CSV_ANSWER = "text/csv; charset=utf-8"


def is_csv(environ: dict[str, Any]) -> bool:
    """The request body is CSV (`text/csv`, any parameters)."""
    content_type: str = environ.get("CONTENT_TYPE", "")
    return content_type[:8].lower() == CSV_TYPE


def wants_csv(environ: dict[str, Any]) -> bool:
    """The client prefers a CSV answer to JSON (JSON unless Accept ranks text/csv higher)."""
    accept = environ.get("HTTP_ACCEPT")
    if not accept or CSV_TYPE not in accept:
        return False  # the common case, without parsing
    best = parse_accept_header(accept, MIMEAccept).best_match(["application/json", CSV_TYPE])
    return best == CSV_TYPE


def csv_rows(
    environ: dict[str, Any], max_bytes: int, max_batch: int
) -> tuple[np.ndarray, list[str | None] | None]:
    """The validated rows of a CSV body and its case references (when it has the column): 400
    when it is not CSV text (or looks like JSON), 422 naming `header.<column>`, `rows` (not 1 to
    `max_batch` rows), `row N` or `row N.<column>` (rows counted from 1 after the header)."""
    data = read_body(environ, max_bytes)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _invalid_csv("it is not UTF-8 text") from None
    if text.lstrip()[:1] in ("{", "["):
        raise _invalid_csv(
            "it looks like JSON: send JSON with Content-Type: application/json, "
            "or CSV (a header row of the feature names, then rows) as text/csv"
        )
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline=""), strict=True) if r]
    except csv.Error as exc:
        raise _invalid_csv(str(exc)) from None
    if not records:
        raise _invalid_csv("the body is empty: send a header row of the feature names, then rows")
    header, rows = records[0], records[1:]
    errors: dict[str, str] = {}
    references = None
    names = [name.strip() for name in header]
    if CASE_REFERENCE in names and names.count(CASE_REFERENCE) == 1:
        at = names.index(CASE_REFERENCE)
        header = header[:at] + header[at + 1 :]
        references = []
        for number, row in enumerate(rows, start=1):
            if len(row) == len(names):
                reference = row.pop(at).strip() or None
                problem = reference and case_reference_error(reference)
                if problem:
                    errors[f"row {number}.{CASE_REFERENCE}"] = problem
                references.append(reference)
    try:
        header_order(header)
    except InvalidTumorError as exc:
        errors.update(exc.errors)  # told even when there are no rows
    if not 1 <= len(rows) <= max_batch:
        errors["rows"] = f"has {len(rows)} rows: must be 1 to {max_batch} rows after the header"
    else:
        record_batch_size(len(rows))
    if errors:
        raise InvalidTumorError(errors)
    return validate_cells(header, rows), references


def csv_answer(answers: list[dict[str, Any]], *, explain: bool) -> bytes:
    """The JSON answers (`Service.predictions`) as CSV: the same figures, one row each."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("prediction_id", *ANSWER_COLUMNS, *(CONTRIBUTION_COLUMNS if explain else ())))
    for answer in answers:
        row = [
            answer["prediction_id"],
            answer["prediction"],
            answer["probabilities"]["malignant"],
            ";".join(answer["imputed"]),
        ]
        if explain:
            row.extend(answer["contributions"].values())
        writer.writerow(row)
    return out.getvalue().encode()


def _invalid_csv(reason: str) -> Problem:
    return Problem(
        400,
        f"The body is not valid CSV: {reason}.",
        {"body": f"not valid CSV: {reason}"},
        kind="invalid-csv",
    )
