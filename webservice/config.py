"""Configuration: defaults, then environment variables, then the caller's (test) config."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

MIB = 1024 * 1024

DEFAULTS: dict[str, Any] = {
    # Largest accepted request body; a full 10,000-tumor batch is about 2.3 MiB.
    "MAX_BODY_BYTES": 4 * MIB,
    "MAX_BATCH": 10_000,
    # Folder of model artifacts; None means the ones bundled in the oncology_model package.
    "ARTIFACTS_DIR": None,
    # One JSON line per request on stdout (method, path, status, duration, request id, model).
    "ACCESS_LOG": True,
    "LOG_LEVEL": "INFO",
    # Bearer tokens (`NAME:SHA256HEX` lines, see webservice.tokens): None leaves the API open.
    "TOKENS_FILE": None,
    # Tokens for GET /metrics (e.g. Prometheus's); None leaves /metrics open.
    "METRICS_TOKENS_FILE": None,
    # Serve the prediction routes from the lane (`webservice.lane`), before Flask; off, the
    # flask-restx resources answer them, identically (tests check it), more slowly.
    "PREDICTION_LANE": True,
    # The front (nginx, `webservice.front`): seconds a client has to send its request line and
    # headers, and the longest pause it may make while sending the body (cut off past either).
    "HEADER_TIMEOUT": 10,
    "BODY_TIMEOUT": 10,
    # Open connections the front holds at most (each request passed on takes one more), and
    # requests it works on at once (headers read, body or answer under way): 503 beyond.
    "MAX_CONNECTIONS": 4096,
    "MAX_REQUESTS_IN_PROGRESS": 1024,
}


def _boolean(value: str) -> bool:
    """true/1/yes/on or false/0/no/off, in any case."""
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


# Environment variable -> (config key, parser).
ENVIRONMENT: dict[str, tuple[str, Any]] = {
    "ONCOLOGY_MAX_BODY_BYTES": ("MAX_BODY_BYTES", int),
    "ONCOLOGY_MAX_BATCH": ("MAX_BATCH", int),
    "ONCOLOGY_ARTIFACTS_DIR": ("ARTIFACTS_DIR", str),
    "ONCOLOGY_ACCESS_LOG": ("ACCESS_LOG", _boolean),
    "LOG_LEVEL": ("LOG_LEVEL", str.upper),
    "ONCOLOGY_TOKENS_FILE": ("TOKENS_FILE", str),
    "ONCOLOGY_METRICS_TOKENS_FILE": ("METRICS_TOKENS_FILE", str),
    "ONCOLOGY_PREDICTION_LANE": ("PREDICTION_LANE", _boolean),
    "ONCOLOGY_HEADER_TIMEOUT": ("HEADER_TIMEOUT", int),
    "ONCOLOGY_BODY_TIMEOUT": ("BODY_TIMEOUT", int),
    "ONCOLOGY_MAX_CONNECTIONS": ("MAX_CONNECTIONS", int),
    "ONCOLOGY_MAX_REQUESTS_IN_PROGRESS": ("MAX_REQUESTS_IN_PROGRESS", int),
}


# What each parser takes, for the message when a setting does not parse.
EXPECTED: dict[Any, str] = {int: "a whole number", _boolean: "true or false"}


def load_config(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    """The effective configuration: defaults < environment < `overrides`."""
    config = dict(DEFAULTS)
    for variable, (key, parse) in ENVIRONMENT.items():
        if variable in environ:
            try:
                config[key] = parse(environ[variable])
            except ValueError:
                expected = EXPECTED.get(parse, "a valid value")
                raise ValueError(
                    f"{variable}={environ[variable]!r} is not a valid {key}: expected {expected}"
                ) from None
    config.update(overrides or {})
    return config


def startup_problem(environ: Mapping[str, str] = os.environ) -> str | None:
    """What stops the service from starting with this environment, in one line (a setting that
    does not parse, a tokens file that is missing or broken), or None."""
    from webservice.tokens import read_file

    try:
        config = load_config(environ=environ)
        for key in ("TOKENS_FILE", "METRICS_TOKENS_FILE"):
            if config[key]:
                read_file(config[key])
    except ValueError as error:  # TokensFileError is one
        return str(error)
    return None
