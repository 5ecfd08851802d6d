"""Reading a request body as JSON: the content type, then the bytes, then the parse."""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask import Request

from webservice.problems import Problem

JSON_TYPES = ("application/json",)


def read_json(request: Request) -> Any:
    """The parsed JSON body, or a Problem: 415 for another content type, 400 for bad JSON.

    The body size was checked against the limit before this runs (see `webservice.middleware`).
    """
    mimetype = request.mimetype
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        sent = request.content_type or "no Content-Type"
        raise Problem(
            415,
            f"The body must be JSON: send it with 'Content-Type: application/json' (got {sent}).",
            {"Content-Type": "must be application/json"},
            kind="unsupported-media-type",
        )
    data = request.get_data(cache=False)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return _strict_fallback(data, str(exc))


def _strict_fallback(data: bytes, orjson_error: str) -> Any:
    """Tell valid JSON that orjson refuses (integers past 64 bits) from invalid JSON."""
    if not data.strip():
        raise _invalid_json("the body is empty")
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise _invalid_json("it is nested too deeply") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise _invalid_json(orjson_error) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _invalid_json(reason: str) -> Problem:
    return Problem(
        400,
        f"The body is not valid JSON: {reason}.",
        {"body": f"not valid JSON: {reason}"},
        kind="invalid-json",
    )
