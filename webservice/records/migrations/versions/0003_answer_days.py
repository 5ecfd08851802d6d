"""Answer days: what each model version and track answered per day, kept as answers are written,
so that quality needs no scan of every answer (its expected cases: CBPE sums).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    days = op.create_table(
        "answer_days",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("track", sa.String(32), primary_key=True),
        sa.Column("answered_benign", sa.Integer, nullable=False),
        sa.Column("answered_malignant", sa.Integer, nullable=False),
        sa.Column("expected_tp", sa.Float, nullable=False),
        sa.Column("expected_fp", sa.Float, nullable=False),
        sa.Column("expected_fn", sa.Float, nullable=False),
        sa.Column("expected_tn", sa.Float, nullable=False),
    )
    # Answers already on record: their days, from their packed diagnoses and probabilities.
    import numpy as np

    connection = op.get_bind()
    totals: dict[tuple[object, ...], list[float]] = {}
    answers = sa.table(
        "answers",
        sa.column("answered_at", sa.DateTime(timezone=True)),
        sa.column("model_version", sa.String),
        sa.column("track", sa.String),
        sa.column("diagnoses", sa.LargeBinary),
        sa.column("malignant_probabilities", sa.LargeBinary),
    )
    for answered_at, version, track, diagnoses, probabilities in connection.execute(
        sa.select(answers)
    ):
        called = np.frombuffer(diagnoses, dtype=np.uint8)
        p = np.frombuffer(probabilities, dtype="<f8")
        kept = called != 255
        called, p = called[kept] == 1, p[kept]
        key = (answered_at.date(), version, track)
        sums = totals.setdefault(key, [0, 0, 0.0, 0.0, 0.0, 0.0])
        sums[0] += int((~called).sum())
        sums[1] += int(called.sum())
        sums[2] += float(p[called].sum())
        sums[3] += float((1 - p[called]).sum())
        sums[4] += float(p[~called].sum())
        sums[5] += float((1 - p[~called]).sum())
    if totals:
        op.bulk_insert(
            days,
            [
                {
                    "day": day,
                    "model_version": version,
                    "track": track,
                    "answered_benign": s[0],
                    "answered_malignant": s[1],
                    "expected_tp": s[2],
                    "expected_fp": s[3],
                    "expected_fn": s[4],
                    "expected_tn": s[5],
                }
                for (day, version, track), s in totals.items()
            ],
        )


def downgrade() -> None:
    op.drop_table("answer_days")
