"""The prediction lane: the two prediction routes served straight from WSGI, before Flask."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from webservice.middleware import WSGIApp
from webservice.predicting import Answer, answer_batch, answer_single
from webservice.problems import PROBLEM_JSON, as_problem
from webservice.service import Service


class PredictionLane:
    """Serve POST /v1/predictions and /v1/predictions/batch straight from WSGI.

    Flask's request machinery (context, routing, response object) costs more per request than
    the whole prediction. These two routes call the same functions the flask-restx resources
    call (`webservice.predicting`), map errors with the same `as_problem`, and sit inside the
    same middleware (request id, log, metrics, body limit); everything else goes to Flask.
    """

    def __init__(self, app: WSGIApp, service: Service, *, max_bytes: int, max_batch: int) -> None:
        self.app = app
        self.routes: dict[str, Callable[[dict[str, Any]], Answer]] = {
            "/v1/predictions": partial(answer_single, service=service, max_bytes=max_bytes),
            "/v1/predictions/batch": partial(
                answer_batch, service=service, max_bytes=max_bytes, max_batch=max_batch
            ),
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        handler = self.routes.get(environ.get("PATH_INFO", ""))
        if handler is None or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        try:
            body, content_type = handler(environ)
        except Exception as error:
            problem = as_problem(error, "POST", environ.get("PATH_INFO", ""))
            body = problem.body()
            headers = [("Content-Type", PROBLEM_JSON), *problem.headers.items()]
            start_response(f"{problem.status} {problem.title}", headers + _length(body))
            return [body]
        start_response("200 OK", [("Content-Type", content_type), *_length(body)])
        return [body]


def _length(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Length", str(len(body)))]
