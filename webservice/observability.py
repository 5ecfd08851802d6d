"""Request ids, the JSON access log and request metrics, in one WSGI middleware.

One middleware instead of Flask hooks: it sees every answer, including the prediction lane's and
the refusals of `BearerAuth` before Flask runs, and costs a few microseconds.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import orjson

from webservice import tally
from webservice.middleware import AfterClose
from webservice.routes import endpoint_label

REQUEST_ID_HEADER = "X-Request-ID"
# Set by `webservice.auth.BearerAuth` to the caller's name; absent when no token was needed.
CALLER = "oncology.caller"
ANONYMOUS = "anonymous"
# Accepted from clients as is: up to 128 visible characters of a safe set (no spaces, quotes or
# control characters that could forge log lines); anything else is replaced by a fresh id.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}").fullmatch
_METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"))

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def valid_request_id(value: str) -> bool:
    """Whether a client's request id may be kept as it is (HTTP's header, gRPC's metadata)."""
    return _VALID_REQUEST_ID(value) is not None


def new_request_id() -> str:
    """24 hex digits. Ids need to be unique, not secret: `random` (reseeded in each forked
    worker) costs no system call, unlike os.urandom."""
    return f"{random.getrandbits(96):024x}"


class Observability:
    """Give every request an id (X-Request-ID in and out), log it as one JSON line, count it."""

    def __init__(self, app: WSGIApp, *, model_version: str, access_log: bool = True) -> None:
        self.app = app
        self.model_version = model_version
        self.access_log = access_log

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        started = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID")
        rid = incoming if incoming and _VALID_REQUEST_ID(incoming) else new_request_id()
        token = request_id.set(rid)
        state: list[Any] = [500]

        def observed_start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            state[0] = int(status[:3])
            headers.append((REQUEST_ID_HEADER, rid))
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, observed_start_response)
        finally:
            request_id.reset(token)
        return AfterClose(result, partial(self.finish, environ, state, started, rid))

    def finish(self, environ: dict[str, Any], state: list[Any], started: float, rid: str) -> None:
        """Once the answer is sent: count the request and write its log line."""
        elapsed = time.perf_counter() - started
        status = state[0]
        path = environ.get("PATH_INFO", "")
        endpoint = endpoint_label(path)
        method = environ.get("REQUEST_METHOD", "")
        caller = environ.get(CALLER, ANONYMOUS)  # a name from the tokens file, never client input
        # Methods are client input: anything unusual is counted as "other", so labels stay few.
        tally.record_request(
            endpoint, method if method in _METHODS else "other", str(status), elapsed, caller
        )
        if self.access_log:
            write_access_line(method, path[:256], status, elapsed, rid, caller, self.model_version)


def write_access_line(
    method: str,
    path: str,
    status: int | str,
    elapsed: float,
    rid: str,
    caller: str,
    model_version: str | None,
    **extra: str,
) -> None:
    """One JSON access-log line on stdout: what was asked, how it ended, for whom, in how long
    (`extra`: fields a transport adds, as gRPC's `protocol`)."""
    record = {
        "ts": time.time(),
        "level": "info",
        "event": "request",
        **extra,
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(elapsed * 1000, 3),
        "request_id": rid,
        "caller": caller,
        "model_version": model_version,
    }
    # One write per line: lines from several processes never interleave (< PIPE_BUF).
    os.write(1, orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))


class JsonFormatter(logging.Formatter):
    """Log records as one JSON object per line, with the current request id."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class StdoutHandler(logging.Handler):
    """Each record as one write to file descriptor 1, like the access log."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(1, (self.format(record) + "\n").encode())
        except Exception:  # logging must never break a request
            self.handleError(record)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stdout for the app's own loggers (once per process)."""
    logger = logging.getLogger("webservice")
    if any(isinstance(h, StdoutHandler) for h in logger.handlers):
        return
    handler = StdoutHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
