"""For operators: /healthz (liveness), /readyz (readiness) and /metrics (Prometheus)."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_restx import Namespace, Resource, fields
from werkzeug.wrappers import Response

from webservice.metrics import exposition
from webservice.predicting import not_loaded, not_recording
from webservice.problems import Problem
from webservice.resources.common import document_errors, json_response, service

ns = Namespace("operations", path="/", description="Probes and metrics, for operators")

status_model = ns.model(
    "Status",
    {
        "status": fields.String(required=True, example="ok"),
        "model_version": fields.String(example="1.0.0+612cf7af8850"),
    },
)


@ns.route("/healthz")
class Liveness(Resource):
    @ns.doc("liveness")
    @ns.response(200, "The process answers", status_model)
    @document_errors(ns, 500)
    def get(self) -> Any:
        """Liveness: 200 while the process can answer."""
        return json_response({"status": "ok"})


@ns.route("/readyz")
class Readiness(Resource):
    @ns.doc("readiness")
    @ns.response(200, "Model loaded, verified and self-checked", status_model)
    @document_errors(ns, 500, 503)
    def get(self) -> Any:
        """Readiness: 200 once the model is verified and self-checked, else 503."""
        current = service()
        if not current.loaded:
            raise not_loaded(current)
        if current.shutting_down:
            raise Problem(
                503, "The service is shutting down; send requests elsewhere.", kind="shutting-down"
            )
        if not current.recording:
            raise not_recording()
        return json_response({"status": "ready", "model_version": current.model_version})


@ns.route("/metrics")
class Metrics(Resource):
    @ns.doc("metrics")
    @ns.produces(["text/plain"])
    @ns.response(200, "Prometheus text exposition format, all workers combined")
    @document_errors(ns, 500)
    def get(self) -> Any:
        """Prometheus metrics: requests, latency, predictions, input values, rejections, model."""
        body, content_type = exposition(request.headers.get("Accept", ""))
        return Response(body, 200, content_type=content_type)
