"""The six methods of `inference.GRPCInferenceService`: protobuf in, `webservice.openinference`
(the checks, answers and messages REST V2 gives), protobuf out. Errors are raised as `Problem`s,
which `webservice.grpcserver.calls` turns into statuses.

Inputs come as typed contents (the field of the datatype: `int_contents` for INT32,
`int64_contents`, `fp32_contents`, `fp64_contents`) or as `raw_input_contents` (tritonclient's
way); outputs are answered in `raw_output_contents`, as Triton answers (tritonclient reads no
other form of a numeric output), BYTES elements each after a 4-byte little-endian length. The
protocol's parameters hold no floating-point number: the threshold is a string parameter.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from webservice.grpcserver.protocol import pb, pb_grpc
from webservice.openinference import (
    DATATYPES,
    INPUT,
    MODEL_NAME,
    ONE_INPUT,
    Answered,
    Inference,
    bad,
    check_count,
    check_datatype,
    check_input_name,
    check_model,
    explain_parameter,
    infer,
    model_metadata,
    raw_values,
    requested_outputs,
    rows_of_shape,
    server_metadata,
    validated,
)
from webservice.predicting import answering, record_observed
from webservice.service import Service

# The typed-contents field of each input datatype.
CONTENTS = {
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
_LENGTH = struct.Struct("<I")


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The protocol's methods for the one model. `calls.Calls` wraps each (the caller's name is
    its last argument)."""

    def __init__(self, service: Service, *, version: str, max_batch: int) -> None:
        self.service = service
        self.version = version
        self.max_batch = max_batch

    def ServerLive(self, request: Any, caller: str) -> Any:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, caller: str) -> Any:
        return pb.ServerReadyResponse(ready=self.service.ready)

    def ModelReady(self, request: Any, caller: str) -> Any:
        """Ready as REST's /v2/models/oncology/ready; an unknown model or version is NOT_FOUND,
        a model not (or no longer) ready `ready: false`."""
        if request.name != MODEL_NAME:
            check_model(self.service, request.name, None)  # NOT_FOUND naming the served one
        if not self.service.loaded:
            return pb.ModelReadyResponse(ready=False)
        check_model(self.service, request.name, request.version or None)
        return pb.ModelReadyResponse(ready=self.service.ready)

    def ServerMetadata(self, request: Any, caller: str) -> Any:
        return pb.ServerMetadataResponse(**server_metadata(self.version))

    def ModelMetadata(self, request: Any, caller: str) -> Any:
        check_model(self.service, request.name, request.version or None)
        metadata = model_metadata(self.service)
        return pb.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=[_tensor_metadata(tensor) for tensor in metadata["inputs"]],
            outputs=[_tensor_metadata(tensor) for tensor in metadata["outputs"]],
        )

    def ModelInfer(self, request: Any, caller: str) -> Any:
        service = answering(
            check_model(self.service, request.model_name, request.model_version or None)
        )
        answered = infer(decode(request, self.max_batch), service)
        response = encode(answered)
        record_observed(answered.observed, caller, None, service)
        return response


def decode(request: Any, max_batch: int) -> Inference:
    """A ModelInferRequest's validated rows and requested outputs, with REST V2's checks."""
    explain = explain_parameter(_plain(request.parameters) if request.parameters else None)
    if len(request.inputs) != 1:
        raise bad(ONE_INPUT)
    tensor = request.inputs[0]
    check_input_name(tensor.name)
    datatype = check_datatype(tensor.datatype)
    n = rows_of_shape(list(tensor.shape), max_batch)
    # kserve's client marks raw inputs with binary_data_size, as over REST: allowed, not needed.
    if tensor.parameters.keys() - {"binary_data_size"}:
        raise bad(
            f"Input '{INPUT}': parameters {sorted(tensor.parameters.keys())} are not supported; "
            "a gRPC input needs none."
        )
    raw = request.raw_input_contents
    if raw:
        if tensor.HasField("contents"):
            raise bad(f"Input '{INPUT}' has both contents and raw_input_contents; send one.")
        if len(raw) != 1:
            raise bad(
                f"raw_input_contents has {len(raw)} entries; it needs one per input (1, '{INPUT}')."
            )
        size = _plain(tensor.parameters).get("binary_data_size", len(raw[0]))
        if size != len(raw[0]):
            raise bad(
                f"Input '{INPUT}': binary_data_size {size!r} must equal the length of its "
                f"raw_input_contents ({len(raw[0])} bytes)."
            )
        values = raw_values(raw[0], datatype, n, "raw_input_contents")
    else:
        field = CONTENTS[datatype]
        others = [f.name for f, _ in tensor.contents.ListFields() if f.name != field]
        if others:
            raise bad(
                f"Input '{INPUT}': {datatype} values go in contents.{field}, not in "
                f"contents.{', contents.'.join(others)}."
            )
        contents = getattr(tensor.contents, field)
        check_count(len(contents), n, f"contents.{field}")
        values = np.array(contents, dtype=DATATYPES[datatype])
    outputs = requested_outputs(
        [(output.name, _plain(output.parameters)) for output in request.outputs], explain
    )
    return Inference(validated(values), outputs, request.id or None)


def encode(answered: Answered) -> Any:
    """The ModelInferResponse: outputs in raw_output_contents, the threshold as a string."""
    response = pb.ModelInferResponse(
        model_name=MODEL_NAME, model_version=answered.model_version, id=answered.request_id or ""
    )
    response.parameters["threshold"].string_param = str(answered.threshold)
    raw = []
    for output in answered.outputs:
        response.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        if output.datatype == "BYTES":
            raw.append(bytes_tensor(output.data))
        else:
            raw.append(np.asarray(output.data, dtype="<f8").tobytes())
    response.raw_output_contents.extend(raw)
    return response


def bytes_tensor(texts: list[str]) -> bytes:
    """A BYTES tensor's raw contents: each element's length (4 bytes, little-endian), then it."""
    pack = _LENGTH.pack
    return b"".join([pack(len(data)) + data for data in (text.encode() for text in texts)])


def _plain(parameters: Any) -> dict[str, Any]:
    """A map of InferParameter as plain values (None where no value is set)."""
    plain: dict[str, Any] = {}
    for name, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        plain[name] = None if choice is None else getattr(parameter, choice)
    return plain


def _tensor_metadata(tensor: dict[str, Any]) -> Any:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"]
    )
