"""The record store: the database engine, migrations, and every read and write of the record."""

from __future__ import annotations

import datetime as dt
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa

from oncology_model.datamodel import FEATURES
from webservice.records import ids
from webservice.records.outcomes import Report
from webservice.records.schema import (
    answer_days,
    answers,
    case_references,
    outcome_history,
    outcomes,
)

MIGRATIONS = Path(__file__).with_name("migrations")
# The columns of `RecordStore.export`, one row per tumor.
EXPORT_COLUMNS = [
    "prediction_id",
    "answered_at",
    "model_version",
    "track",
    "caller",
    "case_reference",
    *FEATURES,
    "malignant_probability",
    "prediction",
    "threshold",
    "outcome",
    "outcome_source",
    "confirmed_on",
]
ERASED = 255  # in `scores` and `diagnoses`: the tumor was erased
_CHUNK = 500  # ids per IN (...) clause


class AnswerRecord(NamedTuple):
    """One answered request, queued for the record (`webservice.records.writer`)."""

    first_id: str
    answered_at: dt.datetime
    model_version: str
    track: str
    caller: str
    request_id: str
    threshold: float
    rows: Any  # (n, 9) scores, NaN = not measured: an array or a list of lists
    malignant: Sequence[float]  # as answered
    flags: Any  # diagnoses, True = malignant
    case_references: Sequence[str | None] | None = None


def with_driver(url: str) -> str:
    """`postgresql://` and `postgres://` URLs (what CloudNativePG and most providers hand out)
    through psycopg 3, the driver installed; anything else as it is."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def _write_ahead_log(cursor: Any) -> None:
    """Switch a SQLite file to the write-ahead log (once per file: it stays so). The switch needs
    the file to itself and SQLite does not wait for it (no busy handler, to avoid deadlocks):
    another process opening the same new file at once makes it retry a few times."""
    import sqlite3

    for attempt in range(100):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == 99:
                raise
            time.sleep(0.02)


def engine_for(url: str) -> sa.Engine:
    """An engine for `url`. SQLite: write-ahead log (readers never wait for the writer, several
    processes share the file), `synchronous=NORMAL` (a commit survives the process's death; the
    last ones may not survive the machine's), a 10 s wait for another process's write lock, and
    foreign keys on. PostgreSQL: connections checked before use, 5 s to connect."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, hide_parameters=True)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA busy_timeout=10000")
            _write_ahead_log(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    url = with_driver(url)
    connect_args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    return sa.create_engine(
        url, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True
    )


def _alembic(connection: sa.Connection) -> Any:
    from alembic.config import Config  # imported only to migrate: about 0.1 s

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Migrate the database to `revision` (the latest by default); nothing when it is there."""
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(_alembic(connection), revision)


def migrate_at_start(engine: sa.Engine) -> bool:
    """`upgrade`, logging (never raising) why it failed: the service then answers and buffers
    its records until the database is there."""
    import logging

    try:
        upgrade(engine)
    except sa.exc.SQLAlchemyError as error:
        original = getattr(error, "orig", None) or error
        logging.getLogger("webservice.records").error(
            "cannot migrate the prediction record's database (%s: %s); predictions are answered "
            "and their records buffered until it can be written",
            type(original).__name__,
            str(original).strip().splitlines()[0][:300] if str(original).strip() else "",
        )
        return False
    return True


def downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as connection:
        command.downgrade(_alembic(connection), revision)


def current_revision(engine: sa.Engine) -> str | None:
    """The database's migration revision, None when it has none."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory(str(MIGRATIONS)).get_current_head())


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite gives back naive datetimes: every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def pack(record: AnswerRecord) -> dict[str, Any]:
    """An answers row: the tumors as packed arrays (see `webservice.records.schema`)."""
    if isinstance(record.rows, list):  # a single prediction: plain Python beats numpy's fixed cost
        return _row(
            record,
            bytes(0 if v != v else int(v) for row in record.rows for v in row),
            struct.pack(f"<{len(record.malignant)}d", *record.malignant),
            bytes(1 if flag else 0 for flag in record.flags),
        )
    scores = np.asarray(record.rows, dtype=np.float64)
    return _row(
        record,
        np.nan_to_num(scores, nan=0.0).astype(np.uint8).tobytes(),
        np.asarray(record.malignant, dtype="<f8").tobytes(),
        np.asarray(record.flags, dtype=np.uint8).tobytes(),
    )


def _row(record: AnswerRecord, scores: bytes, malignant: bytes, diagnoses: bytes) -> dict[str, Any]:
    return {
        "first_prediction_id": record.first_id,
        "answered_at": record.answered_at,
        "model_version": record.model_version,
        "track": record.track,
        "caller": record.caller,
        "request_id": record.request_id,
        "threshold": record.threshold,
        "tumors": len(diagnoses),
        "scores": scores,
        "malignant_probabilities": malignant,
        "diagnoses": diagnoses,
    }


class Outcome(NamedTuple):
    outcome: str
    source: str
    confirmed_on: dt.date | None
    recorded_at: dt.datetime
    recorded_by: str


class Target(NamedTuple):
    """A prediction an outcome names, and what its answer said (for the quality metrics)."""

    prediction_id: str
    answer_id: int  # -1: erased
    position: int
    model_version: str
    track: str
    predicted: str  # benign or malignant


class Change(NamedTuple):
    """A confirmed case counted (`outcome`) and, for a correction, one taken back (`replaced`)."""

    model_version: str
    track: str
    predicted: str
    outcome: str
    replaced: str | None


class Erased(LookupError):
    """The prediction existed and was erased."""


class RecordStore:
    """Reads and writes the record through one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def write(self, records: Sequence[AnswerRecord]) -> None:
        """Store answers, and add them to their days, in one transaction (a group commit)."""
        rows = [pack(record) for record in records]
        with self.engine.begin() as connection:
            _add_days(connection, records)
            if not any(record.case_references for record in records):
                connection.execute(answers.insert(), rows)
                return
            inserted = connection.execute(
                answers.insert().returning(answers.c.id, sort_by_parameter_order=True), rows
            ).scalars()
            references = [
                {"answer_id": answer_id, "position": position, "case_reference": reference}
                for answer_id, record in zip(inserted, records, strict=True)
                for position, reference in enumerate(record.case_references or ())
                if reference is not None
            ]
            connection.execute(case_references.insert(), references)

    def count_tumors(self) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(answers.c.tumors), 0))
                ).scalar_one()
            )

    # Reading a record

    def record(self, prediction_id: str) -> dict[str, Any] | None:
        """The prediction's record with its outcome and history (for audit); None when there is
        no such prediction; `Erased` when it was erased."""
        parsed = ids.parse(prediction_id)
        if parsed is None:
            return None
        first_id, position = parsed
        with self.engine.connect() as connection:
            row = _answer(connection, first_id, position)
            if row is None:
                return None
            if row.diagnoses[position] == ERASED:
                raise Erased(prediction_id)
            reference = connection.execute(
                sa.select(case_references.c.case_reference).where(
                    case_references.c.answer_id == row.id, case_references.c.position == position
                )
            ).scalar()
            outcome = connection.execute(
                sa.select(outcomes).where(outcomes.c.prediction_id == prediction_id)
            ).first()
            history = connection.execute(
                sa.select(outcome_history)
                .where(outcome_history.c.prediction_id == prediction_id)
                .order_by(outcome_history.c.id)
            ).all()
        return {
            "prediction_id": prediction_id,
            **_tumor(row, position),
            "case_reference": reference,
            "outcome": _outcome(outcome) if outcome else None,
            "history": [
                {
                    **_outcome(old),
                    "replaced_at": _iso(old.replaced_at),
                    "replaced_by": old.replaced_by,
                }
                for old in history
            ],
        }

    def exists(self, prediction_ids: Sequence[str]) -> set[str]:
        """Those of `prediction_ids` (valid ones) that are on record, erased or not."""
        wanted: dict[str, list[tuple[str, int]]] = {}
        for prediction_id in prediction_ids:
            first_id, position = ids.parse(prediction_id) or ("", 0)
            wanted.setdefault(first_id, []).append((prediction_id, position))
        found: set[str] = set()
        with self.engine.connect() as connection:
            for chunk in _chunks(list(wanted)):
                for first_id, tumors in connection.execute(
                    sa.select(answers.c.first_prediction_id, answers.c.tumors).where(
                        answers.c.first_prediction_id.in_(chunk)
                    )
                ):
                    found.update(pid for pid, position in wanted[first_id] if position < tumors)
        return found

    # Outcomes

    def apply_outcomes(
        self,
        reports: Sequence[Report],
        *,
        by: str,
        at: dt.datetime | None = None,
        changes: list[Change] | None = None,
    ) -> list[dict[str, Any]]:
        """Join outcomes to their predictions, in one transaction, one result per prediction
        (a case reference may name several): `applied` (new), `unchanged` (the same again),
        `corrected` (a different one sent with `corrects`; the earlier kept in the history),
        `conflict` (a different one without `corrects`; nothing changed), `unknown` (no such
        prediction), `erased`. `changes` receives each confirmed case applied or corrected."""
        when = at or now()
        results: list[dict[str, Any]] = []
        with self.engine.begin() as connection:
            targets = self._targets(connection, reports)
            stored = self._stored_outcomes(
                connection, [target.prediction_id for found in targets for target in found]
            )
            for row, (report, found) in enumerate(zip(reports, targets, strict=True), start=1):
                named = (
                    {"prediction_id": report.prediction_id}
                    if report.prediction_id
                    else {"case_reference": report.case_reference}
                )
                if not found:
                    results.append({"row": row, **named, "status": "unknown"})
                for target in found:
                    before = stored.get(target.prediction_id)
                    status = self._apply(connection, report, target, stored, by, when)
                    result = {
                        "row": row,
                        **named,
                        "prediction_id": target.prediction_id,
                        "status": status,
                    }
                    if status == "conflict":
                        result["stored_outcome"] = stored[target.prediction_id].outcome
                    elif status in ("applied", "corrected") and changes is not None:
                        replaced = before.outcome if before else None
                        changes.append(
                            Change(
                                target.model_version,
                                target.track,
                                target.predicted,
                                report.outcome,
                                replaced,
                            )
                        )
                    results.append(result)
        return results

    def _targets(self, connection: sa.Connection, reports: Sequence[Report]) -> list[list[Target]]:
        """Per report, the predictions it names (an erased one with answer id -1)."""
        columns = (answers.c.id, answers.c.model_version, answers.c.track, answers.c.diagnoses)
        by_first: dict[str, Any] = {}
        first_ids = {ids.split(r.prediction_id)[0] for r in reports if r.prediction_id}
        for chunk in _chunks(sorted(first_ids)):
            for row in connection.execute(
                sa.select(answers.c.first_prediction_id, *columns).where(
                    answers.c.first_prediction_id.in_(chunk)
                )
            ):
                by_first[row.first_prediction_id] = row
        by_case: dict[str, list[Target]] = {}
        references = sorted({r.case_reference for r in reports if r.case_reference})
        for chunk in _chunks(references):
            for case in connection.execute(
                sa.select(
                    case_references.c.case_reference,
                    case_references.c.position,
                    answers.c.first_prediction_id,
                    *columns,
                )
                .join(answers, answers.c.id == case_references.c.answer_id)
                .where(case_references.c.case_reference.in_(chunk))
                .order_by(answers.c.answered_at, case_references.c.position)
            ):
                by_case.setdefault(case.case_reference, []).append(_target(case, case.position))
        targets: list[list[Target]] = []
        for report in reports:
            if report.case_reference:
                targets.append(by_case.get(report.case_reference, []))
                continue
            assert report.prediction_id is not None
            first_id, position = ids.split(report.prediction_id)
            answer = by_first.get(first_id)
            if answer is None or position >= len(answer.diagnoses):
                targets.append([])
            else:
                targets.append([_target(answer, position)])
        return targets

    def _stored_outcomes(
        self, connection: sa.Connection, prediction_ids: list[str]
    ) -> dict[str, Outcome]:
        stored: dict[str, Outcome] = {}
        for chunk in _chunks(sorted(set(prediction_ids))):
            for row in connection.execute(
                sa.select(outcomes).where(outcomes.c.prediction_id.in_(chunk))
            ):
                stored[row.prediction_id] = Outcome(
                    row.outcome, row.source, row.confirmed_on, row.recorded_at, row.recorded_by
                )
        return stored

    @staticmethod
    def _apply(
        connection: sa.Connection,
        report: Report,
        target: Target,
        stored: dict[str, Outcome],
        by: str,
        when: dt.datetime,
    ) -> str:
        prediction_id, answer_id, position = target[:3]
        if answer_id < 0:
            return "erased"
        new = Outcome(report.outcome, report.source, report.confirmed_on, when, by)
        old = stored.get(prediction_id)
        values = {
            "outcome": new.outcome,
            "source": new.source,
            "confirmed_on": new.confirmed_on,
            "recorded_at": when,
            "recorded_by": by,
        }
        if old is None:
            connection.execute(
                outcomes.insert(),
                {
                    "prediction_id": prediction_id,
                    "answer_id": answer_id,
                    "position": position,
                    **values,
                },
            )
            stored[prediction_id] = new
            return "applied"
        if old[:3] == new[:3]:
            return "unchanged"
        if not report.corrects:
            return "conflict"
        connection.execute(
            outcome_history.insert(),
            {
                "prediction_id": prediction_id,
                **old._asdict(),
                "replaced_at": when,
                "replaced_by": by,
            },
        )
        connection.execute(
            outcomes.update().where(outcomes.c.prediction_id == prediction_id), values
        )
        stored[prediction_id] = new
        return "corrected"

    # Retention and erasure

    def erase(self, prediction_id: str) -> str:
        """Erase one prediction's scores, probability, diagnosis, case reference and outcomes
        (the right to erasure); its answer keeps when, who and which model, nothing medical.
        `erased`, `already erased` or `unknown`."""
        parsed = ids.parse(prediction_id)
        if parsed is None:
            return "unknown"
        first_id, position = parsed
        with self.engine.begin() as connection:
            row = _answer(connection, first_id, position)
            if row is None:
                return "unknown"
            if row.diagnoses[position] == ERASED:
                return "already erased"
            scores = bytearray(row.scores)
            scores[position * 9 : position * 9 + 9] = bytes([ERASED]) * 9
            malignant = np.frombuffer(row.malignant_probabilities, dtype="<f8").copy()
            malignant[position] = np.nan
            diagnoses = bytearray(row.diagnoses)
            diagnoses[position] = ERASED
            connection.execute(
                answers.update().where(answers.c.id == row.id),
                {
                    "scores": bytes(scores),
                    "malignant_probabilities": malignant.tobytes(),
                    "diagnoses": bytes(diagnoses),
                },
            )
            connection.execute(
                outcome_history.delete().where(outcome_history.c.prediction_id == prediction_id)
            )
            connection.execute(outcomes.delete().where(outcomes.c.prediction_id == prediction_id))
            connection.execute(
                case_references.delete().where(
                    case_references.c.answer_id == row.id, case_references.c.position == position
                )
            )
        return "erased"

    def purge(self, before: dt.datetime) -> tuple[int, int]:
        """Delete every answer given before `before`, with its outcomes and case references:
        (answers, tumors) deleted."""
        old = sa.select(answers.c.id).where(answers.c.answered_at < before)
        with self.engine.begin() as connection:
            count, tumors = connection.execute(
                sa.select(
                    sa.func.count(), sa.func.coalesce(sa.func.sum(answers.c.tumors), 0)
                ).where(answers.c.answered_at < before)
            ).one()
            old_ids = sa.select(outcomes.c.prediction_id).where(outcomes.c.answer_id.in_(old))
            connection.execute(
                outcome_history.delete().where(outcome_history.c.prediction_id.in_(old_ids))
            )
            connection.execute(outcomes.delete().where(outcomes.c.answer_id.in_(old)))
            connection.execute(case_references.delete().where(case_references.c.answer_id.in_(old)))
            connection.execute(answers.delete().where(answers.c.answered_at < before))
            connection.execute(answer_days.delete().where(answer_days.c.day < before.date()))
        return int(count), int(tumors)

    # Export

    def export(
        self, *, since: dt.datetime | None = None, confirmed_only: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Every tumor on record (erased ones left out), oldest first, with its outcome: one flat
        dict per tumor, for audit and for training on confirmed cases."""
        query = sa.select(answers).order_by(answers.c.answered_at, answers.c.id)
        if since is not None:
            query = query.where(answers.c.answered_at >= since)
        with self.engine.connect() as connection:
            for chunk in connection.execute(query.execution_options(yield_per=200)).partitions():
                answer_ids = [row.id for row in chunk]
                known: dict[tuple[int, int], Any] = {}
                for row in connection.execute(
                    sa.select(outcomes).where(outcomes.c.answer_id.in_(answer_ids))
                ):
                    known[(row.answer_id, row.position)] = row
                references: dict[tuple[int, int], str] = {}
                for answer_id, position, reference in connection.execute(
                    sa.select(case_references).where(case_references.c.answer_id.in_(answer_ids))
                ):
                    references[(answer_id, position)] = reference
                for row in chunk:
                    block = row.first_prediction_id[:-6]
                    positions = (
                        [p for a, p in known if a == row.id]
                        if confirmed_only
                        else range(row.tumors)
                    )
                    for position in sorted(positions):
                        if row.diagnoses[position] == ERASED:
                            continue
                        tumor = _tumor(row, position)
                        outcome = known.get((row.id, position))
                        yield {
                            "prediction_id": ids.ids(block, position + 1)[position],
                            "answered_at": tumor["answered_at"],
                            "model_version": row.model_version,
                            "track": row.track,
                            "caller": row.caller,
                            "case_reference": references.get((row.id, position)),
                            **tumor["tumor"],
                            "malignant_probability": tumor["probabilities"]["malignant"],
                            "prediction": tumor["prediction"],
                            "threshold": row.threshold,
                            "outcome": outcome.outcome if outcome else None,
                            "outcome_source": outcome.source if outcome else None,
                            "confirmed_on": (
                                outcome.confirmed_on.isoformat()
                                if outcome and outcome.confirmed_on
                                else None
                            ),
                        }


DAY_SUMS = (
    "answered_benign",
    "answered_malignant",
    "expected_tp",
    "expected_fp",
    "expected_fn",
    "expected_tn",
)


def _add_days(connection: sa.Connection, records: Sequence[AnswerRecord]) -> None:
    """Add answers to their (day, model version, track) rows: counts by diagnosis, and expected
    cases (each probability the chance of malignant)."""
    sums: dict[tuple[dt.date, str, str], np.ndarray] = {}
    for record in records:
        if isinstance(record.flags, list):  # a few rows: plain Python beats numpy's fixed cost
            n_called = sum(map(bool, record.flags))
            on_called = sum(p for p, f in zip(record.malignant, record.flags, strict=True) if f)
            on_others = sum(record.malignant) - on_called
        else:
            called = np.asarray(record.flags, dtype=bool)
            p = np.asarray(record.malignant, dtype=np.float64)
            on_called, on_others = float(p[called].sum()), float(p[~called].sum())
            n_called = int(called.sum())
        n_others = len(record.flags) - n_called
        key = (_utc(record.answered_at).date(), record.model_version, record.track)
        total = sums.setdefault(key, np.zeros(len(DAY_SUMS)))
        total += (
            n_others,
            n_called,
            on_called,
            n_called - on_called,
            on_others,
            n_others - on_others,
        )
    from sqlalchemy.dialects import postgresql, sqlite

    # Each dialect's own INSERT ... ON CONFLICT (one name for two classes: Any to mypy).
    upsert: Any = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = upsert(answer_days)
    statement = statement.on_conflict_do_update(
        index_elements=["day", "model_version", "track"],
        set_={name: answer_days.c[name] + statement.excluded[name] for name in DAY_SUMS},
    )
    connection.execute(
        statement,
        [
            {
                "day": day,
                "model_version": version,
                "track": track,
                **dict(zip(DAY_SUMS, total.tolist(), strict=True)),
                "answered_benign": int(total[0]),
                "answered_malignant": int(total[1]),
            }
            for (day, version, track), total in sums.items()
        ],
    )


def _answer(connection: sa.Connection, first_id: str, position: int) -> Any:
    """The answers row of a prediction (its answer's first id and its position), or None."""
    row = connection.execute(
        sa.select(answers).where(answers.c.first_prediction_id == first_id)
    ).first()
    return None if row is None or position >= row.tumors else row


def _target(row: Any, position: int) -> Target:
    """The prediction at `position` of an answers row (id, model_version, track, diagnoses)."""
    block = row.first_prediction_id[:-6]
    code = row.diagnoses[position]
    return Target(
        ids.ids(block, position + 1)[position],
        -1 if code == ERASED else row.id,
        position,
        row.model_version,
        row.track,
        "malignant" if code == 1 else "benign",
    )


def _tumor(row: Any, position: int) -> dict[str, Any]:
    """One tumor of an answers row, as the record shows it."""
    codes = row.scores[position * 9 : position * 9 + 9]
    malignant = float(np.frombuffer(row.malignant_probabilities, dtype="<f8")[position])
    return {
        "answered_at": _iso(row.answered_at),
        "model_version": row.model_version,
        "track": row.track,
        "caller": row.caller,
        "request_id": row.request_id,
        "tumor": {name: (code or None) for name, code in zip(FEATURES, codes, strict=True)},
        "prediction": "malignant" if row.diagnoses[position] else "benign",
        "probabilities": {"benign": round(1.0 - malignant, 6), "malignant": malignant},
        "threshold": row.threshold,
    }


def _outcome(row: Any) -> dict[str, Any]:
    return {
        "outcome": row.outcome,
        "source": row.source,
        "confirmed_on": row.confirmed_on.isoformat() if row.confirmed_on else None,
        "recorded_at": _iso(row.recorded_at),
        "recorded_by": row.recorded_by,
    }


def _iso(value: dt.datetime) -> str:
    return _utc(value).isoformat().replace("+00:00", "Z")


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
