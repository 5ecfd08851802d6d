"""`oncology-predict INPUT [-o OUTPUT] [--errors FILE]`: score a CSV file of any size.

INPUT is a UCI-format file or a headered CSV with (at least) the nine feature columns; an empty
cell or `?` is not measured. The output is the input's records, verbatim, with the columns
`prediction`, `malignant_probability` and `imputed` appended (and `contribution_<feature>` with
`--explain`), under a header row (the UCI column names for a UCI file). The file is read, scored
and written in blocks of lines, so memory stays bounded whatever its size.

Bad records are never dropped silently: by default the run stops at the first block holding any,
names them (line, column, value, rule) and exits 1, and OUTPUT is not created (nor is an existing
OUTPUT touched: the output is written to a temporary file renamed at the end). With `--errors
FILE`, bad records go to FILE (line, reason, record) and the run reports how many.

INPUT, OUTPUT, FILE and `--artifacts` may be `s3://BUCKET/KEY` objects (`oncology_model.storage`):
the input is read as it is scored, the output uploaded in parts that become the object only at
the end (none is left when the run stops), so memory stays bounded there too.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, cast

import numpy as np

from oncology_model.datamodel import (
    ANSWER_COLUMNS,
    CONTRIBUTION_COLUMNS,
    FEATURES,
    cell_error,
    cell_value,
)
from oncology_model.integrity import ArtifactError
from oncology_model.storage import AtomicObject, ObjectUrl, StorageError, location, open_object
from oncology_model.words import counted, duration

if TYPE_CHECKING:  # pandas comes with these; main() checks it is installed before importing them
    from oncology_model.classifier import Classifier
    from oncology_model.dataset import Block, CsvTable

SHOWN_ERRORS = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oncology-predict", description=__doc__.split("\n")[0])
    parser.add_argument(
        "input", type=location, help="a UCI-format or headered CSV file (or s3://BUCKET/KEY)"
    )
    parser.add_argument(
        "-o", "--output", type=location, help="the scored CSV (default: stdout; or s3://...)"
    )
    parser.add_argument(
        "--errors", type=location, help="write bad records here instead of failing (or s3://...)"
    )
    parser.add_argument("--explain", action="store_true", help="append per-feature contributions")
    parser.add_argument(
        "--artifacts",
        type=location,
        help="model folder or s3://BUCKET/PREFIX/ (default: the bundled one)",
    )
    parser.add_argument("--block-lines", type=int, default=16_384, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("pandas") is None:
        print(
            "oncology-predict needs pandas: pip install 'oncology-model[pandas]'", file=sys.stderr
        )
        return 2
    from oncology_model.classifier import Classifier

    with tempfile.TemporaryDirectory(prefix="oncology-predict-") as scratch:
        try:
            from oncology_model.model_storage import local_model

            artifacts = (
                None if args.artifacts is None else local_model(args.artifacts, Path(scratch))
            )
            classifier = Classifier(artifacts_dir=artifacts)
            source = (
                open_object(args.input)
                if isinstance(args.input, ObjectUrl)
                else args.input.open("rb")
            )
        except (ArtifactError, OSError) as exc:
            print(f"oncology-predict: {exc}", file=sys.stderr)
            return 2
        return _score(args, classifier, source)


def _score(args: argparse.Namespace, classifier: Classifier, source: BinaryIO) -> int:
    from oncology_model.dataset import CsvTable, DatasetError

    with source:
        try:
            table = CsvTable(source, block_lines=args.block_lines)
            positions = feature_positions(table.columns)
        except DatasetError as exc:
            print(f"oncology-predict: {args.input}: {exc}", file=sys.stderr)
            return 2
        progress = None
        if sys.stderr.isatty() and isinstance(args.input, Path):
            progress = Progress(args.input.stat().st_size, source)
        scorer = Scorer(classifier, table, positions, explain=args.explain)
        try:
            with (
                replaced_atomically(args.output) as out,
                replaced_atomically(args.errors) if args.errors else nullcontext() as errors_out,
            ):
                counts = scorer.run(out, errors_out, progress)
        except (BadRecords, DatasetError, StorageError) as exc:
            if progress:
                progress.clear()
            print(f"oncology-predict: {args.input}: {exc}", file=sys.stderr)
            where = f"{args.output} was not written" if args.output else "stdout is incomplete"
            print(f"oncology-predict: stopped; {where}", file=sys.stderr)
            return 1
    scored, rejected, seconds = counts
    target = args.output or "stdout"
    message = f"scored {counted(scored, 'record')} into {target} in {duration(seconds)}"
    if args.errors:
        message += f"; {counted(rejected, 'bad record')} written to {args.errors}"
    print(f"oncology-predict: {message}", file=sys.stderr)
    return 0


class BadRecords(Exception):
    """Records that cannot be scored, named in the message."""


def feature_positions(columns: list[str]) -> list[int]:
    """Where the nine features are among the file's columns (each exactly once)."""
    from oncology_model.dataset import DatasetError

    problems = [f"{name} is missing" for name in FEATURES if name not in columns]
    problems += [f"{name} appears twice" for name in FEATURES if columns.count(name) > 1]
    if problems:
        raise DatasetError("the header must name the nine scores: " + "; ".join(problems))
    return [columns.index(name) for name in FEATURES]


class Scorer:
    """Scores a `CsvTable` block by block into CSV, verbatim records with answers appended."""

    def __init__(
        self, classifier: Classifier, table: CsvTable, positions: list[int], *, explain: bool
    ) -> None:
        self.classifier = classifier
        self.table = table
        self.positions = positions
        self.explain = explain

    def run(
        self, out: IO[bytes], errors_out: IO[bytes] | None, progress: Progress | None
    ) -> tuple[int, int, float]:
        """Score every block; returns (records scored, records rejected, seconds)."""
        from oncology_model.frames import prediction_frame

        started = time.perf_counter()
        header = _csv_line(self.table.columns)
        answers = ANSWER_COLUMNS + (CONTRIBUTION_COLUMNS if self.explain else ())
        out.write(f"{header},{','.join(answers)}\n".encode())
        if errors_out is not None:
            errors_out.write(b"line,reason,record\n")
        scored = rejected = 0
        for block in self.table.blocks():
            rows, bad = self.block_rows(block)
            if bad and errors_out is None:
                raise BadRecords(_describe(bad))
            if bad and errors_out is not None:
                errors_out.write(_error_lines(bad))
                rejected += len(bad)
            keep = np.setdiff1d(np.arange(len(block.records)), [i for i, *_ in bad if i >= 0])
            frame = prediction_frame(self.classifier, rows[keep], explain=self.explain)
            suffixes = frame.to_csv(header=False, index=False, lineterminator="\n").encode()
            records = [block.records[i] for i in keep.tolist()]
            out.write(
                b"".join(
                    record + b"," + suffix + b"\n"
                    for record, suffix in zip(records, suffixes.splitlines(), strict=True)
                )
            )
            scored += len(records)
            if progress:
                progress.show(scored + rejected)
        if progress:
            progress.clear()
        return scored, rejected, time.perf_counter() - started

    def block_rows(self, block: Block) -> tuple[np.ndarray, list[tuple[int, int, str, bytes]]]:
        """The block's scores (n, 9), and its bad records: (row or -1, line, reason, record)."""
        from oncology_model.dataset import converted

        bad: dict[int, list[str]] = {}
        rows = np.empty((len(block.records), len(FEATURES)), dtype=np.float64)
        for j, (name, position) in enumerate(zip(FEATURES, self.positions, strict=True)):
            values, codes, errors = converted(block.cells[position], _cell)
            rows[:, j] = values
            for code, error in enumerate(errors):
                if error is None:
                    continue
                for i in np.flatnonzero(codes == code).tolist():
                    text = block.cells.iat[i, position]
                    bad.setdefault(i, []).append(f"{name} {text!r}: {error}")
        found = [
            (i, int(block.cells.index[i]), "; ".join(reasons), block.records[i])
            for i, reasons in bad.items()
        ]
        found += [(-1, line, rule, record) for line, rule, record in block.bad_lines]
        return rows, sorted(found, key=lambda error: error[1])


def _cell(text: str) -> tuple[float, str | None]:
    """A CSV cell's score (NaN: not measured) and what is wrong with it (`cell_error`)."""
    error = cell_error(text)
    if error is not None:
        return np.nan, error
    value = cast(float | None, cell_value(text))  # a valid cell: a number or not measured
    return np.nan if value is None else float(value), None


def _describe(bad: list[tuple[int, int, str, bytes]]) -> str:
    shown = [f"  line {line}: {reason}" for _, line, reason, _ in bad[:SHOWN_ERRORS]]
    more = (
        f"\n  ... and {len(bad) - SHOWN_ERRORS} more in this block"
        if len(bad) > SHOWN_ERRORS
        else ""
    )
    return (
        f"{counted(len(bad), 'bad record')} (use --errors FILE to set them aside):\n"
        + "\n".join(shown)
        + more
    )


def _error_lines(bad: list[tuple[int, int, str, bytes]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    for _, line, reason, record in bad:
        writer.writerow([line, reason, record.decode("utf-8", errors="replace")])
    return text.getvalue().encode()


def _csv_line(names: list[str]) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="").writerow(names)
    return text.getvalue()


@contextmanager
def replaced_atomically(path: Path | ObjectUrl | None) -> Iterator[IO[bytes]]:
    """A file that becomes `path` only when the block ends without error; stdout when None; an
    object uploaded in parts, which become it only then, for an s3:// URL."""
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    if isinstance(path, ObjectUrl):
        upload = AtomicObject(path)
        try:
            yield cast(IO[bytes], upload)
            upload.commit()
        finally:
            upload.close()
        return
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


class Progress:
    """A one-line progress bar on stderr (only on a terminal): bytes read of the input."""

    def __init__(self, total: int, source: IO[bytes]) -> None:
        self.total = max(total, 1)
        self.source = source
        self.started = time.perf_counter()

    def show(self, records: int) -> None:
        done = min(self.source.tell() / self.total, 1.0)
        rate = records / max(time.perf_counter() - self.started, 1e-9)
        bar = "#" * int(done * 30)
        print(
            f"\r[{bar:<30}] {done:4.0%} {records:,} records, {rate:,.0f}/s", end="", file=sys.stderr
        )

    def clear(self) -> None:
        print("\r" + " " * 79 + "\r", end="", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
