"""Reading a request body as JSON from the WSGI environ: content type, bytes, then the parse."""

from __future__ import annotations

import json
from typing import Any

import orjson

from webservice.problems import Problem

JSON_TYPES = ("application/json",)


def read_json(environ: dict[str, Any], max_bytes: int, *, csv_too: bool = False) -> Any:
    """The parsed JSON body, or a Problem: 415 for another content type (naming text/csv too
    where the endpoint takes it), 400 for bad JSON, 413 for a chunked body over `max_bytes`."""
    content_type = environ.get("CONTENT_TYPE", "")
    mimetype = content_type.split(";", 1)[0].strip().lower()
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        wanted = "application/json or text/csv" if csv_too else "application/json"
        raise Problem(
            415,
            f"The body must be {'JSON or CSV' if csv_too else 'JSON'}: send it with "
            f"'Content-Type: {wanted}' (got {content_type or 'no Content-Type'}).",
            {"Content-Type": f"must be {wanted}"},
            kind="unsupported-media-type",
        )
    return parse_json(read_body(environ, max_bytes))


def read_body(environ: dict[str, Any], max_bytes: int) -> bytes:
    """The request body, or a 413 Problem: before reading it when its declared length is over
    `max_bytes`, as soon as a chunked body passes it. The one place the service enforces the
    body limit; in front of it, the front refuses the same bodies before they reach a worker."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length and length.isdigit():
        declared = int(length)
        if declared > max_bytes:
            raise body_too_large(max_bytes, declared)
        data: bytes = stream.read(declared)
        return data
    # Chunked: no length was declared, so read one byte past the limit to notice it.
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise body_too_large(max_bytes)
    return data


def parse_json(data: bytes, *, nan_as_null: bool = False) -> Any:
    """Parsed JSON, or a 400 Problem. `nan_as_null` reads the bare `NaN` that Python's json
    module writes (not JSON, but what some clients send for a missing float) as null."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return _strict_fallback(data, str(exc), nan_as_null)


def body_too_large(max_bytes: int, declared: int | None = None) -> Problem:
    """413: the body is over `max_bytes`, by its `declared` length or found while reading it."""
    if declared is None:
        detail = f"The body is larger than the limit of {max_bytes} bytes."
    else:
        detail = f"The body is {declared} bytes; the limit is {max_bytes} bytes."
    return Problem(
        413,
        detail,
        {"body": f"must be at most {max_bytes} bytes"},
        kind="body-too-large",
    )


def _strict_fallback(data: bytes, orjson_error: str, nan_as_null: bool = False) -> Any:
    """Tell valid JSON that orjson refuses (say, nesting past its limit) from invalid JSON."""
    if not data.strip():
        raise _invalid_json("the body is empty")
    try:
        return json.loads(data, parse_constant=_nan_as_null if nan_as_null else _reject_constant)
    except RecursionError:
        raise _invalid_json("it is nested too deeply") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise _invalid_json(orjson_error) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _nan_as_null(name: str) -> Any:
    if name == "NaN":
        return None
    raise ValueError(f"{name} is not a JSON value")


def _invalid_json(reason: str) -> Problem:
    return Problem(
        400,
        f"The body is not valid JSON: {reason}.",
        {"body": f"not valid JSON: {reason}"},
        kind="invalid-json",
    )
