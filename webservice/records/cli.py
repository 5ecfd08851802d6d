"""`oncology-db`: the prediction record's database, from a terminal or a Kubernetes Job.

    oncology-db upgrade              migrate to the latest schema (what the service does at start)
    oncology-db current              the database's schema revision, and the latest
    oncology-db purge [--days N]     delete answers older than ONCOLOGY_RETENTION_DAYS
    oncology-db erase ID...          erase predictions' medical data (the right to erasure)
    oncology-db export [-o FILE]     every tumor on record with its outcome, as CSV

The database is ONCOLOGY_DATABASE_URL's, as for the service (`python -m webservice.records` runs
it too). Nothing it prints holds medical data, except what `export` writes where it is told.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

import sqlalchemy as sa

from oncology_model.words import counted
from webservice.config import database_problem, load_config
from webservice.records.store import (
    EXPORT_COLUMNS,
    RecordStore,
    current_revision,
    engine_for,
    head_revision,
    now,
    upgrade,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oncology-db", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("upgrade", help="migrate the database to the latest schema")
    commands.add_parser("current", help="the database's schema revision, and the latest")
    purge = commands.add_parser("purge", help="delete answers older than the retention")
    purge.add_argument("--days", type=int, help="retention in days (ONCOLOGY_RETENTION_DAYS)")
    erase = commands.add_parser("erase", help="erase predictions' medical data")
    erase.add_argument("prediction_ids", nargs="+", metavar="ID")
    export = commands.add_parser("export", help="every tumor on record, with outcome, as CSV")
    export.add_argument("-o", "--output", help="CSV file to write (default: standard output)")
    export.add_argument(
        "--since", type=dt.date.fromisoformat, help="answered on or after, YYYY-MM-DD"
    )
    export.add_argument("--confirmed-only", action="store_true", help="only tumors with an outcome")
    args = parser.parse_args(argv)

    return with_database(
        "oncology-db", lambda engine, config: _run(args, engine, config["RETENTION_DAYS"])
    )


def with_database(prog: str, run: Callable[[sa.Engine, dict[str, Any]], int]) -> int:
    """`run(engine, settings)` on the service's database (ONCOLOGY_DATABASE_URL), or exit 1 with
    one line naming what is wrong: a setting, the URL (never its password), the database's
    error (never the statement's parameters)."""
    try:
        config = load_config()
    except ValueError as error:
        return _fail(prog, str(error))
    problem = database_problem(config["DATABASE_URL"])
    if problem:
        return _fail(prog, problem)
    engine = engine_for(config["DATABASE_URL"])
    try:
        return run(engine, config)
    except sa.exc.SQLAlchemyError as error:
        original = getattr(error, "orig", None) or error
        reason = str(original).strip().splitlines()[0] if str(original).strip() else ""
        return _fail(prog, f"the database failed: {type(original).__name__}: {reason[:300]}")
    finally:
        engine.dispose()


def _run(args: argparse.Namespace, engine: sa.Engine, retention_days: int) -> int:
    store = RecordStore(engine)
    if args.command == "upgrade":
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
        print(
            f"schema {before or 'none'} -> {after}"
            if before != after
            else f"schema {after}, the latest"
        )
    elif args.command == "current":
        print(f"schema {current_revision(engine) or 'none'} (latest {head_revision()})")
    elif args.command == "purge":
        days = args.days if args.days is not None else retention_days
        if days < 1:
            return _fail("oncology-db", "--days must be at least 1")
        cutoff = now() - dt.timedelta(days=days)
        answers, tumors = store.purge(cutoff)
        print(
            f"purged {counted(answers, 'answer')} ({counted(tumors, 'tumor')}) given before "
            f"{cutoff:%Y-%m-%d %H:%M} UTC ({days} days)"
        )
    elif args.command == "erase":
        failed = 0
        for prediction_id in args.prediction_ids:
            result = store.erase(prediction_id)
            failed += result == "unknown"
            print(f"{prediction_id}: {result}")
        return 1 if failed else 0
    elif args.command == "export":
        since = dt.datetime.combine(args.since, dt.time(), tzinfo=dt.UTC) if args.since else None
        rows = store.export(since=since, confirmed_only=args.confirmed_only)
        if args.output:
            with open(args.output, "w", newline="", encoding="utf-8") as out:
                count = _write_csv(rows, out)
            print(f"exported {counted(count, 'tumor')} to {args.output}", file=sys.stderr)
        else:
            _write_csv(rows, sys.stdout)
    return 0


def _write_csv(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
