"""The bench's gRPC scenario: the Open Inference Protocol over gRPC against the same over REST.

(a) single inference (one tumor) at 16 connections: gRPC `ModelInfer` (raw contents, as
    tritonclient sends it) against REST V2 `/v2/models/oncology/infer` (JSON, by wrk), both on the
    same service (GRPC_WORKERS gRPC processes beside as many gunicorn workers): requests per
    second, latency, and the server's CPU time per request, the fairest figure (the two load
    generators differ: wrk is C, the gRPC load is Python's grpc.aio, `LOAD_PROCESSES` processes
    holding 16 channels, each its own connection, one call at a time);
(b) a 10,000-tumor batch: gRPC with raw FP32 contents against the same tumors as a JSON body of
    /v1/predictions/batch: the server's time (its access log) and the client's (send to answer
    read, the client's encoding and decoding included).

`python -m bench.grpc_load` runs it alone, briefly, against a fresh service (a smoke run);
`make bench` runs it in its rounds (`bench.run`).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.live_server import LiveServer, live_server
from harness.load import cpu_seconds, process_tree, run_wrk, wrk_script
from oncology_model.verify import SEED_TUMOR

CONNECTIONS = 16
LOAD_PROCESSES = 2
BATCH = 10_000
FEATURES = 9


def single_request() -> bytes:
    """A serialized ModelInferRequest of the seed tumor, in raw contents."""
    from webservice.grpcserver.protocol import pb

    row = np.array([list(SEED_TUMOR)], dtype="<f4")
    tensor = pb.ModelInferRequest.InferInputTensor(name="tumors", datatype="FP32", shape=[1, 9])
    request = pb.ModelInferRequest(
        model_name="oncology", inputs=[tensor], raw_input_contents=[row.tobytes()]
    )
    return bytes(request.SerializeToString())


def batch_rows() -> np.ndarray:
    """10,000 tumors (every 7th with bare_nuclei not measured), the same for both protocols."""
    rows = np.random.default_rng(10).integers(1, 11, size=(BATCH, FEATURES)).astype(np.float32)
    rows[::7, 5] = np.nan
    return rows


async def _closed_loop(target: str, channels: int, seconds: float) -> dict[str, Any]:
    """`channels` connections, each calling ModelInfer one call at a time for `seconds`."""
    import grpc

    method = "/inference.GRPCInferenceService/ModelInfer"
    body = single_request()
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def connection() -> None:
        nonlocal errors
        # Its own subchannel pool: a connection of its own, as wrk's connections are.
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            call = channel.unary_unary(method)  # bytes in, bytes out: no client-side decoding
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    await call(body, timeout=30)
                except grpc.RpcError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(connection() for _ in range(channels)))
    return {"latencies": latencies, "errors": errors, "seconds": seconds}


def grpc_load(server: LiveServer, seconds: int) -> dict[str, float]:
    """Single inference over gRPC at CONNECTIONS connections: req/s, p50/p99 ms, errors, and
    the server's CPU time per request (its process tree, as `bench.run.load`)."""
    pids = process_tree(server.process.pid)
    before = cpu_seconds(pids)
    per_process = CONNECTIONS // LOAD_PROCESSES
    loaders = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.grpc_load", "--load", server.grpc_target,
             str(per_process), str(seconds)],
            stdout=subprocess.PIPE,
        )
        for _ in range(LOAD_PROCESSES)
    ]  # fmt: skip
    outputs = [json.loads(loader.communicate(timeout=seconds + 60)[0]) for loader in loaders]
    used = cpu_seconds(pids) - before
    latencies = sorted(latency for output in outputs for latency in output["latencies"])
    requests = len(latencies)
    return {
        "rps": requests / seconds,
        "p50_ms": latencies[requests // 2] * 1000,
        "p99_ms": latencies[min(requests - 1, requests * 99 // 100)] * 1000,
        "requests": requests,
        "errors": sum(output["errors"] for output in outputs),
        "cpu_us_per_request": used / max(requests, 1) * 1e6,
    }


def rest_v2_load(server: LiveServer, script: Path, seconds: int) -> dict[str, float]:
    """Single inference over REST V2 (wrk) at CONNECTIONS connections, with the server's CPU."""
    pids = process_tree(server.process.pid)
    before = cpu_seconds(pids)
    result = run_wrk(
        f"{server.url}/v2/models/oncology/infer", script, connections=CONNECTIONS, seconds=seconds
    )
    used = cpu_seconds(pids) - before
    result["cpu_us_per_request"] = used / max(result["requests"], 1) * 1e6
    return result


def v2_single_script(folder: Path) -> Path:
    tensor = {"name": "tumors", "shape": [1, 9], "datatype": "INT64", "data": list(SEED_TUMOR)}
    return wrk_script(folder / "v2single", {"inputs": [tensor]})


def grpc_batch(server: LiveServer, rows: np.ndarray, number: int) -> tuple[float, float]:
    """(server ms from the access log, client ms) of one 10,000-tumor ModelInfer, raw FP32."""
    import grpc

    from webservice.grpcserver.protocol import inference_stub, pb

    request_id = f"bench-grpc-batch-{number}-{time.time_ns()}"
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = inference_stub(channel)
        stub.ServerLive(pb.ServerLiveRequest(), timeout=10)  # connected before the clock starts
        started = time.perf_counter()
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="tumors", datatype="FP32", shape=list(rows.shape)
        )
        request = pb.ModelInferRequest(
            model_name="oncology", inputs=[tensor], raw_input_contents=[rows.tobytes()]
        )
        response = stub.ModelInfer(request, metadata=(("x-request-id", request_id),), timeout=60)
        np.frombuffer(response.raw_output_contents[0], dtype="<f8")  # the probabilities, read
        client_ms = (time.perf_counter() - started) * 1000
    return _server_ms(server, request_id), client_ms


def rest_batch(server: LiveServer, rows: np.ndarray, number: int) -> tuple[float, float]:
    """(server ms, client ms) of the same tumors as a JSON /v1/predictions/batch."""
    names = ("clump_thickness", "uniformity_of_cell_size", "uniformity_of_cell_shape",
             "marginal_adhesion", "single_epithelial_cell_size", "bare_nuclei", "bland_chromatin",
             "normal_nucleoli", "mitoses")  # fmt: skip
    request_id = f"bench-rest-batch-{number}-{time.time_ns()}"
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.connect()
    started = time.perf_counter()
    tumors = [
        {name: None if v != v else int(v) for name, v in zip(names, row, strict=True)}
        for row in rows.tolist()
    ]
    body = json.dumps({"tumors": tumors}).encode()
    connection.request(
        "POST", "/v1/predictions/batch", body,
        {"Content-Type": "application/json", "X-Request-ID": request_id},
    )  # fmt: skip
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert response.status == 200 and len(answer["predictions"]) == len(rows)
    client_ms = (time.perf_counter() - started) * 1000
    connection.close()
    return _server_ms(server, request_id), client_ms


def _server_ms(server: LiveServer, request_id: str) -> float:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for record in server.access_log():
            if record["request_id"] == request_id:
                return float(record["duration_ms"])
        time.sleep(0.05)
    raise AssertionError(f"{request_id} is not in the access log")


def grpc_scenario(server: LiveServer, folder: Path, seconds: int, rounds: int) -> dict[str, Any]:
    """Both comparisons, in alternating rounds (a slow spell hits both protocols alike)."""
    script = v2_single_script(folder)
    singles: dict[str, list[dict[str, float]]] = {"grpc": [], "rest_v2": []}
    for number in range(rounds):
        order = ["grpc", "rest_v2"] if number % 2 == 0 else ["rest_v2", "grpc"]
        for name in order:
            run = (
                grpc_load(server, seconds)
                if name == "grpc"
                else rest_v2_load(server, script, seconds)
            )
            singles[name].append(run)
    rows = batch_rows()
    batches: dict[str, list[tuple[float, float]]] = {"grpc": [], "rest": []}
    for number in range(max(3, rounds)):
        order = ["grpc", "rest"] if number % 2 == 0 else ["rest", "grpc"]
        for name in order:
            measure = grpc_batch if name == "grpc" else rest_batch
            batches[name].append(measure(server, rows, number))

    def ratios(key: str) -> list[float]:
        return [g[key] / r[key] for g, r in zip(singles["grpc"], singles["rest_v2"], strict=True)]

    def batch_ratio(index: int) -> list[float]:
        return [g[index] / r[index] for g, r in zip(batches["grpc"], batches["rest"], strict=True)]

    return {
        "grpc_single_c16": {k: statistics.median(r[k] for r in singles["grpc"])
                            for k in singles["grpc"][0]},
        "rest_v2_single_c16": {k: statistics.median(r[k] for r in singles["rest_v2"])
                               for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")},
        "grpc_batch_10000_ms": {"server": statistics.median(b[0] for b in batches["grpc"]),
                                "client": statistics.median(b[1] for b in batches["grpc"])},
        "rest_batch_10000_ms": {"server": statistics.median(b[0] for b in batches["rest"]),
                                "client": statistics.median(b[1] for b in batches["rest"])},
        "ratios": {
            "grpc_vs_rest_v2_rps": ratios("rps"),
            "grpc_vs_rest_v2_cpu": ratios("cpu_us_per_request"),
            "grpc_vs_rest_batch_10000_server": batch_ratio(0),
            "grpc_vs_rest_batch_10000_client": batch_ratio(1),
        },
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--load", nargs=3, metavar=("TARGET", "CHANNELS", "SECONDS"))
    parser.add_argument("--seconds", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.load:  # one load process of `grpc_load`: its latencies as JSON on stdout
        target, channels, seconds = args.load
        result = asyncio.run(_closed_loop(target, int(channels), float(seconds)))
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        env = {"GRPC_WORKERS": str(args.workers), "ONCOLOGY_RECORDS": "off"}
        with live_server(Path(folder), workers=args.workers, env=env) as server:
            result = grpc_scenario(server, Path(folder), args.seconds, args.rounds)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
