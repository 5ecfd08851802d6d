"""How schemathesis sends the batch endpoint's JSON-shaped tumors as `text/csv`.

OpenAPI 2.0 gives one body schema for every media type, so schemathesis generates `{"tumors":
[...]}` for CSV too; this serializer writes it as the CSV a client would send, faithfully: what
JSON cannot accept (a missing field, a string, a boolean, a nested value) becomes a cell the
service cannot accept either. Loaded by tests/unit/test_openapi.py and, through SCHEMATHESIS_HOOKS,
by `make reliability`.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import schemathesis

MISSING = "<missing>"


@schemathesis.serializer("text/csv")
def tumors_as_csv(ctx: Any, value: Any) -> bytes:
    """A header of every field named (first seen first), then one row per tumor."""
    tumors = value.get("tumors") if isinstance(value, dict) else None
    if not isinstance(tumors, list) or set(value) != {"tumors"}:
        return b"<not a batch of tumors>\n"
    names: list[str] = []
    for tumor in tumors:
        if isinstance(tumor, dict):
            names.extend(name for name in tumor if name not in names)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names or ["<no fields>"])
    for tumor in tumors:
        if isinstance(tumor, dict):
            writer.writerow([_cell(tumor.get(name, MISSING)) for name in names])
        else:
            writer.writerow(["<not an object>"])
    return out.getvalue().encode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if type(value) in (int, float) or value == MISSING:
        return str(value)
    return f"<{type(value).__name__} {value!r}>"
