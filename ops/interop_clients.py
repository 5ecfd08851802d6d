"""Real Open Inference Protocol clients against the live service, unmodified: tritonclient's
HTTP and gRPC clients, and the kserve SDK's InferenceRESTClient and InferenceGRPCClient; binary
and JSON tensor data over REST, raw and typed contents over gRPC.

Run by `ops/interop.py` with the interpreter of its own virtual environment (the clients are not
project dependencies), once per family (tritonclient's and kserve's gRPC messages both define
`inference.*`, so one process cannot load both):
`python ops/interop_clients.py triton|kserve http://127.0.0.1:PORT 127.0.0.1:GRPC_PORT
127.0.0.1:GUARDED_GRPC_PORT`, the last a server with a tokens file whose token is in
INTEROP_TOKEN. Every answer is compared with the native /v1/predictions/batch for the same
tumors. Prints one line per check and 'N passed, N failed' at the end; exits 1 when a check
failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np

MODEL = "oncology"
# The clients' environment holds only the clients, not this project: the feature order is
# restated here, as a client's author would; the metadata check below holds it to the served one.
FEATURES = (
    "clump_thickness",
    "uniformity_of_cell_size",
    "uniformity_of_cell_shape",
    "marginal_adhesion",
    "single_epithelial_cell_size",
    "bare_nuclei",
    "bland_chromatin",
    "normal_nucleoli",
    "mitoses",
)
SEED = np.array([[4, 1, 2, 1, 2, 1, 1, 1, 1]], dtype=np.float32)


def tumors(n: int) -> np.ndarray:
    """n random tumors; every 7th has bare_nuclei not measured (NaN)."""
    rows = np.random.default_rng(n).integers(1, 11, size=(n, 9)).astype(np.float32)
    rows[::7, 5] = np.nan
    return rows


def native(base: str, rows: np.ndarray) -> tuple[list[float], list[str]]:
    """Malignant probabilities and labels from /v1/predictions/batch (null for NaN)."""
    body = {
        "tumors": [
            {name: None if np.isnan(v) else int(v) for name, v in zip(FEATURES, row, strict=True)}
            for row in rows.tolist()
        ]
    }
    request = urllib.request.Request(
        base + "/v1/predictions/batch",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    # An http:// URL on loopback built here (B310 warns of file:/ and custom schemes).
    with urllib.request.urlopen(request, timeout=30) as response:  # nosec B310
        predictions = json.loads(response.read())["predictions"]
    return (
        [p["probabilities"]["malignant"] for p in predictions],
        [p["prediction"] for p in predictions],
    )


def on_record(base: str, rows: np.ndarray, prediction_ids: Any) -> None:
    """The output `prediction_id`, as the client reads it: one id per row, each looking up its
    record (the first and the last row's)."""
    texts = [x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(prediction_ids)]
    assert len(texts) == len(rows) == len(set(texts)), texts[:3]
    for prediction_id in (texts[0], texts[-1]):
        url = f"{base}/v1/predictions/{prediction_id}"
        with urllib.request.urlopen(url, timeout=30) as response:  # nosec B310: loopback
            assert json.loads(response.read())["prediction_id"] == prediction_id


def same_answer(base: str, rows: np.ndarray, output: Callable[[str], Any]) -> None:
    """The answer's outputs (`output(name)`: as the client reads one) are the native API's for
    the same rows, and its prediction ids look up their records."""
    same_as_native(base, rows, output("malignant_probability"), output("label"))
    on_record(base, rows, output("prediction_id"))


def same_as_native(base: str, rows: np.ndarray, probability: Any, labels: Any) -> None:
    expected_p, expected_labels = native(base, rows)
    texts = [x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(labels).ravel()]
    assert texts == expected_labels, (texts[:5], expected_labels[:5])
    assert np.asarray(probability).ravel().tolist() == expected_p


def triton_checks(base: str) -> dict[str, Callable[[], None]]:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(url=base.removeprefix("http://"))

    def health() -> None:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(MODEL)

    def metadata() -> None:
        model = client.get_model_metadata(MODEL)
        assert model["inputs"][0]["shape"] == [-1, 9], model
        assert model["inputs"][0]["parameters"]["features"] == list(FEATURES)
        assert client.get_server_metadata()["name"] == "oncology-webservice"

    def infer(rows: np.ndarray, binary: bool) -> None:
        tensor = httpclient.InferInput("tumors", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        result = client.infer(MODEL, [tensor], request_id="triton-1")
        assert result.get_response()["id"] == "triton-1"
        same_answer(base, rows, result.as_numpy)

    def malformed() -> None:
        tensor = httpclient.InferInput("tumors", [1, 9], "INT32")
        tensor.set_data_from_numpy(np.array([[4, 1, 2, 1, 2, 1, 1, 1, 11]], dtype=np.int32))
        try:
            client.infer(MODEL, [tensor])
        except InferenceServerException as error:
            print(f"    tritonclient user sees: {error}")
            assert error.status() == "400"
            assert "tumors[0].mitoses: 11 is out of range" in str(error.message())
        else:
            raise AssertionError("a malformed tensor was answered")

    return {
        "tritonclient: live, ready, model ready": health,
        "tritonclient: server and model metadata": metadata,
        "tritonclient: 1 tumor, binary data": lambda: infer(SEED, True),
        "tritonclient: 1 tumor, JSON data": lambda: infer(SEED, False),
        "tritonclient: 1,000 tumors (NaN = not measured), binary": lambda: infer(
            tumors(1000), True
        ),
        "tritonclient: 1,000 tumors (NaN = not measured), JSON": lambda: infer(tumors(1000), False),
        "tritonclient: malformed tensor": malformed,
    }


def kserve_checks(base: str) -> dict[str, Callable[[], None]]:
    import httpx
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    def run(coroutine: Callable[[InferenceRESTClient], Any]) -> Any:
        async def main() -> Any:
            client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
            try:
                return await coroutine(client)
            finally:
                await client.close()

        return asyncio.run(main())

    def health() -> None:
        assert run(lambda client: client.is_server_live(base))
        assert run(lambda client: client.is_server_ready(base))
        assert run(lambda client: client.is_model_ready(base, MODEL))

    def infer(rows: np.ndarray, binary: bool) -> None:
        tensor = InferInput("tumors", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        request = InferRequest(model_name=MODEL, infer_inputs=[tensor], request_id="kserve-1")
        response = run(lambda client: client.infer(base, request, model_name=MODEL))
        assert response.id == "kserve-1"
        outputs = {output.name: output for output in response.outputs}
        same_answer(base, rows, lambda name: outputs[name].as_numpy())

    def malformed() -> None:
        tensor = InferInput("tumors", [1, 8], "INT64", data=[4, 1, 2, 1, 2, 1, 1, 1])
        request = InferRequest(model_name=MODEL, infer_inputs=[tensor])
        try:
            run(lambda client: client.infer(base, request, model_name=MODEL))
        except httpx.HTTPStatusError as error:
            print(f"    kserve user sees: {error}")
            assert error.response.status_code == 400
            assert "shape [1, 8] must be [N, 9]" in str(error)
        else:
            raise AssertionError("a malformed tensor was answered")

    return {
        "kserve: live, ready, model ready": health,
        "kserve: 1 tumor, binary data": lambda: infer(SEED, True),
        "kserve: 1 tumor, JSON data": lambda: infer(SEED, False),
        "kserve: 1,000 tumors (NaN = not measured), binary": lambda: infer(tumors(1000), True),
        "kserve: 1,000 tumors (NaN = not measured), JSON": lambda: infer(tumors(1000), False),
        "kserve: malformed tensor": malformed,
    }


def triton_grpc_checks(base: str, target: str, guarded: str) -> dict[str, Callable[[], None]]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url=target)

    def health() -> None:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(MODEL)

    def metadata() -> None:
        model = client.get_model_metadata(MODEL, as_json=True)
        assert model["inputs"][0]["shape"] == ["-1", "9"], model
        assert client.get_server_metadata().name == "oncology-webservice"

    def infer(rows: np.ndarray) -> None:
        tensor = grpcclient.InferInput("tumors", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)  # raw_input_contents, tritonclient's only way
        result = client.infer(MODEL, [tensor], request_id="triton-grpc-1")
        assert result.get_response().id == "triton-grpc-1"
        same_answer(base, rows, result.as_numpy)

    def refused(
        tensor: Any, code: str, message: str, model: str = MODEL, on: Any = client, **kwargs: Any
    ) -> None:
        try:
            on.infer(model, [tensor], **kwargs)
        except InferenceServerException as error:
            print(f"    tritonclient user sees: {error}")
            assert error.status() == f"StatusCode.{code}", error.status()
            assert message in str(error.message()), error.message()
        else:
            raise AssertionError(f"answered, not {code}")

    def malformed() -> None:
        tensor = grpcclient.InferInput("tumors", [1, 9], "INT32")
        tensor.set_data_from_numpy(np.array([[4, 1, 2, 1, 2, 1, 1, 1, 11]], dtype=np.int32))
        refused(tensor, "INVALID_ARGUMENT", "tumors[0].mitoses: 11 is out of range")

    def wrong_length() -> None:
        tensor = grpcclient.InferInput("tumors", [2, 9], "FP32")
        tensor.set_data_from_numpy(tumors(2))
        tensor.set_shape([3, 9])  # the raw contents stay 2 rows long
        refused(tensor, "INVALID_ARGUMENT", "raw_input_contents has 72 bytes")

    def wrong_model() -> None:
        tensor = grpcclient.InferInput("tumors", [1, 9], "FP32")
        tensor.set_data_from_numpy(SEED)
        refused(tensor, "NOT_FOUND", "this server serves 'oncology'", model="oncologie")

    def tokens() -> None:
        token = os.environ["INTEROP_TOKEN"]
        protected = grpcclient.InferenceServerClient(url=guarded)
        tensor = grpcclient.InferInput("tumors", [1, 9], "FP32")
        tensor.set_data_from_numpy(SEED)
        refused(tensor, "UNAUTHENTICATED", "needs a token", on=protected)
        result = protected.infer(MODEL, [tensor], headers={"authorization": f"Bearer {token}"})
        assert result.as_numpy("label").tolist() == [b"benign"]

    return {
        "tritonclient gRPC: live, ready, model ready": health,
        "tritonclient gRPC: server and model metadata": metadata,
        "tritonclient gRPC: 1 tumor, raw contents": lambda: infer(SEED),
        "tritonclient gRPC: 1,000 tumors (NaN = not measured), raw contents": lambda: infer(
            tumors(1000)
        ),
        "tritonclient gRPC: malformed tensor": malformed,
        "tritonclient gRPC: raw contents shorter than the shape": wrong_length,
        "tritonclient gRPC: wrong model name": wrong_model,
        "tritonclient gRPC: missing token, then a token": tokens,
    }


def kserve_grpc_checks(base: str, target: str, guarded: str) -> dict[str, Callable[[], None]]:
    import grpc
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    def run(coroutine: Callable[[InferenceGRPCClient], Any], url: str = target) -> Any:
        async def main() -> Any:
            client = InferenceGRPCClient(url=url, timeout=30)
            try:
                return await coroutine(client)
            finally:
                await client.close()

        return asyncio.run(main())

    def health() -> None:
        assert run(lambda client: client.is_server_live())
        assert run(lambda client: client.is_server_ready())
        assert run(lambda client: client.is_model_ready(MODEL))

    def infer(rows: np.ndarray, raw: bool) -> None:
        tensor = InferInput("tumors", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=raw)  # False: typed fp32_contents
        request = InferRequest(model_name=MODEL, infer_inputs=[tensor], request_id="kserve-g1")
        response = run(lambda client: client.infer(request))
        assert response.id == "kserve-g1"
        outputs = {output.name: output for output in response.outputs}
        same_answer(base, rows, lambda name: outputs[name].as_numpy())

    def refused(
        request: Any, code: Any, message: str, url: str = target, headers: Any = None
    ) -> None:
        try:
            run(lambda client: client.infer(request, headers=headers), url)
        except grpc.RpcError as error:
            print(f"    kserve user sees: {error.code()}: {error.details()}")
            assert error.code() == code, error.code()
            assert message in str(error.details()), error.details()
        else:
            raise AssertionError(f"answered, not {code}")

    def malformed() -> None:
        tensor = InferInput("tumors", [1, 8], "INT64", data=[4, 1, 2, 1, 2, 1, 1, 1])
        request = InferRequest(model_name=MODEL, infer_inputs=[tensor])
        refused(request, grpc.StatusCode.INVALID_ARGUMENT, "shape [1, 8] must be [N, 9]")

    def wrong_model() -> None:
        tensor = InferInput("tumors", [1, 9], "INT64", data=[4, 1, 2, 1, 2, 1, 1, 1, 1])
        request = InferRequest(model_name="oncologie", infer_inputs=[tensor])
        refused(request, grpc.StatusCode.NOT_FOUND, "this server serves 'oncology'")

    def tokens() -> None:
        tensor = InferInput("tumors", [1, 9], "INT64", data=[4, 1, 2, 1, 2, 1, 1, 1, 1])
        request = InferRequest(model_name=MODEL, infer_inputs=[tensor])
        refused(request, grpc.StatusCode.UNAUTHENTICATED, "needs a token", url=guarded)
        headers = (("authorization", f"Bearer {os.environ['INTEROP_TOKEN']}"),)
        response = run(lambda client: client.infer(request, headers=headers), guarded)
        assert response.outputs[1].as_numpy().tolist() == [b"benign"]

    return {
        "kserve gRPC: live, ready, model ready": health,
        "kserve gRPC: 1 tumor, raw contents": lambda: infer(SEED, True),
        "kserve gRPC: 1 tumor, typed contents": lambda: infer(SEED, False),
        "kserve gRPC: 1,000 tumors (NaN = not measured), raw": lambda: infer(tumors(1000), True),
        "kserve gRPC: 1,000 tumors (NaN = not measured), typed": lambda: infer(tumors(1000), False),
        "kserve gRPC: malformed tensor": malformed,
        "kserve gRPC: wrong model name": wrong_model,
        "kserve gRPC: missing token, then a token": tokens,
    }


def main() -> int:
    family, base, target, guarded = sys.argv[1], sys.argv[2].rstrip("/"), *sys.argv[3:5]
    if family == "triton":
        families = (triton_checks(base), triton_grpc_checks(base, target, guarded))
    else:
        families = (kserve_checks(base), kserve_grpc_checks(base, target, guarded))
    passed = failed = 0
    for checks in families:
        for name, check in checks.items():
            try:
                check()
            except Exception:
                failed += 1
                print(f"FAIL {name}\n{traceback.format_exc()}")
            else:
                passed += 1
                print(f"ok   {name}")
    print(f"interop: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
