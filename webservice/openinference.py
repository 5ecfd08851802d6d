"""The Open Inference Protocol ("V2", as KServe, Triton and MLServer speak it) for the one model.

The protocol's one implementation, for both transports (MLServer's "dataplane"): the checks of an
inference request (`check_model`, `explain_parameter`, `check_input_name`, `check_datatype`,
`rows_of_shape`, `check_count`, `raw_values`, `requested_outputs`: the same rules and messages
whatever carried them; the scores through `validated`, that is
`oncology_model.validation.validate_flat`, as the native API), its answer (`infer`: the outputs
as plain values), health and metadata. The REST
side is here too (`answer_infer`: JSON in, JSON out), which `PredictionLane` serves and the
flask-restx resources answer identically without the lane; `webservice.grpcserver` is the thin
gRPC side. Every error is a `Problem`: under /v2 `{"error": "..."}`, over gRPC a status with the
same message; malformed requests are 400 (INVALID_ARGUMENT), an unknown model or version 404
(NOT_FOUND).

The not-measured convention: JSON has no NaN, so a missing score is `null` in `data` (what the
kserve SDK's orjson writes for NaN), or the bare `NaN` token that Python's json module writes
(tritonclient without binary data), or NaN in FP32/FP64 binary tensor data (both clients'
default). Outputs are always answered as JSON data, which both clients read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import orjson

from oncology_model.datamodel import FEATURES, SCORE_RULE, InvalidTumorError
from oncology_model.validation import validate_flat
from webservice import metrics
from webservice.jsonbody import parse_json, read_body
from webservice.predicting import JSON, Answer, answering, not_recording, with_model
from webservice.problems import Problem
from webservice.records import ids
from webservice.service import Service
from webservice.tally import Observed

MODEL_NAME = "oncology"
INPUT = "tumors"
PROBABILITY = "malignant_probability"
LABEL = "label"
PREDICTION_ID = "prediction_id"
CONTRIBUTIONS = "contributions"
DATATYPES = {"INT32": "<i4", "INT64": "<i8", "FP32": "<f4", "FP64": "<f8"}
# The prediction ids are an output tensor, not a response parameter: one per row like the other
# outputs, read the same way by every client (tritonclient's `as_numpy`, kserve's
# `InferOutput.data`), and asked for or left out like any output.
DEFAULT_OUTPUTS = (PROBABILITY, LABEL, PREDICTION_ID)
OUTPUT_METADATA = (
    {"name": PROBABILITY, "datatype": "FP64", "shape": [-1]},
    {"name": LABEL, "datatype": "BYTES", "shape": [-1]},
    {"name": PREDICTION_ID, "datatype": "BYTES", "shape": [-1]},
    {"name": CONTRIBUTIONS, "datatype": "FP64", "shape": [-1, len(FEATURES)]},
)
_OUTPUT_NAMES = (PROBABILITY, LABEL, PREDICTION_ID, CONTRIBUTIONS)
_REQUEST_FIELDS = frozenset(("id", "parameters", "inputs", "outputs", "model_name"))
_INPUT_FIELDS = frozenset(("name", "shape", "datatype", "parameters", "data"))
_REQUEST_PARAMETERS = frozenset(("explain", "binary_data_output"))
_LABELS = ("benign", "malignant")
HEADER_LENGTH = "HTTP_INFERENCE_HEADER_CONTENT_LENGTH"  # Inference-Header-Content-Length
MAX_ERRORS_SHOWN = 10


def bad(message: str) -> Problem:
    return Problem(400, message, kind="bad-inference-request")


@dataclass(slots=True)
class Inference:
    """A decoded inference request: validated rows and what to answer."""

    rows: np.ndarray
    outputs: tuple[str, ...]
    request_id: str | None


def answer_infer(
    environ: dict[str, Any],
    service: Service,
    *,
    max_bytes: int,
    max_batch: int,
    model_name: str = MODEL_NAME,
    model_version: str | None = None,
) -> Answer:
    """POST /v2/models/{name}[/versions/{version}]/infer: the JSON inference response."""
    answering(check_model(service, model_name, model_version))
    body = read_body(environ, max_bytes)
    inference = decode(body, environ.get(HEADER_LENGTH), max_batch)
    return encode(inference, service)


def check_model(service: Service, name: str, version: str | None) -> Service:
    """The Service when `name` (and `version`, if given) is the model served; else 404 or 503."""
    if name != MODEL_NAME:
        raise Problem(404, f"Unknown model '{name}': this server serves '{MODEL_NAME}'.")
    with_model(service)
    if version is not None and version != service.model_version:
        raise Problem(
            404,
            f"Model '{MODEL_NAME}' has no version '{version}': "
            f"this server serves version '{service.model_version}'.",
        )
    return service


def decode(body: bytes, header_length: str | None, max_batch: int) -> Inference:
    """Parse and validate an inference request (JSON, or JSON then binary tensor data)."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise bad(
                f"Inference-Header-Content-Length {header_length!r} must be a number of bytes "
                f"of at most the body's {len(body)}."
            )
        body, binary = body[: int(header_length)], body[int(header_length) :]
    request = parse_json(body, nan_as_null=True)
    if type(request) is not dict:
        raise bad("The request must be a JSON object with 'inputs'.")
    _refuse_unknown(
        request, _REQUEST_FIELDS, "Unknown request field(s)",
        "expected id, parameters, inputs and outputs",
    )  # fmt: skip
    request_id = request.get("id")
    if request_id is not None and type(request_id) is not str:
        raise bad("'id' must be a string.")
    explain = explain_parameter(request.get("parameters"))
    rows = _rows(request.get("inputs"), binary, max_batch)
    outputs = _outputs(request.get("outputs"), explain)
    return Inference(rows, outputs, request_id)


def _refuse_unknown(given: dict[str, Any], allowed: frozenset[str], what: str, hint: str) -> None:
    """A 400 naming the keys of `given` outside `allowed`: "`what` 'a', 'b'; `hint`."."""
    unknown = given.keys() - allowed
    if unknown:
        raise bad(f"{what} {_names(unknown)}; {hint}.")


def explain_parameter(parameters: object) -> bool:
    """The request parameters (a dict of plain values): only explain and binary_data_output,
    each true or false; whether to explain."""
    if parameters is None:
        return False
    if type(parameters) is not dict:
        raise bad("'parameters' must be an object.")
    _refuse_unknown(
        parameters, _REQUEST_PARAMETERS, "Unknown request parameter(s)",
        "this model takes explain and binary_data_output",
    )  # fmt: skip
    for name in _REQUEST_PARAMETERS & parameters.keys():
        if type(parameters[name]) is not bool:
            raise bad(f"Request parameter '{name}' must be true or false.")
    return bool(parameters.get("explain", False))


def _rows(inputs: object, binary: bytes, max_batch: int) -> np.ndarray:
    """The one input tensor's scores as validated (n, 9) rows."""
    if type(inputs) is not list or len(inputs) != 1 or type(inputs[0]) is not dict:
        raise bad(ONE_INPUT)
    tensor: dict[str, Any] = inputs[0]
    check_input_name(tensor.get("name"))
    _refuse_unknown(
        tensor, _INPUT_FIELDS, f"Input '{INPUT}': unknown field(s)",
        "expected name, shape, datatype, parameters and data",
    )  # fmt: skip
    datatype = check_datatype(tensor.get("datatype"))
    n = rows_of_shape(tensor.get("shape"), max_batch)
    return validated(_values(tensor, datatype, n, binary))


ONE_INPUT = f"'inputs' must be a list of exactly one tensor, '{INPUT}'."


def check_input_name(name: object) -> None:
    if name != INPUT:
        raise bad(
            f"Input {name!r} is not an input of model '{MODEL_NAME}'; its input is '{INPUT}'."
        )


def check_datatype(datatype: object) -> str:
    """The input's datatype, one of `DATATYPES`."""
    if datatype not in DATATYPES:
        raise bad(
            f"Input '{INPUT}': datatype {datatype!r} is not supported; use INT32, INT64, FP32 or "
            "FP64."
        )
    assert isinstance(datatype, str)
    return datatype


def rows_of_shape(shape: object, max_batch: int) -> int:
    """N of a shape [N, 9] with 1 <= N <= max_batch (a list of ints: JSON's, or gRPC's)."""
    k = len(FEATURES)
    if (
        type(shape) is not list
        or len(shape) != 2
        or type(shape[0]) is not int
        or shape[1] != k
        or type(shape[1]) is not int
    ):
        raise bad(
            f"Input '{INPUT}': shape {_json(shape)} must be [N, {k}]: one row of the {k} scores "
            f"({', '.join(FEATURES)}) per tumor."
        )
    n: int = shape[0]
    if not 1 <= n <= max_batch:
        raise bad(f"Input '{INPUT}': shape [{n}, {k}] must have 1 to {max_batch} rows.")
    return n


def check_count(count: int, n: int, what: str) -> None:
    """`count` values (`what`: "data", "contents"...) for a shape [n, 9]."""
    k = len(FEATURES)
    if count != n * k:
        raise bad(f"Input '{INPUT}': {what} has {count} values; shape [{n}, {k}] needs {n * k}.")


def raw_values(raw: bytes, datatype: str, n: int, what: str) -> np.ndarray:
    """The values of a tensor given as little-endian bytes (binary data, raw contents): exactly
    n x 9 of the datatype."""
    k = len(FEATURES)
    itemsize = np.dtype(DATATYPES[datatype]).itemsize
    if len(raw) != n * k * itemsize:
        raise bad(
            f"Input '{INPUT}': {what} has {len(raw)} bytes; shape [{n}, {k}] of {datatype} "
            f"needs {n * k * itemsize} ({n} x {k} values of {itemsize} bytes)."
        )
    return np.frombuffer(raw, dtype=DATATYPES[datatype])


def validated(values: Any) -> np.ndarray:
    """n x 9 values, flat, as validated (n, 9) rows (NaN: not measured); else 400 naming each
    bad value (its row, from 0, and feature) and the rule, counted as rejected fields."""
    try:
        return validate_flat(values, INPUT)
    except InvalidTumorError as error:
        metrics.record_rejections(error.errors)
        raise bad(f"Input '{INPUT}' breaks the contract: {_listed(error.errors)}") from None


def _values(tensor: dict[str, Any], datatype: str, n: int, binary: bytes) -> Any:
    """The tensor's n * 9 values, flat: from JSON `data` (flat or nested) or binary data."""
    k = len(FEATURES)
    parameters = tensor.get("parameters") or {}
    if type(parameters) is not dict or parameters.keys() - {"binary_data_size"}:
        raise bad(
            f"Input '{INPUT}': parameters {_json(parameters)} are not supported; the only input "
            "parameter is binary_data_size."
        )
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in tensor:
            raise bad(f"Input '{INPUT}' has both data and binary_data_size; send one.")
        itemsize = np.dtype(DATATYPES[datatype]).itemsize
        if type(size) is not int or size != len(binary) or size != n * k * itemsize:
            raise bad(
                f"Input '{INPUT}': binary_data_size {_json(size)} must equal the binary data "
                f"after the JSON header ({len(binary)} bytes) and {n} x {k} {datatype} values "
                f"({n * k * itemsize} bytes)."
            )
        return np.frombuffer(binary, dtype=DATATYPES[datatype])
    if binary:
        raise bad(f"{len(binary)} bytes follow the JSON header but no input has binary_data_size.")
    data = tensor.get("data")
    if type(data) is not list:
        raise bad(f"Input '{INPUT}': data must be an array of {n} x {k} scores (flat or nested).")
    if data and type(data[0]) is list:  # nested: one list per row
        for i, row in enumerate(data):
            if type(row) is not list or len(row) != k:
                raise bad(
                    f"Input '{INPUT}': row {i} of the nested data must be an array of {k} scores."
                )
        if len(data) != n:
            raise bad(f"Input '{INPUT}': data has {len(data)} rows; shape [{n}, {k}] needs {n}.")
        return list(chain.from_iterable(data))
    check_count(len(data), n, "data")
    return data


def _outputs(requested: object, explain: bool) -> tuple[str, ...]:
    if requested is None:
        return requested_outputs([], explain)
    if type(requested) is not list or not all(type(output) is dict for output in requested):
        raise bad("'outputs' must be a list of objects with a name.")
    return requested_outputs(
        [(output.get("name"), output.get("parameters")) for output in requested], explain
    )


def requested_outputs(requested: list[tuple[object, object]], explain: bool) -> tuple[str, ...]:
    """The outputs to answer, in order, from the requested (name, parameters) pairs (none: the
    default outputs); explaining adds contributions."""
    if not requested:
        return (*DEFAULT_OUTPUTS, CONTRIBUTIONS) if explain else DEFAULT_OUTPUTS
    names = []
    for name, given in requested:
        if name not in _OUTPUT_NAMES:
            raise bad(
                f"Output {name!r} is not an output of model '{MODEL_NAME}'; "
                f"its outputs are {', '.join(_OUTPUT_NAMES)}."
            )
        parameters = given or {}
        if type(parameters) is not dict or parameters.keys() - {"binary_data"}:
            raise bad(
                f"Output '{name}': parameters {_json(parameters)} are not supported; "
                "the only output parameter is binary_data (outputs are answered as JSON)."
            )
        if name not in names:
            names.append(str(name))
    if explain and CONTRIBUTIONS not in names:
        names.append(CONTRIBUTIONS)
    return tuple(names)


class Output(NamedTuple):
    """One output tensor of an answer: its values flat, row-major (floats or strings)."""

    name: str
    datatype: str
    shape: list[int]
    data: Any  # a list, or an ndarray (contributions)


class Answered(NamedTuple):
    """An inference's answer, whatever carries it: the outputs in the order requested, and what
    the metrics and the record keep of its predictions."""

    outputs: list[Output]
    model_version: str
    request_id: str | None
    threshold: float
    observed: Observed


def infer(inference: Inference, service: Service) -> Answered:
    """The requested outputs of a decoded inference, from one engine call."""
    rows = inference.rows
    malignant, flags, observed = service.scores(rows)
    n = len(rows)
    outputs: list[Output] = []
    for name in inference.outputs:
        if name == PROBABILITY:
            outputs.append(Output(name, "FP64", [n], malignant))
        elif name == LABEL:
            outputs.append(Output(name, "BYTES", [n], [_LABELS[flag] for flag in flags]))
        elif name == PREDICTION_ID:
            outputs.append(Output(name, "BYTES", [n], ids.ids(observed.id_block, n)))
        else:
            contributions = service.contributions(rows)
            outputs.append(Output(name, "FP64", [n, len(FEATURES)], contributions.ravel()))
    return Answered(
        outputs, service.model_version, inference.request_id, service.threshold, observed
    )


def encode(inference: Inference, service: Service) -> Answer:
    """The JSON inference response: the requested outputs, in the order requested."""
    answered = infer(inference, service)
    answer: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": answered.model_version}
    if answered.request_id is not None:
        answer["id"] = answered.request_id
    answer["parameters"] = {"threshold": answered.threshold}
    answer["outputs"] = [
        {
            "name": output.name,
            "datatype": output.datatype,
            "shape": output.shape,
            "data": output.data if type(output.data) is list else output.data.tolist(),
        }
        for output in answered.outputs
    ]
    return Answer(orjson.dumps(answer), JSON, answered.observed)


def server_metadata(version: str) -> dict[str, Any]:
    """GET /v2: the server's name, version and protocol extensions."""
    return {"name": "oncology-webservice", "version": version, "extensions": []}


def model_metadata(service: Service) -> dict[str, Any]:
    """GET /v2/models/oncology: the input tensor (feature order, datatypes) and the outputs."""
    return {
        "name": MODEL_NAME,
        "versions": [service.model_version],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {
                "name": INPUT,
                "datatype": "FP32",
                "shape": [-1, len(FEATURES)],
                "parameters": {
                    "features": list(FEATURES),
                    "datatypes": list(DATATYPES),
                    "rule": SCORE_RULE,
                    "not_measured": "null in JSON data; NaN in FP32/FP64 binary data",
                },
            }
        ],
        "outputs": list(OUTPUT_METADATA),
        "parameters": {"threshold": service.threshold},
    }


def model_ready(service: Service) -> dict[str, Any]:
    """GET /v2/models/oncology/ready: 200 when ready, else 503 naming the reason."""
    if service.shutting_down:
        raise Problem(503, "The service is shutting down.", kind="not-ready")
    if not service.recording:
        raise not_recording()
    return {"name": MODEL_NAME, "ready": True}


def _names(names: set[str]) -> str:
    return ", ".join(repr(name) for name in sorted(map(str, names)))


def _json(value: object) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


def _listed(errors: dict[str, str]) -> str:
    shown = [f"{path}: {rule}" for path, rule in list(errors.items())[:MAX_ERRORS_SHOWN]]
    more = len(errors) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more else "") + "."
