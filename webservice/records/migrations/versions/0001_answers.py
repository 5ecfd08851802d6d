"""Answers: every answered request's tumors, and the clients' case references.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "answers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("first_prediction_id", sa.String(36), nullable=False, unique=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("track", sa.String(32), nullable=False),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("tumors", sa.Integer, nullable=False),
        sa.Column("scores", sa.LargeBinary, nullable=False),
        sa.Column("malignant_probabilities", sa.LargeBinary, nullable=False),
        sa.Column("diagnoses", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "case_references",
        sa.Column(
            "answer_id",
            sa.Integer,
            sa.ForeignKey("answers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("case_reference", sa.String(64), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("case_references")
    op.drop_table("answers")
