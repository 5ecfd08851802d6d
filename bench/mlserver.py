"""Optional comparison (`make bench BENCH_ARGS=--mlserver`): Seldon MLServer serving the same
scikit-learn pipeline (our joblib reference) through its V2 REST protocol, with 2 workers.

MLServer lives in its own virtual environment under build/bench/, with the scikit-learn version
that wrote the joblib file; `uvloop<0.22` is pinned because MLServer 1.7.1's workers crash on
newer uvloop.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import time
import venv
from importlib import metadata
from pathlib import Path
from typing import Any

from oncology_model.integrity import JOBLIB_FILE, bundled_artifacts_dir
from ops.loopback import free_port

MLSERVER = "mlserver==1.7.1"
MLSERVER_SKLEARN = "mlserver-sklearn==1.7.1"
SEED_ROW = [4, 1, 2, 1, 2, 1, 1, 1, 1]


def _environment(root: Path) -> Path:
    env_dir = root / "mlserver-venv"
    marker = env_dir / ".installed"
    if not marker.exists():
        shutil.rmtree(env_dir, ignore_errors=True)
        venv.create(env_dir, with_pip=True)
        subprocess.run(
            [
                str(env_dir / "bin" / "pip"), "install", "--quiet", MLSERVER, MLSERVER_SKLEARN,
                "uvloop<0.22", f"scikit-learn=={metadata.version('scikit-learn')}",
                f"joblib=={metadata.version('joblib')}",
            ],
            check=True,
        )  # fmt: skip
        marker.touch()
    return env_dir


def mlserver_benchmark(root: Path, *, seconds: int, rounds: int) -> dict[str, Any]:
    from harness.load import run_wrk  # the same wrk runner as for the service

    env_dir = _environment(root)
    models = root / "mlserver-models"
    shutil.rmtree(models, ignore_errors=True)
    (models / "oncology").mkdir(parents=True)
    shutil.copy(bundled_artifacts_dir() / JOBLIB_FILE, models / "oncology" / "model.joblib")
    (models / "oncology" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "oncology",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
    )
    port = free_port()
    (models / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": 2,
            }
        )
    )
    body = {
        "inputs": [{"name": "tumors", "shape": [1, 9], "datatype": "FP64", "data": SEED_ROW}],
        "outputs": [{"name": "predict_proba"}],
    }
    script = root / "mlserver.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(body)}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    log = (root / "logs" / "mlserver.log").open("wb")
    process = subprocess.Popen(
        [str(env_dir / "bin" / "mlserver"), "start", str(models)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v2/models/oncology/infer"
    try:
        _wait(port, "/v2/models/oncology/ready", process)
        c16 = [run_wrk(url, script, connections=16, seconds=seconds) for _ in range(rounds)]
        c1 = run_wrk(url, script, connections=1, seconds=min(seconds, 5))
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    middle = sorted(c16, key=lambda run: run["rps"])[len(c16) // 2]
    return {"c16": middle, "rounds_c16": c16, "c1": c1, "version": MLSERVER}


def _wait(port: int, path: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("mlserver exited; see build/bench/logs/mlserver.log")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("mlserver did not become ready")


if __name__ == "__main__":
    print(json.dumps(mlserver_benchmark(Path(sys.argv[1]), seconds=5, rounds=1), indent=2))
