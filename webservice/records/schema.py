"""The record's tables (SQLAlchemy Core), as the latest migration leaves them.

An answer (one request's tumors) is one row of `answers`: who asked, when, which model and track
answered, and the tumors' scores, malignant probabilities and diagnoses as packed arrays (`codec`).
One row per answer, not per tumor: a 10,000-tumor batch is one insert, not 10,000 (the
difference between recording costing a tenth of a batch and costing more than the batch). A
tumor is (answer, position), which its prediction id encodes (`webservice.records.ids`).
Outcomes and case references are rows of their own: few, indexed, joined by prediction id.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

answers = sa.Table(
    "answers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("first_prediction_id", sa.String(36), nullable=False, unique=True),
    sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("track", sa.String(32), nullable=False),
    sa.Column("caller", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("tumors", sa.Integer, nullable=False),
    # uint8 per score, 9 per tumor: 1..10, 0 = not measured, 255 = erased
    sa.Column("scores", sa.LargeBinary, nullable=False),
    # float64 (little-endian) per tumor, as answered (6 decimals); NaN = erased
    sa.Column("malignant_probabilities", sa.LargeBinary, nullable=False),
    # uint8 per tumor: 1 = malignant, 0 = benign, 255 = erased
    sa.Column("diagnoses", sa.LargeBinary, nullable=False),
)

case_references = sa.Table(
    "case_references",
    metadata,
    sa.Column(
        "answer_id", sa.Integer, sa.ForeignKey("answers.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("case_reference", sa.String(64), nullable=False, index=True),
)

outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("prediction_id", sa.String(36), primary_key=True),
    sa.Column(
        "answer_id",
        sa.Integer,
        sa.ForeignKey("answers.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("confirmed_on", sa.Date, nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("recorded_by", sa.String(64), nullable=False),
)

# Per day (UTC), model version and track: the answers given and their expected cases (CBPE sums
# of probabilities), added to as answers are written, so that quality reads these rows rather than
# every answer.
answer_days = sa.Table(
    "answer_days",
    metadata,
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

outcome_history = sa.Table(
    "outcome_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "prediction_id",
        sa.String(36),
        sa.ForeignKey("outcomes.prediction_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("confirmed_on", sa.Date, nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_by", sa.String(64), nullable=False),
    sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("replaced_by", sa.String(64), nullable=False),
)
