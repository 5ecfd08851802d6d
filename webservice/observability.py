"""Request ids, the JSON access log and request metrics, in one WSGI middleware.

One middleware instead of Flask hooks: it sees every answer, including the 413 that `BodyLimit`
gives before Flask runs and errors Flask turns into problem+json, and costs a few microseconds.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from webservice import metrics

REQUEST_ID_HEADER = "X-Request-ID"
# Accepted from clients as is: up to 128 visible characters of a safe set (no spaces, quotes or
# control characters that could forge log lines); anything else is replaced by a fresh id.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}").fullmatch
_ENDPOINTS = {
    "/v1/predictions": "/v1/predictions",
    "/v1/predictions/batch": "/v1/predictions/batch",
    "/v1/model": "/v1/model",
    "/healthz": "/healthz",
    "/readyz": "/readyz",
    "/metrics": "/metrics",
    "/swagger.json": "/swagger.json",
    "/docs": "/docs",
}

_METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"))

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def new_request_id() -> str:
    """24 hex digits. Ids need to be unique, not secret: `random` (reseeded in each forked
    worker) costs no system call, unlike os.urandom."""
    return f"{random.getrandbits(96):024x}"


def endpoint_label(path: str) -> str:
    """A bounded label for a path: known endpoints by name, Swagger UI assets, else `other`."""
    label = _ENDPOINTS.get(path)
    if label is None:
        label = "/swaggerui" if path.startswith("/swaggerui/") else "other"
    return label


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
        environ["oncology.request_id"] = rid
        state: list[Any] = [500]

        def observed_start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            state[0] = int(status[:3])
            headers.append((REQUEST_ID_HEADER, rid))
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, observed_start_response)
        finally:
            request_id.reset(token)
        return _Finish(result, self, environ, state, started, rid)

    def finish(self, environ: dict[str, Any], status: int, started: float, rid: str) -> None:
        elapsed = time.perf_counter() - started
        path = environ.get("PATH_INFO", "")
        endpoint = endpoint_label(path)
        method = environ.get("REQUEST_METHOD", "")
        # Methods are client input: anything unusual is counted as "other", so labels stay few.
        metrics.record_request(
            endpoint, method if method in _METHODS else "other", str(status), elapsed
        )
        if self.access_log:
            record = {
                "ts": time.time(),
                "level": "info",
                "event": "request",
                "method": method,
                "path": path[:256],
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "request_id": rid,
                "model_version": self.model_version,
            }
            # One write per line: lines from several workers never interleave (< PIPE_BUF).
            os.write(1, orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))


class _Finish:
    """The app's answer; on close, the request is logged and counted (after the body is sent)."""

    __slots__ = ("environ", "middleware", "result", "rid", "started", "state")

    def __init__(
        self,
        result: Iterable[bytes],
        middleware: Observability,
        environ: dict[str, Any],
        state: list[Any],
        started: float,
        rid: str,
    ) -> None:
        self.result = result
        self.middleware = middleware
        self.environ = environ
        self.state = state
        self.started = started
        self.rid = rid

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.result)

    def close(self) -> None:
        token = request_id.set(self.rid)
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.middleware.finish(self.environ, self.state[0], self.started, self.rid)
            request_id.reset(token)


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
