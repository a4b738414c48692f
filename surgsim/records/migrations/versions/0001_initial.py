"""The first schema: trainees, attempts (with their log) and metrics.

Databases created before migrations existed (by ``create_all``) have exactly this
schema; they are stamped with this revision and upgraded from here.

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
        "trainees",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("trainee_id", sa.String(64), sa.ForeignKey("trainees.id"), nullable=False),
        sa.Column("scenario_id", sa.String(64), nullable=False),
        sa.Column("scenario_version", sa.String(32), nullable=False),
        sa.Column("scenario_hash", sa.String(64), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("station", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("critical_errors", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("log", sa.LargeBinary(), nullable=False),
        sa.Column("log_hash", sa.String(64), nullable=False),
        sa.Column("input_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_attempts_trainee_id", "attempts", ["trainee_id"])
    op.create_index("ix_attempts_scenario_id", "attempts", ["scenario_id"])
    op.create_index("ix_attempts_started_at", "attempts", ["started_at"])
    op.create_table(
        "metrics",
        sa.Column("attempt_id", sa.String(36), sa.ForeignKey("attempts.id"), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(16), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("metrics")
    op.drop_index("ix_attempts_started_at", "attempts")
    op.drop_index("ix_attempts_scenario_id", "attempts")
    op.drop_index("ix_attempts_trainee_id", "attempts")
    op.drop_table("attempts")
    op.drop_table("trainees")
