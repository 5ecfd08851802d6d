"""WSGI middleware around the Flask app: the body-size limit, enforced before anything parses."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from webservice.jsonbody import BODY_CONSUMED, body_too_large

DRAIN_CHUNK = 64 * 1024
DRAIN_IDLE_SECONDS = 2.0

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class BodyLimit:
    """Answer 413 when Content-Length exceeds the limit, without calling the app.

    After any answer, whatever the client still sends of its body is read and discarded (up to
    `drain_cap` bytes): gunicorn drains only 64 KiB, so a client still sending would otherwise get
    a broken pipe instead of the answer. The drain runs after the answer is on the wire, so a
    client that waits for an early answer gets it at once.
    """

    def __init__(self, app: WSGIApp, *, max_bytes: int, drain_cap: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_cap = drain_cap

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        declared = _content_length(environ)
        if declared > self.max_bytes:
            problem = body_too_large(self.max_bytes, declared)
            body, content_type = problem.answer(environ.get("PATH_INFO", ""))
            start_response(
                f"413 {problem.title}",
                [
                    ("Content-Type", content_type),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                ],
            )
            return AfterClose([body], partial(drain, environ, self.drain_cap))
        result = self.app(environ, start_response)
        if environ.get(BODY_CONSUMED):
            return result  # read to the end already (every prediction): nothing to drain
        if declared or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", ""):
            return AfterClose(result, partial(drain, environ, self.drain_cap))
        return result


def _content_length(environ: dict[str, Any]) -> int:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class AfterClose:
    """The app's answer, then `callback` once the server has sent it and closes it."""

    __slots__ = ("callback", "result")

    def __init__(self, result: Iterable[bytes], callback: Callable[[], None]) -> None:
        self.result = result
        self.callback = callback

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.result)

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.callback()


def drain(environ: dict[str, Any], cap: int) -> None:
    """Read and discard what is left of the request body, up to `cap` bytes."""
    stream = environ.get("wsgi.input")
    if stream is None or environ.get(BODY_CONSUMED):
        return
    connection = environ.get("gunicorn.socket")
    if isinstance(connection, socket.socket):
        connection.settimeout(DRAIN_IDLE_SECONDS)  # a client that stopped sending is let go
    remaining = cap
    try:
        while remaining > 0:
            chunk = stream.read(min(DRAIN_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
    except (OSError, ValueError):
        pass  # the client went away: nothing left to answer
