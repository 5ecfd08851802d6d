"""The gRPC side decodes and encodes with REST V2's own checks and answers: the same rows, the
same messages, the same outputs (`webservice.grpcserver.servicer` over `webservice.openinference`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from webservice.grpcserver.protocol import pb
from webservice.grpcserver.servicer import bytes_tensor, decode, encode
from webservice.openinference import Answered, Output
from webservice.openinference import decode as rest_decode
from webservice.problems import Problem
from webservice.tally import Observed

Tensor = pb.ModelInferRequest.InferInputTensor
MAX_BATCH = 10_000


def both(datatype: str, shape: list[int], values: list[Any], **fields: Any) -> tuple[Any, bytes]:
    """The same request as gRPC (typed contents) and as REST V2 JSON."""
    field = {"INT32": "int_contents", "INT64": "int64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents"}.get(datatype, "fp64_contents")  # fmt: skip
    contents = pb.InferTensorContents(**{field: values})
    grpc_request = pb.ModelInferRequest(
        model_name="oncology",
        inputs=[Tensor(name="tumors", datatype=datatype, shape=shape, contents=contents)],
        **fields,
    )
    tensor = {"name": "tumors", "datatype": datatype, "shape": shape, "data": values}
    return grpc_request, json.dumps({"inputs": [tensor]}).encode()


def message(call: Any) -> str:
    with pytest.raises(Problem) as raised:
        call()
    assert raised.value.status == 400
    return raised.value.detail


@pytest.mark.parametrize(
    ("datatype", "shape", "values"),
    [
        ("INT64", [1, 9], [4, 1, 2, 1, 2, 1, 1, 1, 11]),  # out of range
        ("INT64", [2, 9], [0, 1, 2, 1, 2, 1, 1, 1, 1, 4, 1, 2, 1, 2, 1, 1, 1, 99]),  # two rows
        ("FP64", [1, 9], [4.5, 1, 2, 1, 2, 1, 1, 1, 1]),  # not an integer
        ("INT64", [1, 8], [4, 1, 2, 1, 2, 1, 1, 1]),  # the shape
        ("INT64", [0, 9], []),  # no rows
        ("INT64", [2, 9], [1] * 17),  # too few values
        ("BOOL", [1, 9], [1.0] * 9),  # a datatype not taken
    ],
)
def test_bad_tensors_get_rest_v2s_message(
    datatype: str, shape: list[int], values: list[Any]
) -> None:
    grpc_request, body = both(datatype, shape, values)
    grpc_message = message(lambda: decode(grpc_request, MAX_BATCH))
    rest_message = message(lambda: rest_decode(body, None, MAX_BATCH))
    if "values; shape" in rest_message:  # the field's name differs: data or contents.<field>
        assert grpc_message == rest_message.replace("data has", "contents.int64_contents has")
    else:
        assert grpc_message == rest_message


def test_raw_and_typed_contents_give_the_rows_rest_gives() -> None:
    rows = np.array([[4, 1, 2, 1, 2, np.nan, 1, 1, 1], [10] * 9], dtype=np.float32)
    raw = pb.ModelInferRequest(
        model_name="oncology",
        inputs=[Tensor(name="tumors", datatype="FP32", shape=[2, 9])],
        raw_input_contents=[rows.tobytes()],
        id="r1",
    )
    typed, body = both("FP32", [2, 9], rows.ravel().tolist(), id="r1")
    expected = rest_decode(body.replace(b"NaN", b"null"), None, MAX_BATCH)
    for request in (raw, typed):
        inference = decode(request, MAX_BATCH)
        np.testing.assert_array_equal(inference.rows, expected.rows)
        assert inference.outputs == expected.outputs
        assert inference.request_id == "r1"


def test_explain_and_outputs_are_read_as_over_rest() -> None:
    request, _ = both("INT64", [1, 9], [4, 1, 2, 1, 2, 1, 1, 1, 1])
    request.parameters["explain"].bool_param = True
    assert decode(request, MAX_BATCH).outputs[-1] == "contributions"
    request.outputs.add(name="label")
    assert decode(request, MAX_BATCH).outputs == ("label", "contributions")


def test_answers_are_raw_contents_as_triton_lays_them_out() -> None:
    observed = Observed([[1.0] * 9], [0.5], [True], "x", [0.5])
    answered = Answered(
        [
            Output("malignant_probability", "FP64", [2], [0.25, 0.75]),
            Output("label", "BYTES", [2], ["benign", "malignant"]),
        ],
        "1.0.0",
        None,
        0.224897,
        observed,
    )
    response = encode(answered)
    assert response.id == "" and response.model_version == "1.0.0"
    assert response.parameters["threshold"].string_param == "0.224897"
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("malignant_probability", "FP64", [2]),
        ("label", "BYTES", [2]),
    ]
    assert np.frombuffer(response.raw_output_contents[0], "<f8").tolist() == [0.25, 0.75]
    assert response.raw_output_contents[1] == bytes_tensor(["benign", "malignant"])
    assert bytes_tensor(["ab"]) == b"\x02\x00\x00\x00ab"
