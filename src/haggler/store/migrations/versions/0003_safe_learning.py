"""Safe online learning: candidates and their gate verdicts, A/B tests and their arms,
rollbacks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("negotiations") as batch:
        batch.add_column(sa.Column("ab_test_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("arm", sa.String(12), nullable=True))
        batch.create_index("ix_negotiations_ab_test_id", ["ab_test_id"])
    with op.batch_alter_table("model_snapshots") as batch:
        # Every version published before this migration served at once: 'promoted'.
        batch.add_column(
            sa.Column("status", sa.String(20), nullable=False, server_default="promoted")
        )
        batch.add_column(sa.Column("reason", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("evaluation", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("copy_of", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE model_snapshots SET promoted_at = created_at")
    op.create_table(
        "ab_tests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("champion_version", sa.Integer(), nullable=False),
        sa.Column("challenger_version", sa.Integer(), nullable=False),
        sa.Column("split", sa.Float(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(20), nullable=True),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("verdict", sa.JSON(), nullable=True),
    )
    # One test runs at a time, even when an operator and the learner start one at once.
    op.create_index(
        "ix_ab_tests_one_running",
        "ab_tests",
        ["status"],
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("ix_ab_tests_one_running", "ab_tests")
    op.drop_table("ab_tests")
    with op.batch_alter_table("model_snapshots") as batch:
        for column in ("promoted_at", "copy_of", "evaluation", "reason", "status"):
            batch.drop_column(column)
    with op.batch_alter_table("negotiations") as batch:
        batch.drop_index("ix_negotiations_ab_test_id")
        batch.drop_column("arm")
        batch.drop_column("ab_test_id")
