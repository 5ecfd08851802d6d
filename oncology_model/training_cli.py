"""`oncology-train`: the training command (`oncology_model.training` does the training).

On x86-64 it runs itself again with OpenBLAS's kernel and threads pinned (`PINNED_BLAS`): OpenBLAS
picks its kernels by CPU model, and the last bit of a coefficient would differ between hosts, so
the committed artifacts would not retrain byte for byte everywhere.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

from oncology_model.dataset import DatasetError, bundled_data_path, load_datasets
from oncology_model.integrity import ArtifactError
from oncology_model.storage import ObjectUrl, StorageError, location
from oncology_model.training import CANDIDATE_NAMES, SEED, train

# OpenBLAS (under numpy and scipy) picks its kernels by CPU model, and kernels for two CPUs can
# round the same float64 sums differently in the last bit: the fitted coefficients would depend on
# the machine. The command line trains with one kernel, on one thread, on every x86-64 machine
# (any with AVX2, 2013 on). OpenBLAS reads these only when it loads, hence the re-run.
PINNED_BLAS = {"OPENBLAS_CORETYPE": "Zen", "OPENBLAS_NUM_THREADS": "1"}


DEFAULT_OUT = Path("build/model")
DEFAULT_REPORT = Path("build/report")


def main(argv: list[str] | None = None) -> int:
    """Command line: train on the bundled data (or given files or folders), write the artifacts."""
    if argv is None:
        _pin_blas()
    parser = argparse.ArgumentParser(
        prog="oncology-train", description="Train, evaluate and export the model."
    )
    parser.add_argument(
        "--data",
        type=location,
        nargs="+",
        help="UCI-format files or folders of them, or s3://BUCKET/PREFIX/ (its objects) or "
        "s3://BUCKET/KEY, used together (default: the bundled file)",
    )
    parser.add_argument(
        "--out",
        type=location,
        default=DEFAULT_OUT,
        help=f"artifact folder (default: {DEFAULT_OUT}; never the installed package unless "
        "given), or s3://BUCKET/PREFIX/: the model, its report and its wheel go under "
        "PREFIX/<model version>/, never over a version already there",
    )
    parser.add_argument(
        "--report", type=Path, help=f"report folder (default: {DEFAULT_REPORT}; not with s3://)"
    )
    parser.add_argument("--no-report", action="store_true", help="skip the JSON and PNG report")
    parser.add_argument(
        "--wheel-dir",
        type=Path,
        help="also build the wheel carrying these artifacts, here (not with s3://)",
    )
    parser.add_argument(
        "--no-wheel", action="store_true", help="with --out s3://...: upload no wheel"
    )
    parser.add_argument(
        "--candidates",
        nargs="+",
        choices=CANDIDATE_NAMES,
        default=list(CANDIDATE_NAMES),
        metavar="NAME",
        help=f"evaluate only these of {', '.join(CANDIDATE_NAMES)} (default: all); the "
        "selection rule chooses among them",
    )
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if isinstance(args.out, ObjectUrl) and (args.report or args.wheel_dir):
        parser.error(
            "with --out s3://..., the report and the wheel go under <out>/<model version>/: "
            "leave out --report and --wheel-dir (--no-report, --no-wheel skip them)"
        )
    with tempfile.TemporaryDirectory(prefix="oncology-train-") as scratch:
        return _run(args, Path(scratch))


def _run(args: argparse.Namespace, scratch: Path) -> int:
    from oncology_model.model_storage import LocalData, publish_model

    data_files = None
    try:
        data_files = LocalData(args.data or [bundled_data_path()], scratch)
        data = load_datasets(data_files.paths)
        bucket = args.out if isinstance(args.out, ObjectUrl) else None
        out_dir = scratch / "model" if bucket else args.out
        report_dir = args.report or DEFAULT_REPORT
        if bucket:
            report_dir = scratch / "report"
        train(
            data=data,
            out_dir=out_dir,
            report_dir=None if args.no_report else report_dir,
            seed=args.seed,
            candidates=tuple(args.candidates),
        )
        wheel_dir = scratch / "dist" if bucket and not args.no_wheel else args.wheel_dir
        wheel = None
        if wheel_dir is not None:
            from oncology_model.release import build_model_wheel

            wheel = build_model_wheel(out_dir, wheel_dir)
            if not bucket:
                print(f"wheel {wheel}")
        if bucket:
            report = None if args.no_report else report_dir
            target = publish_model(out_dir, bucket, report=report, wheel=wheel)
            also = [name for name, part in (("report", report), ("wheel", wheel)) if part]
            print(f"model{''.join(f', {name}' for name in also)} in {target}")
    except (DatasetError, ArtifactError, StorageError) as exc:
        message = str(exc) if data_files is None else data_files.shown(str(exc))
        print(f"oncology-train: {message}", file=sys.stderr)
        return 1
    return 0


def _pin_blas() -> None:
    """Run this command again with `PINNED_BLAS` in its environment, unless it is there already."""
    if platform.machine() not in ("x86_64", "AMD64") or os.name != "posix":
        return
    if all(os.environ.get(name) == value for name, value in PINNED_BLAS.items()):
        return
    sys.stdout.flush()
    os.execve(sys.executable, sys.orig_argv, {**os.environ, **PINNED_BLAS})


if __name__ == "__main__":
    sys.exit(main())
