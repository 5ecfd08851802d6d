"""`make bench`: the service against the HTTP floor, measured side by side in one run.

(a) the floor: a bare WSGI app on gunicorn with the same settings and worker count, which reads a
    POST body of the single prediction's size and answers a small JSON (and, as a second line,
    answers a GET);
(b) this service as served (nginx in front of gunicorn): single predictions (also with bearer
    tokens on; on gunicorn alone without the front: what the front costs; with the prediction
    lane off, answered by flask-restx: what the lane buys), the same one row
    through the Open Inference Protocol (V2 inference), explain requests, batches of 100, 1,000
    and 10,000;
(c) in-process: one `Classifier.predict`, one `predict_many` of 10,000 tumors, and the limit for a
    10,000-tumor batch: parsing its body and serialising its answer with orjson;
(d) offline: `oncology-predict` on a generated file (`--scoring-rows`, default 1,000,000):
    rows per second and peak RSS;
(e) the prediction record: the service as served records into SQLite (the default); the same
    with records off, and recording into a real PostgreSQL on loopback (when Debian's postgresql
    is installed): single predictions and 10,000-tumor batches;
(f) the Open Inference Protocol over gRPC against REST (`bench.grpc_load`): single inference at
    16 connections against REST V2, and a 10,000-tumor batch in raw contents against the same
    batch as REST JSON;
optionally (g) Seldon MLServer serving the same scikit-learn model (`--mlserver`).

Throughput rounds alternate floor and service so that the machine's noise hits both alike; the
figures are medians over the rounds. Targets are ratios measured in this one run (they hold on
any machine): each is printed with its median, its spread over the rounds and whether it is met.
Results go to build/bench/ as results.json and chart.png. A benchmark, not a test: it exits 0
whether or not the targets are met.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.grpc_load import grpc_scenario
from bench.scoring import scoring_benchmark
from harness.live_server import LiveServer, live_server
from harness.load import cpu_seconds, need_wrk, process_tree, rss_mb, run_wrk, wrk_script
from harness.postgres import postgres_bin, running_postgres
from oncology_model import Classifier, Tumor
from oncology_model.verify import SEED_TUMOR
from webservice.tally import FLUSH_SECONDS
from webservice.tokens import new_token

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "bench"
SEED = SEED_TUMOR.to_dict()
# (name, ">=" or "<=", bound): ratios measured in the same run (issue 15), then the absolute
# limits of resources that do not scale with the machine's speed.
TARGETS: dict[str, tuple[str, float]] = {
    # single prediction (through the front, as served) / POST floor (bare WSGI on gunicorn)
    "throughput_ratio": (">=", 0.7),
    "p50_c1_ratio": ("<=", 1.5),  # single prediction p50 / POST floor p50, 1 connection
    "batch_10000_ratio": ("<=", 3.0),  # server time / in-process parse + serialise
    "v2_vs_v1": (">=", 0.9),  # V2 one-row inference / /v1/predictions, 16 connections
    "auth_ratio": (">=", 0.95),  # bearer tokens on / off, 16 connections
    "front_ratio": (">=", 0.7),  # single prediction with the front / on gunicorn alone
    "lane_ratio": (">=", 1.1),  # single prediction through the lane / through flask-restx
    "records_ratio": (">=", 0.85),  # single prediction, recording (SQLite) / records off
    "batch_10000_records_ratio": ("<=", 1.3),  # 10,000 tumors, recording (SQLite) / records off
    "mlserver_ratio": (">=", 5.0),  # service / MLServer, 16 connections (--mlserver)
    "start_to_ready_s": ("<=", 1.5),
    "worker_rss_mb": ("<=", 150.0),
}


def load(server: LiveServer, url: str, script: Path, seconds: int) -> dict[str, float]:
    """wrk at 16 connections against `url`, plus the server's CPU time per request."""
    pids = process_tree(server.process.pid)
    before = cpu_seconds(pids)
    result = run_wrk(url, script, connections=16, seconds=seconds)
    used = cpu_seconds(pids) - before
    result["cpu_us_per_request"] = used / max(result["requests"], 1) * 1e6
    return result


def server_times(server: LiveServer, path: str, body: bytes, repeat: int) -> list[float]:
    """Server-side duration (ms, from the service's access log) of `repeat` sequential posts."""
    return [duration for duration, _ in timed_posts(server, path, body, repeat)]


def timed_posts(
    server: LiveServer, path: str, body: bytes, repeat: int
) -> list[tuple[float, bytes]]:
    """(server time in ms from the access log, answer) of `repeat` sequential posts."""
    sent = []
    for i in range(repeat):
        request_id = f"bench-{path.strip('/').replace('/', '-')}-{len(body)}-{i}-{time.time_ns()}"
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.request(
            "POST", path, body, {"Content-Type": "application/json", "X-Request-ID": request_id}
        )
        response = connection.getresponse()
        answer = response.read()
        assert response.status == 200, response.status
        connection.close()
        sent.append((request_id, answer))
    time.sleep(0.2)
    durations = {record["request_id"]: record["duration_ms"] for record in server.access_log()}
    return [(durations[request_id], answer) for request_id, answer in sent]


def json_limit_ms(body: bytes, answer: bytes, repeat: int) -> list[float]:
    """The in-process floor of a batch request (ms): orjson parsing its body and serialising its
    answer (parsed back from the server's bytes), `repeat` times in this process. The garbage
    collector is off while timed: the floor is the JSON work alone, nothing else."""
    import gc

    import orjson

    answer_object = orjson.loads(answer)
    timings = []
    for _ in range(repeat):
        gc.disable()
        try:
            started = time.perf_counter()
            orjson.loads(body)
            orjson.dumps(answer_object)
            timings.append((time.perf_counter() - started) * 1e3)
        finally:
            gc.enable()
    return timings


def in_process() -> dict[str, float]:
    classifier = Classifier()
    tumor = Tumor(**SEED)
    for _ in range(200):
        classifier.predict(tumor)
    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        classifier.predict(tumor)
    one = (time.perf_counter() - started) / n * 1e6
    rng = np.random.default_rng(0)
    tumors = [Tumor(*row) for row in rng.integers(1, 11, size=(10_000, 9)).tolist()]
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        classifier.predict_many(tumors)
        timings.append((time.perf_counter() - started) * 1e3)
    return {"predict_one_us": one, "predict_many_10000_ms": statistics.median(timings)}


def mlserver_round(seconds: int, rounds: int) -> dict[str, Any]:
    from bench.mlserver import mlserver_benchmark

    return mlserver_benchmark(OUT, seconds=seconds, rounds=rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # Many short rounds rather than a few long ones: the machine's slow spells last seconds, so
    # runs made back to back share them, and a median over 8 ratios shrugs off one bad round.
    parser.add_argument("--seconds", type=int, default=3, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved floor/service rounds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mlserver", action="store_true", help="also measure Seldon MLServer")
    parser.add_argument("--scoring-rows", type=int, default=1_000_000, help="oncology-predict file")
    args = parser.parse_args()
    need_wrk()
    OUT.mkdir(parents=True, exist_ok=True)
    logs = OUT / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    single = wrk_script(OUT / "single", SEED)
    v2_single = wrk_script(
        OUT / "v2single",
        {
            "inputs": [
                {"name": "tumors", "shape": [1, 9], "datatype": "INT64", "data": list(SEED_TUMOR)}
            ]
        },
    )
    get = wrk_script(OUT / "get", None)
    batch_100 = wrk_script(OUT / "batch100", {"tumors": [SEED] * 100})
    token, line = new_token("bench")
    (OUT / "tokens").write_text(line + "\n")
    authorized = wrk_script(OUT / "single-auth", SEED, {"Authorization": f"Bearer {token}"})
    secured_env = {"ONCOLOGY_TOKENS_FILE": str(OUT / "tokens")}
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_model": _cpu_model(),
        },
        "workers": args.workers,
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
    }
    print(f"bench: {args.rounds} interleaved rounds of {args.seconds:g} s, {args.workers} workers")

    # Every server records into a fresh SQLite file of the bench's (the default of `make run`),
    # except the one with records off and the one recording into PostgreSQL.
    records = OUT / "records.sqlite3"
    for leftover in OUT.glob("records.sqlite3*"):
        leftover.unlink()
    os.environ["ONCOLOGY_DATABASE_URL"] = f"sqlite:///{records}"
    with contextlib.ExitStack() as stack:
        floor = stack.enter_context(
            live_server(logs, workers=args.workers, app="bench.floor:app", ready_path="/")
        )
        # As many gRPC processes as workers: the gRPC scenario compares like with like.
        service = stack.enter_context(
            live_server(
                logs, workers=args.workers, wait=False, env={"GRPC_WORKERS": str(args.workers)}
            )
        )
        # Timed alone: started beside another server, it would time the two sharing the cores.
        results["start_to_ready_s"] = service.wait_ready()
        secured = stack.enter_context(live_server(logs, workers=args.workers, env=secured_env))
        # The service on gunicorn alone, without the front: what the front costs.
        bare = stack.enter_context(live_server(logs, workers=args.workers, front=False))
        # The prediction lane off (flask-restx answers): what the lane buys.
        no_lane = stack.enter_context(
            live_server(logs, workers=args.workers, env={"ONCOLOGY_PREDICTION_LANE": "false"})
        )
        records_off = stack.enter_context(
            live_server(logs, workers=args.workers, env={"ONCOLOGY_RECORDS": "off"})
        )
        records_pg = None
        if postgres_bin() is not None:
            database = stack.enter_context(running_postgres())
            records_pg = stack.enter_context(
                live_server(logs, workers=args.workers, env={"ONCOLOGY_DATABASE_URL": database.url})
            )
        floor_url = f"{floor.url}/"
        predict_url = f"{service.url}/v1/predictions"
        v2_url = f"{service.url}/v2/models/oncology/infer"
        secured_url = f"{secured.url}/v1/predictions"
        c1 = max(1, min(args.seconds - 1, 5))
        rounds: dict[str, list[dict[str, float]]] = {
            name: []
            for name in (
                "floor",
                "floor_get",
                "service",
                "v2",
                "auth",
                "bare",
                "no_lane",
                "records_off",
                *(["records_pg"] if records_pg else []),
            )
        }
        rounds_c1: dict[str, list[dict[str, float]]] = {"floor": [], "service": [], "bare": []}
        # Each ratio pairs runs made close together: the service sits between V2 and tokens on
        # (the tightest targets), the POST floor one run further. Every other round goes in the
        # reverse order, so each pair is timed once in each order and no run always follows the
        # same one.
        runs = [
            ("floor_get", floor, floor_url, get),
            ("floor", floor, floor_url, single),
            ("v2", service, v2_url, v2_single),
            ("service", service, predict_url, single),
            ("auth", secured, secured_url, authorized),
            ("bare", bare, f"{bare.url}/v1/predictions", single),
            ("no_lane", no_lane, f"{no_lane.url}/v1/predictions", single),
            ("records_off", records_off, f"{records_off.url}/v1/predictions", single),
        ]
        if records_pg is not None:
            runs.append(("records_pg", records_pg, f"{records_pg.url}/v1/predictions", single))
        for number in range(args.rounds):
            for name, server, url, script in runs if number % 2 == 0 else runs[::-1]:
                rounds[name].append(load(server, url, script, args.seconds))
            # One connection's timings are the most sensitive to anything else running: let the
            # load runs' last work (each worker's metrics flush, once a second) finish first.
            time.sleep(FLUSH_SECONDS + 0.2)
            pair = [
                ("floor", floor_url),
                ("service", predict_url),
                ("bare", f"{bare.url}/v1/predictions"),
            ]
            for name, url in pair if number % 2 == 0 else pair[::-1]:
                rounds_c1[name].append(run_wrk(url, single, connections=1, seconds=c1))
        results["rounds_c16"] = rounds
        results["rounds_c1"] = rounds_c1
        for name, measured in rounds.items():
            results[f"{name}_c16"] = _median(measured)
        results["service_auth_c16"] = results.pop("auth_c16")
        results["floor_c1"] = _median(rounds_c1["floor"])
        results["service_c1"] = _median(rounds_c1["service"])
        results["bare_c1"] = _median(rounds_c1["bare"])
        results["ratios"] = {
            "throughput_ratio": _ratios(rounds["service"], rounds["floor"], "rps"),
            "v2_vs_v1": _ratios(rounds["v2"], rounds["service"], "rps"),
            "auth_ratio": _ratios(rounds["auth"], rounds["service"], "rps"),
            "front_ratio": _ratios(rounds["service"], rounds["bare"], "rps"),
            "lane_ratio": _ratios(rounds["service"], rounds["no_lane"], "rps"),
            "records_ratio": _ratios(rounds["service"], rounds["records_off"], "rps"),
            "p50_c1_ratio": _ratios(rounds_c1["service"], rounds_c1["floor"], "p50_ms"),
            # Not a target: the same ratio on gunicorn alone, to tell the front's hop apart.
            "p50_c1_bare_ratio": _ratios(rounds_c1["bare"], rounds_c1["floor"], "p50_ms"),
        }
        explain_url = predict_url + "?explain=true"
        results["explain_c16"] = load(service, explain_url, single, args.seconds)
        batch_url = f"{service.url}/v1/predictions/batch"
        results["batch_100_c16"] = load(service, batch_url, batch_100, args.seconds)
        for size in (100, 1000):
            body = json.dumps({"tumors": [SEED] * size}).encode()
            times = server_times(service, "/v1/predictions/batch", body, repeat=15)
            results[f"batch_{size}_server_ms"] = {
                "p50": statistics.median(times),
                "max": max(times),
            }
        body = json.dumps({"tumors": [SEED] * 10_000}).encode()
        # Each post is paired with the limit measured right after it: a slow spell hits both.
        times, limits = [], []
        for _ in range(15):
            ((duration, answer),) = timed_posts(service, "/v1/predictions/batch", body, repeat=1)
            times.append(duration)
            limits.extend(json_limit_ms(body, answer, repeat=1))
        results["batch_10000_server_ms"] = {"p50": statistics.median(times), "max": max(times)}
        # The record's cost on a batch: recording (SQLite, and PostgreSQL) against records off,
        # post by post, alternating, so that a slow spell hits both.
        batch_times: dict[str, list[float]] = {"sqlite": [], "off": [], "postgres": []}
        batch_servers = [("sqlite", service), ("off", records_off)]
        if records_pg is not None:
            batch_servers.append(("postgres", records_pg))
        for number in range(15):
            for name, server in batch_servers if number % 2 == 0 else batch_servers[::-1]:
                ((duration, _),) = timed_posts(server, "/v1/predictions/batch", body, repeat=1)
                batch_times[name].append(duration)
        results["batch_10000_records_ms"] = {
            name: statistics.median(times) for name, times in batch_times.items() if times
        }
        results["ratios"]["batch_10000_records_ratio"] = _spread(
            [a / b for a, b in zip(batch_times["sqlite"], batch_times["off"], strict=True)]
        )
        if records_pg is not None:
            results["ratios"]["records_pg_ratio"] = _ratios(
                rounds["records_pg"], rounds["records_off"], "rps"
            )
            results["ratios"]["batch_10000_records_pg_ratio"] = _spread(
                [a / b for a, b in zip(batch_times["postgres"], batch_times["off"], strict=True)]
            )
        results["batch_10000_json_limit_ms"] = statistics.median(limits)
        results["ratios"]["batch_10000_ratio"] = _spread(
            [server / limit for server, limit in zip(times, limits, strict=True)]
        )
        workers = service.workers()
        results["worker_rss_mb"] = max(rss_mb(pid) for pid in workers)
        results["grpc"] = grpc_scenario(service, OUT, args.seconds, args.rounds)
        for name, values in results["grpc"]["ratios"].items():
            results["ratios"][name] = _spread(values)
    results["in_process"] = in_process()
    results["scoring"] = scoring_benchmark(OUT, args.scoring_rows)
    if args.mlserver:
        results["mlserver"] = mlserver_round(args.seconds, args.rounds)
        results["ratios"]["mlserver_ratio"] = _ratios(
            rounds["service"], results["mlserver"]["rounds_c16"], "rps"
        )

    results["targets"] = verdicts(results)
    results["sizing"] = sizing(results)
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    chart(results, OUT / "chart.png")
    print(f"bench: wrote {OUT / 'results.json'} and {OUT / 'chart.png'}")
    return 0


def deployment_resources() -> dict[str, float]:
    """The Deployment's CPU request and limit, its WORKERS, and the HPA's target and bounds."""
    import yaml

    deployment = yaml.safe_load((ROOT / "k8s" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    hpa = yaml.safe_load((ROOT / "k8s" / "hpa.yaml").read_text())["spec"]
    return {
        "cpu_request": _cpus(container["resources"]["requests"]["cpu"]),
        "cpu_limit": _cpus(container["resources"]["limits"]["cpu"]),
        "workers": int(env["WORKERS"]),
        "hpa_target": hpa["metrics"][0]["resource"]["target"]["averageUtilization"] / 100,
        "min_replicas": hpa["minReplicas"],
        "max_replicas": hpa["maxReplicas"],
    }


def _cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


SIZING_RATES = (1_000, 10_000, 100_000)


def sizing(r: dict[str, Any]) -> dict[str, Any]:
    """Pods for 1,000 / 10,000 / 100,000 predictions per second, from the server CPU each
    prediction cost in this run: a pod serves (CPU limit / CPU per prediction) at most, and the
    HPA keeps the average pod at `hpa_target` of its CPU *request*, so in steady state it adds
    pods until each carries request x target / CPU per prediction."""
    k8s = deployment_resources()
    per_prediction_us = {
        "single": r["service_c16"]["cpu_us_per_request"],
        "batch of 100": r["batch_100_c16"]["cpu_us_per_request"] / 100,
        # One sync worker runs a batch on one core from start to end: wall time >= its CPU time.
        "batch of 10,000": r["batch_10000_server_ms"]["p50"] * 1e3 / 10_000,
    }
    shapes = {}
    for shape, cpu_us in per_prediction_us.items():
        at_limit = k8s["cpu_limit"] * 1e6 / cpu_us
        at_target = k8s["cpu_request"] * k8s["hpa_target"] * 1e6 / cpu_us
        shapes[shape] = {
            "cpu_us_per_prediction": cpu_us,
            "per_pod_at_limit": at_limit,
            "per_pod_at_hpa_target": at_target,
            "pods": {
                str(rate): max(k8s["min_replicas"], math.ceil(rate / at_target))
                for rate in SIZING_RATES
            },
        }
    return {"deployment": k8s, "shapes": shapes}


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _ratios(
    numerators: list[dict[str, float]], denominators: list[dict[str, float]], key: str
) -> dict[str, Any]:
    """Round by round ratios of `key` (rounds paired in order), with their median and range."""
    return _spread([a[key] / b[key] for a, b in zip(numerators, denominators, strict=True)])


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "rounds": values,
    }


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with its measured value (median, spread) and whether it is met."""
    measured: dict[str, dict[str, Any]] = dict(results["ratios"])
    for name in ("start_to_ready_s", "worker_rss_mb"):
        measured[name] = _spread([results[name]])
    judged = {}
    for name, (sense, bound) in TARGETS.items():
        if name not in measured:
            continue  # MLServer without --mlserver
        value = measured[name]["median"]
        met = value >= bound if sense == ">=" else value <= bound
        judged[name] = {**measured[name], "target": f"{sense} {bound:g}", "met": met}
    return judged


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _latency(run: dict[str, float]) -> str:
    return f"p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms"


def _rps(run: dict[str, float]) -> str:
    return f"{run['rps']:,.0f} req/s"


TARGET_NAMES = {
    "throughput_ratio": "single prediction / POST floor, c16 (req/s)",
    "p50_c1_ratio": "single prediction / POST floor, c1 (p50)",
    "batch_10000_ratio": "batch of 10,000: server time / orjson parse+serialise",
    "v2_vs_v1": "V2 inference / /v1/predictions, c16 (req/s)",
    "auth_ratio": "tokens on / tokens off, c16 (req/s)",
    "front_ratio": "with the front / gunicorn alone, c16 (req/s)",
    "lane_ratio": "through the lane / through flask-restx, c16 (req/s)",
    "records_ratio": "recording (SQLite) / records off, c16 (req/s)",
    "batch_10000_records_ratio": "batch of 10,000 recording (SQLite) / records off (time)",
    "mlserver_ratio": "service / MLServer, c16 (req/s)",
    "start_to_ready_s": "start to ready (s)",
    "worker_rss_mb": "worker RSS (MB)",
}


REPORTED = {
    "records_pg_ratio": "recording (PostgreSQL) / records off, c16 (req/s)",
    "batch_10000_records_pg_ratio": "batch of 10,000 recording (PostgreSQL) / off (time)",
}


def report(r: dict[str, Any]) -> None:
    """Print the figures as a table, then every target: measured, spread, met or not."""
    floor, service = r["floor_c16"], r["service_c16"]
    cpu = " / ".join(
        f"{run['cpu_us_per_request']:.0f}" for run in (floor, service, r["service_auth_c16"])
    )
    batch = {size: r[f"batch_{size}_server_ms"]["p50"] for size in (100, 1000, 10_000)}
    in_process = r["in_process"]
    rows = [
        ("floor (bare WSGI, POST body read), c16", _rps(floor), _latency(floor)),
        ("floor, POST, c1", _rps(r["floor_c1"]), _latency(r["floor_c1"])),
        ("floor, GET, c16", _rps(r["floor_get_c16"]), _latency(r["floor_get_c16"])),
        ("service: single prediction, c16", _rps(service), _latency(service)),
        ("service: single prediction, c1", _rps(r["service_c1"]), _latency(r["service_c1"])),
        ("service with bearer tokens on, c16", _rps(r["service_auth_c16"]), ""),
        ("service on gunicorn alone (no front), c16", _rps(r["bare_c16"]), _latency(r["bare_c16"])),
        ("service on gunicorn alone (no front), c1", _rps(r["bare_c1"]), _latency(r["bare_c1"])),
        (
            "service without the lane (flask-restx), c16",
            _rps(r["no_lane_c16"]),
            _latency(r["no_lane_c16"]),
        ),
        (
            "service with records off, c16",
            _rps(r["records_off_c16"]),
            _latency(r["records_off_c16"]),
        ),
        *(
            [
                (
                    "service recording into PostgreSQL, c16",
                    _rps(r["records_pg_c16"]),
                    _latency(r["records_pg_c16"]),
                )
            ]
            if "records_pg_c16" in r
            else []
        ),
        (
            "batch of 10,000, server time: SQLite / off / PostgreSQL",
            " / ".join(f"{ms:.1f}" for ms in r["batch_10000_records_ms"].values()) + " ms",
            "",
        ),
        ("server CPU per request, POST floor / service / tokens on", f"{cpu} us", ""),
        ("V2 inference (one row), c16", _rps(r["v2_c16"]), _latency(r["v2_c16"])),
        ("explain, c16", _rps(r["explain_c16"]), _latency(r["explain_c16"])),
        ("batch of 100, c16", _rps(r["batch_100_c16"]), _latency(r["batch_100_c16"])),
        ("batch of 100, server time", f"{batch[100]:.2f} ms", ""),
        ("batch of 1,000, server time", f"{batch[1000]:.2f} ms", ""),
        ("batch of 10,000, server time", f"{batch[10_000]:.2f} ms", ""),
        (
            "batch of 10,000, in-process orjson limit",
            f"{r['batch_10000_json_limit_ms']:.2f} ms",
            "parse the body + serialise the answer",
        ),
        ("in-process Classifier.predict", f"{in_process['predict_one_us']:.0f} us", ""),
        ("in-process predict_many(10,000)", f"{in_process['predict_many_10000_ms']:.1f} ms", ""),
        (
            f"oncology-predict, {r['scoring']['rows']:,} rows",
            f"{r['scoring']['rows_per_s']:,.0f} rows/s",
            f"peak RSS {r['scoring']['peak_rss_mb']:.0f} MB",
        ),
    ]
    if "grpc" in r:
        grpc, rest = r["grpc"]["grpc_single_c16"], r["grpc"]["rest_v2_single_c16"]
        rows += [
            ("gRPC ModelInfer (one row, raw), c16", _rps(grpc), _latency(grpc)),
            ("REST V2 inference (one row, JSON), c16", _rps(rest), _latency(rest)),
            (
                "server CPU per request, gRPC / REST V2",
                f"{grpc['cpu_us_per_request']:.0f} / {rest['cpu_us_per_request']:.0f} us",
                "",
            ),
            *(
                (
                    f"batch of 10,000, {label}: server / client time",
                    f"{times['server']:.1f} / {times['client']:.1f} ms",
                    "",
                )
                for label, times in (
                    ("gRPC raw FP32", r["grpc"]["grpc_batch_10000_ms"]),
                    ("REST JSON", r["grpc"]["rest_batch_10000_ms"]),
                )
            ),
        ]
    if "mlserver" in r:
        rows.append(
            (
                "MLServer (V2, same model), c16",
                _rps(r["mlserver"]["c16"]),
                _latency(r["mlserver"]["c16"]),
            )
        )
        rows.append(("MLServer, c1", _rps(r["mlserver"]["c1"]), _latency(r["mlserver"]["c1"])))
    width = max(len(row[0]) for row in rows)
    print()
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>16}  {note}")
    print("\n  targets (median of the rounds; spread: lowest-highest round)")
    width = max(len(name) for name in TARGET_NAMES.values())
    for key, verdict in r["targets"].items():
        spread = f"{verdict['min']:.2f}-{verdict['max']:.2f}"
        print(
            f"  {TARGET_NAMES[key]:<{width}}  {verdict['median']:>7.2f}  (spread {spread:>11})"
            f"  target {verdict['target']:<7}  {'met' if verdict['met'] else 'NOT MET'}"
        )
    for key, name in REPORTED.items():  # beside the targets, no target of their own
        if key in r["ratios"]:
            ratio = r["ratios"][key]
            spread = f"{ratio['min']:.2f}-{ratio['max']:.2f}"
            print(f"  {name:<{width}}  {ratio['median']:>7.2f}  (spread {spread:>11})")
    k8s, shapes = r["sizing"]["deployment"], r["sizing"]["shapes"]
    print(
        f"\n  sizing (k8s/: CPU limit {k8s['cpu_limit']:g}, request {k8s['cpu_request']:g}, "
        f"HPA at {k8s['hpa_target']:.0%} of the request, {k8s['min_replicas']}-"
        f"{k8s['max_replicas']} pods)"
    )
    rates = "  ".join(f"{rate:>11,}/s" for rate in SIZING_RATES)
    print(
        f"  {'predictions as':<16} {'CPU each':>9}  {'pod at limit':>13}  "
        f"{'at HPA target':>13}  {rates}"
    )
    for shape, figures in shapes.items():
        pods = "  ".join(
            f"{figures['pods'][str(rate)]:>7} pods"
            + ("*" if figures["pods"][str(rate)] > k8s["max_replicas"] else " ")
            for rate in SIZING_RATES
        )
        print(
            f"  {shape:<16} {figures['cpu_us_per_prediction']:>6.1f} us  "
            f"{figures['per_pod_at_limit']:>9,.0f} /s  "
            f"{figures['per_pod_at_hpa_target']:>9,.0f} /s  {pods}"
        )
    print(f"  * more than the HPA's maxReplicas ({k8s['max_replicas']}): raise it first")
    print()


def chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["POST floor", "service", "V2 infer", "explain", "batch of 100\n(requests)"]
    values = [
        r["floor_c16"]["rps"],
        r["service_c16"]["rps"],
        r["v2_c16"]["rps"],
        r["explain_c16"]["rps"],
        r["batch_100_c16"]["rps"],
    ]
    if "mlserver" in r:
        names.append("MLServer")
        values.append(r["mlserver"]["c16"]["rps"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(
        names,
        values,
        color=["grey", "tab:blue", "tab:purple", "tab:cyan", "tab:green", "tab:red"][: len(names)],
    )
    left.tick_params(axis="x", labelsize=8)
    left.set(
        ylabel="requests/s (16 connections)",
        title=f"Throughput ({r['ratios']['throughput_ratio']['median']:.2f}x the POST floor)",
    )
    sizes = [100, 1000, 10_000]
    right.plot(sizes, [r[f"batch_{s}_server_ms"]["p50"] for s in sizes], marker="o")
    right.set(
        xscale="log",
        yscale="log",
        xlabel="tumors per batch",
        ylabel="server time (ms)",
        title="Batch latency",
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
