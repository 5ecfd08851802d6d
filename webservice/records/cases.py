"""`oncology-cases export`: the record's confirmed cases as training data.

    oncology-cases export -o cases.csv [--since D] [--until D] [--model-version V] [--track T]
    oncology-cases export -o s3://BUCKET/cases/cases.csv ...    (the AWS chain's credentials)

Writes every prediction on record that has a confirmed outcome, answered in the window, as the
headered CSV that `oncology-train --data` and `oncology-compare --holdout` read: the prediction id
as `sample_code_number`, the nine scores as the service was sent them (an empty cell where not
measured) and the class from the outcome (2 benign, 4 malignant; a corrected outcome's latest
value). Erased predictions are left out. Beside it, `cases.csv.manifest.json`: the query, the rows
per class, the file's SHA-256; training checks the file against it and names it in the model's
metadata. Nothing is written when no case matches (exit 1). `python -m webservice.records.cases`
in a checkout; the database is ONCOLOGY_DATABASE_URL's, as for `oncology-db`.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

from oncology_model.datamodel import FEATURES
from oncology_model.manifest import SUFFIX, manifest_path
from oncology_model.storage import ObjectUrl, StorageError, location, put_file
from oncology_model.words import counted
from webservice.records import ids
from webservice.records.cli import with_database
from webservice.records.quality import Window, confirmed_answers
from webservice.records.schema import answers
from webservice.records.store import ERASED, current_revision, now

COLUMNS = ("sample_code_number", *FEATURES, "class")
CLASS_CODES = {"benign": "2", "malignant": "4"}
MANIFEST_KIND = "oncology-confirmed-cases"


def confirmed_cases(engine: sa.Engine, window: Window) -> Iterator[tuple[str, bytes, str]]:
    """(prediction id, the nine score codes, outcome) of every confirmed, unerased prediction
    answered in the window, oldest answer first, then by position."""
    with engine.connect() as connection:
        rows = list(
            confirmed_answers(
                connection,
                window,
                answers.c.answered_at,
                answers.c.first_prediction_id,
                answers.c.scores,
            )
        )
    for row, confirmed in sorted(rows, key=lambda found: (found[0].answered_at, found[0].id)):
        prediction_ids = ids.ids(row.first_prediction_id[:-6], confirmed[-1][0] + 1)
        for position, outcome in confirmed:
            if row.diagnoses[position] != ERASED:
                scores = row.scores[position * 9 : position * 9 + 9]
                yield prediction_ids[position], scores, outcome


def export(engine: sa.Engine, window: Window, output: Path) -> dict[str, Any] | None:
    """Write the window's confirmed cases to `output` and its manifest beside it; the manifest,
    or None (nothing written) when there is no case. Each file appears whole or not at all."""
    cases = confirmed_cases(engine, window)
    first = next(cases, None)
    if first is None:
        return None
    per_class = {"benign": 0, "malignant": 0}
    with _replacing(output) as out:
        hashed = _Hashing(out)
        writer = csv.writer(hashed, lineterminator="\n")
        writer.writerow(COLUMNS)
        for prediction_id, scores, outcome in itertools.chain([first], cases):
            cells = [str(code) if code else "" for code in scores]
            writer.writerow((prediction_id, *cells, CLASS_CODES[outcome]))
            per_class[outcome] += 1
    manifest = {
        "kind": MANIFEST_KIND,
        "file": output.name,
        "sha256": hashed.sha256.hexdigest(),
        "rows": sum(per_class.values()),
        "rows_per_class": per_class,
        "query": {
            "since": _day(window.since),
            "until": _day(window.until),
            "model_version": window.model_version,
            "track": window.track,
            "rule": (
                "every prediction with a confirmed outcome, answered on or after `since` and "
                "before `until` (UTC days), with its latest outcome; erased predictions left out"
            ),
        },
        "exported_at": now().isoformat().replace("+00:00", "Z"),
        "schema_revision": current_revision(engine),
    }
    with _replacing(manifest_path(output)) as out:
        out.write(json.dumps(manifest, indent=2) + "\n")
    return manifest


def export_to(engine: sa.Engine, window: Window, output: Path | ObjectUrl) -> dict[str, Any] | None:
    """`export` to a local file, or to an object (written locally, then uploaded: the CSV, then
    its manifest, so a reader never finds a manifest that does not describe the CSV beside it)."""
    if isinstance(output, Path):
        return export(engine, window, output)
    with tempfile.TemporaryDirectory(prefix="oncology-cases-") as folder:
        local = Path(folder) / output.name
        manifest = export(engine, window, local)
        if manifest is not None:
            put_file(local, output)
            put_file(manifest_path(local), ObjectUrl(output.bucket, output.key + SUFFIX))
    return manifest


def _fail(message: str) -> int:
    print(f"oncology-cases: {message}", file=sys.stderr)
    return 1


class _Hashing:
    """Text written on to `out`, its UTF-8 bytes hashed on the way (the file is never re-read)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.sha256 = hashlib.sha256()

    def write(self, text: str) -> int:
        self.sha256.update(text.encode("utf-8"))
        return self.out.write(text)


@contextmanager
def _replacing(destination: Path) -> Iterator[TextIO]:
    """A text file written beside `destination` and renamed onto it once whole."""
    handle, name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    temporary = Path(name)
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as out:
            yield out
        temporary.replace(destination)
    finally:
        temporary.unlink(missing_ok=True)


def _day(value: dt.datetime | None) -> str | None:
    return value.date().isoformat() if value else None


def _date(text: str) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), tzinfo=dt.UTC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oncology-cases", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("export", help="confirmed cases as training data, with manifest")
    command.add_argument(
        "-o", "--output", type=location, required=True, help="CSV file or s3:// object to write"
    )
    command.add_argument("--since", type=_date, help="answered on or after, YYYY-MM-DD (UTC)")
    command.add_argument("--until", type=_date, help="answered before, YYYY-MM-DD (UTC)")
    command.add_argument("--model-version", help="only answers of this model version")
    command.add_argument("--track", help="only answers of this track (stable, canary)")
    args = parser.parse_args(argv)
    output = args.output
    if isinstance(output, ObjectUrl) and output.is_prefix:
        return _fail(f"{output} is a prefix: name the object, as s3://BUCKET/cases.csv")
    if isinstance(output, Path) and not output.parent.is_dir():
        return _fail(f"folder {output.parent} does not exist")
    window = Window(args.since, args.until, args.model_version, args.track)

    def run(engine: sa.Engine, _config: dict[str, Any]) -> int:
        try:
            manifest = export_to(engine, window, output)
        except StorageError as error:
            return _fail(str(error))
        if manifest is None:
            return _fail("no confirmed case in the window: nothing written")
        classes = manifest["rows_per_class"]
        print(
            f"exported {counted(manifest['rows'], 'confirmed case')} ({classes['benign']} benign, "
            f"{classes['malignant']} malignant) to {output}, manifest "
            f"{output.name}{SUFFIX} (SHA-256 {manifest['sha256'][:12]}...)",
            file=sys.stderr,
        )
        return 0

    return with_database("oncology-cases", run)


if __name__ == "__main__":
    sys.exit(main())
