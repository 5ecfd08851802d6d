"""Errors as RFC 9457 problem details (`application/problem+json`), one shape for every error,
except under /v2, where the Open Inference Protocol wants `{"error": "..."}` (application/json).

Light to import (orjson only at the top): `webservice.front` writes the front's own answers with
`Problem` in a process that must load neither Flask, the model nor the metrics client."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

PROBLEM_JSON = "application/problem+json"
# Status lines with the standard's reason phrases ("503 Service Unavailable"), for every answer:
# Werkzeug would upper-case them ("503 SERVICE UNAVAILABLE") when given a bare status code.
STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}

log = logging.getLogger(__name__)


class Problem(Exception):
    """An error answer: raise it anywhere in a request and it becomes problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: dict[str, str] | None = None,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = HTTPStatus(status).phrase
        self.detail = detail
        self.errors = errors or {}
        self.type = f"urn:oncology:problem:{kind or self.title.lower().replace(' ', '-')}"
        self.headers = headers or {}

    def to_dict(self) -> dict[str, object]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "errors": self.errors,
        }

    def body(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def answer(self, path: str) -> tuple[bytes, str]:
        """The body and content type of this error for a request to `path`."""
        if path == "/v2" or path.startswith("/v2/"):
            return orjson.dumps({"error": self.detail}), "application/json"
        return self.body(), PROBLEM_JSON

    def response(self, path: str = "") -> Response:
        from werkzeug.wrappers import Response

        body, content_type = self.answer(path)
        return Response(body, STATUS_LINES[self.status], self.headers, content_type=content_type)


def send_problem(problem: Problem, path: str, start_response: Any) -> list[bytes]:
    """Answer a WSGI request with `problem`: the one place a Problem becomes a WSGI answer
    (Flask's side builds a Response with `Problem.response`)."""
    body, content_type = problem.answer(path)
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        *problem.headers.items(),
    ]
    start_response(STATUS_LINES[problem.status], headers)
    return [body]


def as_problem(error: BaseException, method: str, path: str) -> Problem:
    """The one mapping of exceptions to answers: a Problem as is, a bad tumor as 422 (counted
    per field), anything unexpected as a bare 500 (logged with its traceback, never sent)."""
    from oncology_model.datamodel import InvalidTumorError
    from webservice import metrics

    if isinstance(error, Problem):
        return error
    if isinstance(error, InvalidTumorError):
        metrics.record_rejections(error.errors)
        count = len(error.errors)
        return Problem(
            422,
            "1 field breaks the contract." if count == 1 else f"{count} fields break the contract.",
            error.errors,
            kind="invalid-tumor",
        )
    log.error("unhandled error answering %s %s", method, path[:256], exc_info=error)
    return Problem(500, "The server failed to answer this request.", kind="internal-error")
