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
    # Folder of model artifacts, or a model version in a bucket (s3://BUCKET/PREFIX/, downloaded
    # and verified at start: docs/storage.md); None means the ones bundled in the package.
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
    # The prediction record (docs/records.md): on (buffered, the oldest dropped and counted when
    # the database is unreachable for long), required (fail closed: 503 and unready when the
    # buffer is full) or off. SQLite in the working directory by default; PostgreSQL with
    # postgresql+psycopg://user@host/db (the password from a Secret, never a command line).
    "RECORDS": "on",
    "DATABASE_URL": "sqlite:///oncology-records.sqlite3",
    # Migrate the database to the latest schema at start (off when a Job migrates: Kubernetes).
    "DB_MIGRATE": True,
    # Which Deployment answers (stable or canary, the pod's track label): recorded per answer.
    "TRACK": "stable",
    # Tumors a worker buffers while the database is unreachable, and seconds between writes:
    # a killed worker loses at most about one interval's answers.
    "RECORDS_BUFFER": 20_000,
    "RECORDS_FLUSH_SECONDS": 0.5,
    # `oncology-db purge` deletes answers older than this (docs/records.md says why).
    "RETENTION_DAYS": 400,
}


def _boolean(value: str) -> bool:
    """true/1/yes/on or false/0/no/off, in any case."""
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _records_mode(value: str) -> str:
    if value.lower() not in ("on", "off", "required"):
        raise ValueError(value)
    return value.lower()


def _positive(parse: Any) -> Any:
    def positive(value: str) -> Any:
        number = parse(value)
        if not number > 0:
            raise ValueError(value)
        return number

    return positive


_positive_int = _positive(int)
_positive_float = _positive(float)


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
    "ONCOLOGY_RECORDS": ("RECORDS", _records_mode),
    "ONCOLOGY_DATABASE_URL": ("DATABASE_URL", str),
    "ONCOLOGY_DB_MIGRATE": ("DB_MIGRATE", _boolean),
    "ONCOLOGY_TRACK": ("TRACK", str),
    "ONCOLOGY_RECORDS_BUFFER": ("RECORDS_BUFFER", _positive_int),
    "ONCOLOGY_RECORDS_FLUSH_SECONDS": ("RECORDS_FLUSH_SECONDS", _positive_float),
    "ONCOLOGY_RETENTION_DAYS": ("RETENTION_DAYS", _positive_int),
}


# What each parser takes, for the message when a setting does not parse.
EXPECTED: dict[Any, str] = {
    int: "a whole number",
    _boolean: "true or false",
    _records_mode: "on, off or required",
    _positive_int: "a whole number above 0",
    _positive_float: "a number of seconds above 0",
}


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
    does not parse, a tokens file that is missing or broken, a database URL that names no
    database SQLAlchemy knows), or None."""
    from webservice.tokens import read_file

    try:
        config = load_config(environ=environ)
        for key in ("TOKENS_FILE", "METRICS_TOKENS_FILE"):
            if config[key]:
                read_file(config[key])
    except ValueError as error:  # TokensFileError is one
        return str(error)
    if config["ARTIFACTS_DIR"]:
        problem = artifacts_problem(config["ARTIFACTS_DIR"], environ)
        if problem:
            return problem
    if config["RECORDS"] != "off":
        return database_problem(config["DATABASE_URL"])
    return None


def artifacts_problem(where: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """Why ONCOLOGY_ARTIFACTS_DIR cannot name a model in a bucket (a URL without a bucket, no
    boto3, a bad ONCOLOGY_STORAGE_TIMEOUT), or None; a folder is checked when the model loads.
    Without importing oncology_model: the launcher stays light (see webservice.serve)."""
    import importlib.util

    if not where.startswith("s3://"):
        return None
    if not where[len("s3://") :].partition("/")[0]:
        return f"ONCOLOGY_ARTIFACTS_DIR={where} names no bucket: use s3://BUCKET/PREFIX/"
    if importlib.util.find_spec("boto3") is None:
        return f"ONCOLOGY_ARTIFACTS_DIR={where} needs boto3: pip install 'oncology-model[s3]'"
    timeout = environ.get("ONCOLOGY_STORAGE_TIMEOUT", "30")
    try:
        seconds = float(timeout)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        return f"ONCOLOGY_STORAGE_TIMEOUT={timeout!r} is not a number of seconds above 0"
    return None


def database_problem(url: str) -> str | None:
    """Why ONCOLOGY_DATABASE_URL cannot work (shown without its password), or None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = url.split("@")[-1] if "@" in url else url
    use = "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        return (
            f"ONCOLOGY_DATABASE_URL (...{shown[-60:]}) is not a database URL SQLAlchemy can use "
            f"({type(error).__name__}): {use}"
        )
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        return (
            f"ONCOLOGY_DATABASE_URL (...{shown[-60:]}) names neither SQLite nor PostgreSQL: {use}"
        )
    return None
