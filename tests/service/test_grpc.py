"""The Open Inference Protocol over gRPC on the real service (`python -m webservice.serve`), with a
real gRPC client: health, metadata, answers equal to REST's, the same errors as statuses, hostile
inputs, bearer tokens, request ids, log and metrics, graceful stop under load, supervision."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.live_server import LiveServer, live_server
from oncology_model.integrity import bundled_artifacts_dir
from ops.loopback import free_port
from tests.unit.test_auth import ALICE, ALICE_LINE, LAB, LAB_LINE, write
from webservice.grpcserver.protocol import inference_stub, pb

pytestmark = pytest.mark.slow

Tensor = pb.ModelInferRequest.InferInputTensor
FEATURES = 9


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("grpc"), workers=1) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server: LiveServer) -> Iterator[Any]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield inference_stub(channel)


def tumors(n: int, seed: int = 7) -> np.ndarray:
    """n tumors; every 7th with bare_nuclei not measured (NaN)."""
    rows = np.random.default_rng(seed).integers(1, 11, size=(n, FEATURES)).astype(np.float32)
    rows[::7, 5] = np.nan
    return rows


def raw_request(rows: np.ndarray, datatype: str = "FP32", **fields: Any) -> Any:
    dtype = {"FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8"}[datatype]
    return pb.ModelInferRequest(
        model_name="oncology",
        inputs=[Tensor(name="tumors", datatype=datatype, shape=list(rows.shape))],
        raw_input_contents=[rows.astype(dtype).tobytes()],
        **fields,
    )


def typed_request(rows: np.ndarray, datatype: str, **fields: Any) -> Any:
    field = {"INT32": "int_contents", "INT64": "int64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents"}[datatype]  # fmt: skip
    values = rows.ravel().tolist()
    if datatype.startswith("INT"):
        values = [int(v) for v in values]
    contents = pb.InferTensorContents(**{field: values})
    tensor = Tensor(name="tumors", datatype=datatype, shape=list(rows.shape), contents=contents)
    return pb.ModelInferRequest(model_name="oncology", inputs=[tensor], **fields)


def outputs(response: Any) -> dict[str, np.ndarray]:
    """The response's outputs as arrays, read from raw_output_contents as tritonclient does."""
    found = {}
    for output, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        if output.datatype == "BYTES":
            items, offset = [], 0
            while offset < len(raw):
                length = int.from_bytes(raw[offset : offset + 4], "little")
                items.append(raw[offset + 4 : offset + 4 + length].decode())
                offset += 4 + length
            found[output.name] = np.array(items)
        else:
            found[output.name] = np.frombuffer(raw, dtype="<f8").reshape(list(output.shape))
    return found


def post(server: LiveServer, path: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # nosec B310: loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def rest_v2(server: LiveServer, rows: np.ndarray, **fields: Any) -> tuple[int, Any]:
    data = [None if v != v else v for v in rows.ravel().tolist()]
    tensor = {"name": "tumors", "shape": list(rows.shape), "datatype": "FP32", "data": data}
    return post(server, "/v2/models/oncology/infer", {"inputs": [tensor], **fields})


def native(server: LiveServer, rows: np.ndarray) -> list[dict[str, Any]]:
    names = ("clump_thickness", "uniformity_of_cell_size", "uniformity_of_cell_shape",
             "marginal_adhesion", "single_epithelial_cell_size", "bare_nuclei", "bland_chromatin",
             "normal_nucleoli", "mitoses")  # fmt: skip
    body = {
        "tumors": [
            {n: None if v != v else int(v) for n, v in zip(names, row, strict=True)}
            for row in rows.tolist()
        ]
    }
    status, answer = post(server, "/v1/predictions/batch", body)
    assert status == 200, answer
    return list(answer["predictions"])


def error_of(call: Any, request: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=30, **kwargs)
    return raised.value


def test_health_and_metadata(server: LiveServer, stub: Any) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="oncology")).ready
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="oncology"))
    version = metadata.versions[0]
    assert stub.ModelReady(pb.ModelReadyRequest(name="oncology", version=version)).ready
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("tumors", "FP32", [-1, 9])
    ]
    assert [t.name for t in metadata.outputs] == [
        "malignant_probability", "label", "prediction_id", "contributions"
    ]  # fmt: skip
    assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "oncology-webservice"
    for request in (
        pb.ModelReadyRequest(name="other"),
        pb.ModelReadyRequest(name="oncology", version="9"),
    ):
        error = error_of(stub.ModelReady, request)
        assert error.code() == grpc.StatusCode.NOT_FOUND, error
    error = error_of(stub.ModelMetadata, pb.ModelMetadataRequest(name="other"))
    assert error.details() == "Unknown model 'other': this server serves 'oncology'."
    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService", "liveness"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service


@pytest.mark.parametrize(
    ("form", "datatype"),
    [("raw", "FP32"), ("raw", "FP64"), ("typed", "FP32"), ("typed", "FP64")],
)
def test_answers_equal_rest_for_the_same_tumors(
    server: LiveServer, stub: Any, form: str, datatype: str
) -> None:
    rows = tumors(1000)
    make = raw_request if form == "raw" else typed_request
    response = stub.ModelInfer(make(rows, datatype, id="batch-1"), timeout=30)
    assert response.id == "batch-1"
    assert response.model_name == "oncology"
    assert response.parameters["threshold"].string_param
    got = outputs(response)
    expected = native(server, rows)
    assert got["malignant_probability"].tolist() == [
        p["probabilities"]["malignant"] for p in expected
    ]
    assert got["label"].tolist() == [p["prediction"] for p in expected]
    assert len(set(got["prediction_id"].tolist())) == 1000
    status, v2 = rest_v2(server, rows)
    assert status == 200
    assert v2["outputs"][0]["data"] == got["malignant_probability"].tolist()
    assert float(response.parameters["threshold"].string_param) == v2["parameters"]["threshold"]


def test_integer_tensors_raw_and_typed(server: LiveServer, stub: Any) -> None:
    rows = np.nan_to_num(tumors(50), nan=3.0)
    expected = [p["prediction"] for p in native(server, rows)]
    for datatype in ("INT32", "INT64"):
        for make in (raw_request, typed_request):
            got = outputs(stub.ModelInfer(make(rows, datatype), timeout=30))
            assert got["label"].tolist() == expected, (datatype, make)


def test_outputs_selection_and_explain(server: LiveServer, stub: Any) -> None:
    rows = tumors(5)
    explain = {"explain": pb.InferParameter(bool_param=True)}
    response = stub.ModelInfer(raw_request(rows, parameters=explain), timeout=30)
    got = outputs(response)
    assert [o.name for o in response.outputs] == [
        "malignant_probability", "label", "prediction_id", "contributions"
    ]  # fmt: skip
    status, v2 = rest_v2(server, rows, parameters={"explain": True})
    assert status == 200
    assert got["contributions"].shape == (5, 9)
    assert got["contributions"].ravel().tolist() == v2["outputs"][3]["data"]
    chosen = [pb.ModelInferRequest.InferRequestedOutputTensor(name="label")]
    response = stub.ModelInfer(raw_request(rows, outputs=chosen), timeout=30)
    assert [o.name for o in response.outputs] == ["label"]


def test_prediction_ids_are_on_record(server: LiveServer, stub: Any) -> None:
    ids = outputs(stub.ModelInfer(raw_request(tumors(3)), timeout=30))["prediction_id"]
    deadline = time.monotonic() + 10
    while True:
        try:
            url = f"{server.url}/v1/predictions/{ids[-1]}"
            with urllib.request.urlopen(url, timeout=5) as answer:  # nosec B310: loopback
                assert json.loads(answer.read())["prediction_id"] == ids[-1]
                return
        except urllib.error.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _hostile() -> list[tuple[str, Any, grpc.StatusCode, str]]:
    rows = tumors(2)
    good = raw_request(rows)

    def changed(change: Any) -> Any:
        request = pb.ModelInferRequest()
        request.CopyFrom(good)
        change(request)
        return request

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    return [
        ("no input", pb.ModelInferRequest(model_name="oncology"), invalid, "exactly one tensor"),
        ("another input name", changed(lambda r: setattr(r.inputs[0], "name", "x")), invalid,
         "Input 'x' is not an input of model 'oncology'"),
        ("a shape of 8 scores", changed(lambda r: r.inputs[0].shape.__setitem__(1, 8)), invalid,
         "shape [2, 8] must be [N, 9]"),
        ("a shape of 3 dimensions", changed(lambda r: r.inputs[0].shape.append(1)), invalid,
         "must be [N, 9]"),
        ("shape larger than the raw contents",
         changed(lambda r: r.inputs[0].shape.__setitem__(0, 3)), invalid,
         "raw_input_contents has 72 bytes; shape [3, 9] of FP32 needs 108"),
        ("raw contents of the wrong length",
         changed(lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 71)), invalid,
         "raw_input_contents has 71 bytes"),
        ("two raw contents", changed(lambda r: r.raw_input_contents.append(b"")), invalid,
         "raw_input_contents has 2 entries"),
        ("raw and typed contents",
         changed(lambda r: r.inputs[0].contents.fp32_contents.append(1.0)), invalid,
         "both contents and raw_input_contents"),
        ("typed contents in the wrong field",
         pb.ModelInferRequest(model_name="oncology", inputs=[Tensor(
             name="tumors", datatype="FP32", shape=[2, 9],
             contents=pb.InferTensorContents(int64_contents=[1] * 18))]),
         invalid, "FP32 values go in contents.fp32_contents, not in contents.int64_contents"),
        ("too few typed values", pb.ModelInferRequest(model_name="oncology", inputs=[Tensor(
             name="tumors", datatype="INT64", shape=[2, 9],
             contents=pb.InferTensorContents(int64_contents=[1] * 17))]),
         invalid, "contents.int64_contents has 17 values; shape [2, 9] needs 18"),
        ("a datatype not taken", changed(lambda r: setattr(r.inputs[0], "datatype", "BYTES")),
         invalid, "datatype 'BYTES' is not supported"),
        ("more rows than a batch may have",
         pb.ModelInferRequest(model_name="oncology", inputs=[Tensor(
             name="tumors", datatype="FP32", shape=[10_001, 9])],
             raw_input_contents=[b"\0" * 10_001 * 36]), invalid, "must have 1 to 10000 rows"),
        ("an unknown output",
         changed(lambda r: r.outputs.add(name="secret")), invalid,
         "Output 'secret' is not an output of model 'oncology'"),
        ("an unknown parameter",
         changed(lambda r: r.parameters["priority"].CopyFrom(pb.InferParameter(int64_param=1))),
         invalid, "Unknown request parameter(s) 'priority'"),
        ("explain not a boolean",
         changed(lambda r: setattr(r.parameters["explain"], "string_param", "yes")), invalid,
         "Request parameter 'explain' must be true or false."),
        ("out-of-range scores", raw_request(np.full((1, 9), 11.0)), invalid,
         "tumors[0].clump_thickness: 11 is out of range"),
        ("another model", changed(lambda r: setattr(r, "model_name", "other")),
         grpc.StatusCode.NOT_FOUND, "Unknown model 'other': this server serves 'oncology'."),
        ("another version", changed(lambda r: setattr(r, "model_version", "0.0.1")),
         grpc.StatusCode.NOT_FOUND, "has no version '0.0.1'"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "request_", "code", "message"), _hostile(), ids=[c[0] for c in _hostile()]
)
def test_hostile_inputs_are_refused_with_the_right_status(
    stub: Any, case: str, request_: Any, code: grpc.StatusCode, message: str
) -> None:
    error = error_of(stub.ModelInfer, request_)
    assert error.code() == code, error
    assert message in str(error.details()), error.details()
    assert stub.ServerLive(pb.ServerLiveRequest()).live  # and it goes on answering


def test_bytes_that_are_no_message_are_refused_and_the_server_goes_on(
    server: LiveServer, stub: Any
) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        for garbage in (b"\xff" * 64, b"\x2a\x05\x0a\x03abc\x1a\xff\xff\xff\xff\x0f"):
            with pytest.raises(grpc.RpcError) as raised:
                infer(garbage, timeout=10)
            assert raised.value.code() in (
                grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT
            ), raised.value  # fmt: skip
        with pytest.raises(grpc.RpcError) as raised:
            channel.unary_unary("/inference.GRPCInferenceService/RepositoryModelLoad")(
                b"", timeout=10
            )
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert stub.ModelInfer(raw_request(tumors(1)), timeout=30).outputs


def test_without_a_verified_model_calls_are_unavailable(tmp_path: Path) -> None:
    """A tampered model: the gRPC side stays up, not ready (health NOT_SERVING), and inference
    is UNAVAILABLE naming the reason, as REST answers 503."""
    artifacts = tmp_path / "artifacts"
    shutil.copytree(bundled_artifacts_dir(), artifacts)
    (artifacts / "model.onnx").write_bytes(b"not a model")
    env = {"ONCOLOGY_ARTIFACTS_DIR": str(artifacts)}
    with live_server(tmp_path, workers=1, env=env, wait=False) as server:
        deadline = time.monotonic() + 30
        while not server.grpc_listening():
            assert time.monotonic() < deadline and server.process.poll() is None
            time.sleep(0.1)
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = inference_stub(channel)
            assert stub.ServerLive(pb.ServerLiveRequest()).live
            assert not stub.ServerReady(pb.ServerReadyRequest()).ready
            assert not stub.ModelReady(pb.ModelReadyRequest(name="oncology")).ready
            error = error_of(stub.ModelInfer, raw_request(tumors(1)))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "The model failed to load" in str(error.details())
            health = health_pb2_grpc.HealthStub(channel)
            answer = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
            live = health.Check(health_pb2.HealthCheckRequest(service="liveness"), timeout=5)
            assert live.status == health_pb2.HealthCheckResponse.SERVING


def test_the_same_message_as_rest_v2(server: LiveServer, stub: Any) -> None:
    rows = np.array([[4, 1, 2, 1, 2, 1, 1, 1, 11], [0, 1, 2, 1, 2, 1, 1, 1, 1]], dtype=np.float32)
    status, rest = rest_v2(server, rows)
    assert status == 400
    error = error_of(stub.ModelInfer, raw_request(rows))
    assert error.details() == rest["error"]


def test_oversized_messages_are_resource_exhausted(stub: Any) -> None:
    request = pb.ModelInferRequest(
        model_name="oncology",
        inputs=[Tensor(name="tumors", datatype="FP32", shape=[1, 9])],
        raw_input_contents=[b"\0" * (5 * 1024 * 1024)],
    )
    error = error_of(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.ModelInfer(raw_request(tumors(1)), timeout=30).outputs


def test_request_ids_access_log_and_metrics(server: LiveServer, stub: Any) -> None:
    _, call = stub.ModelInfer.with_call(
        raw_request(tumors(2)), metadata=(("x-request-id", "grpc-test-42"),), timeout=30
    )
    assert ("x-request-id", "grpc-test-42") in [(m.key, m.value) for m in call.trailing_metadata()]
    error = error_of(stub.ModelInfer, pb.ModelInferRequest(model_name="oncology"))
    generated = dict(error.trailing_metadata())["x-request-id"]  # on errors too, made when absent
    assert len(generated) == 24
    error_of(stub.ModelInfer, pb.ModelInferRequest(model_name="oncology"))
    deadline = time.monotonic() + 5
    while not any(r["request_id"] == "grpc-test-42" for r in server.access_log()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    line = next(r for r in server.access_log() if r["request_id"] == "grpc-test-42")
    assert line["protocol"] == "grpc" and line["method"] == "ModelInfer"
    assert line["status"] == "OK" and line["caller"] == "anonymous"
    assert not server.log.read_text().count("breaks the contract")  # no medical data in logs
    time.sleep(1.5)  # the gRPC process's tally flushes every second
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as page:  # nosec B310
        text = page.read().decode()
    series = 'oncology_grpc_requests_total{caller="anonymous",code="%s",method="ModelInfer"}'
    assert series % "OK" in text and series % "INVALID_ARGUMENT" in text
    assert 'oncology_grpc_request_duration_seconds_count{code="OK",method="ModelInfer"}' in text


def test_bearer_tokens_in_the_authorization_metadata(tmp_path: Path) -> None:
    tokens = write(tmp_path / "tokens", f"{ALICE_LINE}\n{LAB_LINE}\n")
    env = {"ONCOLOGY_TOKENS_FILE": str(tokens)}
    with (
        live_server(tmp_path, workers=1, env=env) as server,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        stub = inference_stub(channel)
        request = raw_request(tumors(1))
        assert stub.ServerLive(pb.ServerLiveRequest()).live  # open, as /v2/health/live
        assert stub.ServerReady(pb.ServerReadyRequest()).ready
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
        for metadata, code, message in (
            ((), grpc.StatusCode.UNAUTHENTICATED,
             "needs a token: send the metadata authorization: Bearer <token>."),
            ((("authorization", "Basic abc"),), grpc.StatusCode.UNAUTHENTICATED, "bearer"),
            ((("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED, "not valid"),
            ((("authorization", f"Bearer {LAB}"),), grpc.StatusCode.PERMISSION_DENIED,
             "does not grant the permission predict"),
        ):  # fmt: skip
            for call, message_request in (
                (stub.ModelInfer, request),
                (stub.ModelMetadata, pb.ModelMetadataRequest(name="oncology")),
            ):
                error = error_of(call, message_request, metadata=metadata)
                assert error.code() == code, (metadata, error)
                assert message in str(error.details())
        answer = stub.ModelInfer(request, metadata=(("authorization", f"Bearer {ALICE}"),))
        assert answer.outputs
        time.sleep(0.3)
        callers = {(r["method"], r["status"], r["caller"]) for r in server.access_log()
                   if r.get("protocol") == "grpc"}  # fmt: skip
        assert ("ModelInfer", "OK", "alice") in callers
        assert ("ModelInfer", "UNAUTHENTICATED", "unauthenticated") in callers
        assert ("ModelInfer", "PERMISSION_DENIED", "lab") in callers
        assert ALICE not in server.log.read_text()


def test_the_bench_grpc_scenario_runs(server: LiveServer, tmp_path: Path) -> None:
    """`make bench`'s gRPC comparison, briefly: both protocols answer, nothing fails."""
    from bench.grpc_load import grpc_scenario

    result = grpc_scenario(server, tmp_path, seconds=1, rounds=1)
    assert result["grpc_single_c16"]["requests"] > 0
    assert result["grpc_single_c16"]["errors"] == 0
    assert result["rest_v2_single_c16"]["rps"] > 0
    for side in ("grpc_batch_10000_ms", "rest_batch_10000_ms"):
        assert 0 < result[side]["server"] <= result[side]["client"]


def test_sigterm_under_load_loses_no_accepted_call(tmp_path: Path) -> None:
    """16 clients call without pause; SIGTERM: every call the server accepted (its id in the
    access log) is answered OK; the rest are refused (UNAVAILABLE), never lost."""
    graceful = 10
    env = {"GRACEFUL_TIMEOUT": str(graceful), "GRPC_WORKERS": "2"}
    outcomes: dict[str, tuple[grpc.StatusCode, float, float]] = {}
    details: dict[str, str] = {}
    with live_server(tmp_path, workers=1, env=env) as server:
        assert len(server.grpc_pids()) == 2
        stop = threading.Event()
        requests = [raw_request(tumors(1)), raw_request(tumors(2000))]

        def client(number: int) -> None:
            with grpc.insecure_channel(server.grpc_target) as channel:
                stub = inference_stub(channel)
                i = 0
                while not stop.is_set():
                    rid = f"c{number}-{i}"
                    started = time.monotonic()
                    try:
                        stub.ModelInfer(
                            requests[i % 2], metadata=(("x-request-id", rid),), timeout=30
                        )
                        code = grpc.StatusCode.OK
                    except grpc.RpcError as error:
                        code = error.code()
                        details[rid] = str(error.details())
                    outcomes[rid] = (code, started, time.monotonic())
                    i += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        term_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(graceful + 10) == 0
        exited_after = time.monotonic() - term_at
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join()
        accepted = {r["request_id"] for r in server.access_log() if r.get("protocol") == "grpc"}
    lost = [rid for rid in accepted if rid in outcomes and outcomes[rid][0] != grpc.StatusCode.OK]
    assert not lost, lost[:5]
    answered_while_stopping = [
        rid for rid, (code, started, ended) in outcomes.items()
        if code == grpc.StatusCode.OK and started < term_at < ended
    ]  # fmt: skip
    assert answered_while_stopping
    # Refused, never accepted: UNAVAILABLE once the server stopped, or CANCELLED by gRPC's core
    # for a call arriving at the instant of the stop (still waiting for a thread of the server).
    refused = {code for code, _, _ in outcomes.values()} - {grpc.StatusCode.OK}
    unexpected = sorted(
        (
            code.name,
            round(started - term_at, 3),
            round(ended - term_at, 3),
            rid in accepted,
            details.get(rid),
        )
        for rid, (code, started, ended) in outcomes.items()
        if code not in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    )
    assert refused <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, unexpected[:10]
    assert exited_after <= graceful


def test_a_grpc_process_that_dies_stops_the_service_and_its_unwritten_answers_are_counted(
    tmp_path: Path,
) -> None:
    """Answers are written every minute here: the killed process had written none of them, and
    the launcher says how many were lost (as gunicorn's master does for a worker)."""
    env = {"ONCOLOGY_RECORDS_FLUSH_SECONDS": "60"}
    with live_server(tmp_path, workers=1, env=env) as server:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = inference_stub(channel)
            stub.ModelInfer(raw_request(tumors(25)), timeout=30)
        (pid,) = server.grpc_pids()
        gunicorn = server.gunicorn_pid
        os.kill(pid, signal.SIGKILL)
        assert server.process.wait(30) != 0
        assert not Path(f"/proc/{gunicorn}").exists()
        log = server.log.read_text()
        assert "the gRPC server exited" in log
        assert f"gRPC process {pid} stopped without writing 25 answered tumors" in log


def test_a_grpc_port_in_use_stops_the_start_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environment = {**os.environ, "PORT": str(free_port()), "GRPC_PORT": str(port),
                       "ONCOLOGY_RECORDS": "off"}  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "webservice.serve"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"GRPC_PORT {port} on 127.0.0.1 cannot be used" in result.stderr
