"""Offline scoring: `oncology-predict` on a generated UCI-format file, rows per second and the
scorer's peak RSS (VmHWM of its own address space, read while it runs: getrusage's maxrss would
count the parent's pages the child shared before exec).

`python -m bench.scoring --rows 1000000` measures once; `make bench` calls `scoring_benchmark`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """A UCI-format file of random tumors, every 50th without bare_nuclei (`?`)."""
    rng = np.random.default_rng(seed)
    with path.open("w") as out:
        for start in range(0, rows, 100_000):
            scores = rng.integers(1, 11, size=(min(100_000, rows - start), 9)).astype(str)
            scores[::50, 5] = "?"
            ids = np.arange(start, start + len(scores)) + 1_000_000
            classes = np.where(scores[:, 0] < "5", "2", "4")
            table = np.column_stack([ids.astype(str), scores, classes])
            out.write("\n".join(",".join(row) for row in table.tolist()) + "\n")


def scoring_benchmark(out_dir: Path, rows: int) -> dict[str, Any]:
    """Score a generated file of `rows` records; rows per second and peak RSS in MB."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source, scored = out_dir / f"scoring-{rows}.data", out_dir / f"scoring-{rows}.csv"
    generate(source, rows)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "oncology_model.scoring", str(source), "-o", str(scored)],
        cwd=ROOT, stderr=subprocess.PIPE,
    )  # fmt: skip
    peak_kb = 0
    while process.poll() is None:
        peak_kb = max(peak_kb, _high_water_kb(process.pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    message = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"oncology-predict failed: {message}")
    with scored.open("rb") as answers:
        written = sum(1 for _ in answers) - 1
    assert written == rows, (written, rows)
    source.unlink()
    scored.unlink()
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "peak_rss_mb": peak_kb / 1024,
    }


def _high_water_kb(pid: int) -> int:
    """The process's peak resident set so far (Linux), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000])
    args = parser.parse_args()
    for rows in args.rows:
        print(json.dumps(scoring_benchmark(ROOT / "build" / "bench", rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
