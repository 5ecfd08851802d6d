"""The prediction lane: the prediction routes served straight from WSGI, before Flask."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from webservice.middleware import WSGIApp
from webservice.openinference import MODEL_NAME, answer_infer
from webservice.predicting import Answer, answer_batch, answer_single, record
from webservice.problems import as_problem, send_problem
from webservice.routes import MODEL, ROUTES, VERSION
from webservice.service import Service


class PredictionLane:
    """Serve POST /v1/predictions, /v1/predictions/batch and the Open Inference Protocol's
    inference (/v2/models/oncology[/versions/{version}]/infer) straight from WSGI.

    Flask's request machinery (context, routing, response object) costs more per request than
    the whole prediction. These routes call the same functions the flask-restx resources call
    (`webservice.predicting`, `webservice.openinference`), map errors with the same `as_problem`,
    and sit inside the same middleware (request id, log, metrics, body limit); everything else,
    including inference for another model name, goes to Flask.

    The garbage collector is paused while a prediction is answered: a batch allocates tens of
    thousands of short-lived dicts (the parsed tumors, the answers), which would set off dozens of
    collections that each walk them (about a tenth of a 10,000-tumor batch's time). They hold no
    reference cycles, so reference counting frees them all when the answer is built; the
    collector then runs as usual on whatever remains.
    """

    def __init__(self, app: WSGIApp, service: Service, *, max_bytes: int, max_batch: int) -> None:
        self.app = app
        self.service = service
        infer = partial(answer_infer, service=service, max_bytes=max_bytes, max_batch=max_batch)
        handlers: dict[str, Callable[[dict[str, Any]], Answer]] = {
            "/v1/predictions": partial(answer_single, service=service, max_bytes=max_bytes),
            "/v1/predictions/batch": partial(
                answer_batch, service=service, max_bytes=max_bytes, max_batch=max_batch
            ),
            MODEL + "/infer": infer,
            VERSION + "/infer": partial(infer, model_version=service.model_version),
        }
        # The lane's routes of the table, for the served model's name and version only.
        self.routes = {
            route.path.format(model_name=MODEL_NAME, model_version=service.model_version): (
                handlers[route.path]
            )
            for route in ROUTES
            if route.lane
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        handler = self.routes.get(environ.get("PATH_INFO", ""))
        if handler is None or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        collecting = gc.isenabled()
        gc.disable()  # see the class docstring
        try:
            answer = handler(environ)
        except Exception as error:
            path = environ.get("PATH_INFO", "")
            return send_problem(as_problem(error, "POST", path), path, start_response)
        finally:
            if collecting:
                gc.enable()
        start_response("200 OK", [("Content-Type", answer.content_type), *_length(answer.body)])
        record(answer, environ, self.service)
        return [answer.body]


def _length(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Length", str(len(body)))]
