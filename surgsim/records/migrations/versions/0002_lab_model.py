"""The simulation-lab model: people with accounts, cohorts, scenario versions,
attempt release and debrief, attempt events.

- ``trainees`` becomes ``people`` (opaque id, role, optional display name kept only
  here, optional login name and argon2 password hash); a read-only view
  ``trainees`` keeps older queries working;
- ``cohorts`` and ``cohort_members`` (a person is a trainee or an educator of a cohort);
- ``scenario_versions``: the exact content of every scenario version attempts ran,
  by content hash;
- ``attempts`` gains ``released``, ``released_at``, ``debrief_notes``, ``debrief_by``,
  ``debrief_at`` and ``case_id``; ``score`` may be NULL (an interrupted attempt
  has no score);
- ``attempt_events``: the discrete events of each attempt, one row each.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.rename_table("trainees", "people")
    with op.batch_alter_table("people") as b:
        b.add_column(sa.Column("display_name", sa.String(200), nullable=True))
        b.add_column(sa.Column("username", sa.String(64), nullable=True))
        b.add_column(sa.Column("password_hash", sa.String(255), nullable=True))
        b.add_column(
            sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.create_index("ix_people_username", "people", ["username"], unique=True)

    op.create_table(
        "cohorts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "cohort_members",
        sa.Column("cohort_id", sa.String(64), sa.ForeignKey("cohorts.id"), primary_key=True),
        sa.Column("person_id", sa.String(64), sa.ForeignKey("people.id"), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
    )
    op.create_index("ix_cohort_members_person_id", "cohort_members", ["person_id"])
    op.create_table(
        "scenario_versions",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("scenario_id", sa.String(64), nullable=False, index=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )

    with op.batch_alter_table("attempts") as b:
        b.alter_column("score", existing_type=sa.Float(), nullable=True)
        b.add_column(
            sa.Column("released", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        b.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("debrief_notes", sa.Text(), nullable=True))
        b.add_column(sa.Column("debrief_by", sa.String(64), nullable=True))
        b.add_column(sa.Column("debrief_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("case_id", sa.String(64), nullable=True))
    op.create_index("ix_attempts_status", "attempts", ["status"])

    op.create_table(
        "attempt_events",
        sa.Column("attempt_id", sa.String(36), sa.ForeignKey("attempts.id"), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_attempt_events_kind", "attempt_events", ["kind"])
    op.execute("CREATE VIEW trainees AS SELECT id, created_at, role FROM people")


def downgrade() -> None:
    op.execute("DROP VIEW trainees")
    op.drop_index("ix_attempt_events_kind", "attempt_events")
    op.drop_table("attempt_events")
    op.drop_index("ix_attempts_status", "attempts")
    op.execute(
        "DELETE FROM metrics WHERE attempt_id IN (SELECT id FROM attempts WHERE score IS NULL)"
    )
    op.execute("DELETE FROM attempts WHERE score IS NULL")
    with op.batch_alter_table("attempts") as b:
        for c in ("case_id", "debrief_at", "debrief_by", "debrief_notes", "released_at", "released"):
            b.drop_column(c)
        b.alter_column("score", existing_type=sa.Float(), nullable=False)
    op.drop_table("scenario_versions")
    op.drop_index("ix_cohort_members_person_id", "cohort_members")
    op.drop_table("cohort_members")
    op.drop_table("cohorts")
    op.drop_index("ix_people_username", "people")
    with op.batch_alter_table("people") as b:
        for c in ("active", "password_hash", "username", "display_name"):
            b.drop_column(c)
    op.rename_table("people", "trainees")
