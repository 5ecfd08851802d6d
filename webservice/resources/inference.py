"""/v2: the Open Inference Protocol (KServe/Triton "V2"): health, metadata and inference.

The prediction lane serves inference for the served model; these resources document every
endpoint and answer identically when the app runs without the lane (`webservice.openinference`).
"""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask_restx import Namespace, Resource, fields

from oncology_model.datamodel import FEATURES
from oncology_model.verify import SEED_TUMOR
from webservice.openinference import (
    INPUT,
    MODEL_NAME,
    answer_infer,
    check_model,
    model_metadata,
    model_ready,
    server_metadata,
)
from webservice.predicting import not_recording
from webservice.problems import Problem
from webservice.resources.common import answer_response, json_response, service

ns = Namespace(
    "inference",
    path="/v2",
    description=(
        "The Open Inference Protocol (KServe/Triton V2) for the model "
        f'\'{MODEL_NAME}\'. Errors are {{"error": "..."}}: 400 for a malformed request, 404 for '
        "an unknown model or version."
    ),
)

error_model = ns.model(
    "InferenceError",
    {
        "error": fields.String(
            required=True, example="Unknown model 'x': this server serves 'oncology'."
        )
    },
)
ERRORS = {
    400: "Malformed request: the message names the tensor, row, feature and rule",
    404: "Unknown model, or a version other than the one served",
    413: "The body is larger than the configured limit (default 4 MiB)",
    500: "The server failed; no internal detail is given",
    503: "No verified model is loaded, or the worker is shutting down",
}


def errors(*codes: int) -> Any:
    def decorate(function: Any) -> Any:
        for code in codes:
            function = ns.response(code, ERRORS[code], error_model)(function)
        return function

    return decorate


tensor_metadata = ns.model(
    "TensorMetadata",
    {
        "name": fields.String(required=True),
        "datatype": fields.String(required=True),
        "shape": fields.List(fields.Integer, required=True),
        "parameters": fields.Raw(description="For the input: the feature order and rules"),
    },
)
server_metadata_model = ns.model(
    "ServerMetadata",
    {
        "name": fields.String(required=True),
        "version": fields.String(required=True),
        "extensions": fields.List(fields.String, required=True),
    },
)
model_metadata_model = ns.model(
    "ModelMetadata",
    {
        "name": fields.String(required=True, example=MODEL_NAME),
        "versions": fields.List(fields.String, required=True),
        "platform": fields.String(required=True, example="onnxruntime_onnx"),
        "inputs": fields.List(fields.Nested(tensor_metadata), required=True),
        "outputs": fields.List(fields.Nested(tensor_metadata), required=True),
        "parameters": fields.Raw(description="The malignant-probability threshold"),
    },
)
request_input = ns.model(
    "RequestInput",
    {
        "name": fields.String(required=True, example=INPUT),
        "shape": fields.List(fields.Integer, required=True, example=[1, len(FEATURES)]),
        "datatype": fields.String(
            required=True, enum=["INT32", "INT64", "FP32", "FP64"], example="INT64"
        ),
        "parameters": fields.Raw(description="binary_data_size, with binary tensor data"),
        "data": fields.Raw(
            example=list(SEED_TUMOR),
            description=f"Row-major, flat or nested: per row the scores {', '.join(FEATURES)}; "
            "null (or NaN in FP32/FP64 binary data) when not measured",
        ),
    },
)
infer_request = ns.model(
    "InferenceRequest",
    {
        "id": fields.String(description="Echoed in the response"),
        "parameters": fields.Raw(
            description="explain: true adds the contributions output; binary_data_output is "
            "accepted (outputs are answered as JSON)"
        ),
        "inputs": fields.List(fields.Nested(request_input), required=True),
        "outputs": fields.List(
            fields.Raw(example={"name": "label"}),
            description="Outputs to answer by name: malignant_probability, label, contributions",
        ),
    },
)
response_output = ns.model(
    "ResponseOutput",
    {
        "name": fields.String(required=True),
        "datatype": fields.String(required=True),
        "shape": fields.List(fields.Integer, required=True),
        "data": fields.Raw(required=True),
    },
)
infer_response = ns.model(
    "InferenceResponse",
    {
        "model_name": fields.String(required=True),
        "model_version": fields.String(required=True),
        "id": fields.String(),
        "parameters": fields.Raw(description="The threshold applied to give the labels"),
        "outputs": fields.List(fields.Nested(response_output), required=True),
    },
)
live_model = ns.model("ServerLive", {"live": fields.Boolean(required=True)})
ready_model = ns.model("ServerReady", {"ready": fields.Boolean(required=True)})
model_ready_model = ns.model(
    "ModelReady", {"name": fields.String(required=True), "ready": fields.Boolean(required=True)}
)

MODEL = "/models/<string:model_name>"
VERSION = "/versions/<string:model_version>"


@ns.route("")
class ServerMetadata(Resource):
    @ns.response(200, "The server's name, version and extensions", server_metadata_model)
    @errors(500)
    def get(self) -> Any:
        """Server metadata."""
        return json_response(server_metadata(current_app.config["API_VERSION"]))


@ns.route("/health/live")
class ServerLive(Resource):
    @ns.response(200, "The process answers", live_model)
    @errors(500)
    def get(self) -> Any:
        """Server liveness: 200 while the process can answer."""
        return json_response({"live": True})


@ns.route("/health/ready")
class ServerReady(Resource):
    @ns.response(200, "The model is loaded, verified and self-checked", ready_model)
    @errors(500, 503)
    def get(self) -> Any:
        """Server readiness: 200 once the model is verified, else 503 (like /readyz)."""
        current = service()
        if current.shutting_down:
            raise Problem(503, "The service is shutting down.", kind="not-ready")
        if not current.recording:
            raise not_recording()
        if not current.ready:
            raise Problem(503, f"The model is not loaded: {current.error}", kind="not-ready")
        return json_response({"ready": True})


@ns.route(MODEL)
class ModelMetadata(Resource):
    @ns.response(200, "The input tensor (feature order) and the outputs", model_metadata_model)
    @errors(404, 500, 503)
    def get(self, model_name: str, model_version: str | None = None) -> Any:
        """Model metadata."""
        return json_response(model_metadata(check_model(service(), model_name, model_version)))


@ns.route(MODEL + "/ready")
class ModelReady(Resource):
    @ns.response(200, "The model is ready", model_ready_model)
    @errors(404, 500, 503)
    def get(self, model_name: str, model_version: str | None = None) -> Any:
        """Model readiness."""
        return json_response(model_ready(check_model(service(), model_name, model_version)))


@ns.route(MODEL + "/infer")
class Infer(Resource):
    @ns.expect(infer_request)
    @ns.response(200, "The requested outputs for every row", infer_response)
    @errors(400, 404, 413, 500, 503)
    def post(self, model_name: str, model_version: str | None = None) -> Any:
        """Inference: one tensor of shape [N, 9] in, probabilities and labels out."""
        config = current_app.config
        return answer_response(
            answer_infer(
                request.environ,
                service(),
                max_bytes=config["MAX_BODY_BYTES"],
                max_batch=config["MAX_BATCH"],
                model_name=model_name,
                model_version=model_version,
            )
        )


# The same operations under /versions/{version}: their own classes, so that each has its own
# operationId in the OpenAPI document.
@ns.route(MODEL + VERSION)
class ModelVersionMetadata(ModelMetadata):
    pass


@ns.route(MODEL + VERSION + "/ready")
class ModelVersionReady(ModelReady):
    pass


@ns.route(MODEL + VERSION + "/infer")
class ModelVersionInfer(Infer):
    pass
