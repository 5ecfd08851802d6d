"""Errors as RFC 9457 problem details (`application/problem+json`), one shape for every error."""

from __future__ import annotations

from http import HTTPStatus

import orjson
from werkzeug.wrappers import Response

PROBLEM_JSON = "application/problem+json"


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

    def response(self) -> Response:
        return Response(self.body(), self.status, self.headers, content_type=PROBLEM_JSON)
