"""Reads that cost the same at any history size: totals kept as negotiations finish (by
outcome, and by model version), an index for the newest finished negotiations, and the
learner's lag in its training history.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outcome_totals",
        sa.Column("shard", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("outcome", sa.String(20), primary_key=True),
        sa.Column("negotiations", sa.BigInteger(), nullable=False),
        sa.Column("rewarded", sa.BigInteger(), nullable=False),
        sa.Column("reward_sum", sa.Float(), nullable=False),
        sa.Column("reward_squares", sa.Float(), nullable=False),
        sa.Column("deals_priced", sa.BigInteger(), nullable=False),
        sa.Column("savings_pct_sum", sa.Float(), nullable=False),
        sa.Column("savings_pct_squares", sa.Float(), nullable=False),
        sa.Column("savings_total", sa.Numeric(20, 2), nullable=False),
        sa.Column("rounds_sum", sa.BigInteger(), nullable=False),
        sa.Column("rounds_squares", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "version_outcomes",
        sa.Column("model_version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("outcome", sa.String(20), primary_key=True),
        sa.Column("negotiations", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_negotiations_finished", "negotiations", ["finished_at", "id"])
    # An index of every status misled SQLite's planner into walking every finished negotiation
    # (and sorting them) for the learner's queue; only the open ones are indexed now.
    op.drop_index("ix_negotiations_status", "negotiations")
    open_only = sa.text("status = 'open'")
    op.create_index(
        "ix_negotiations_open",
        "negotiations",
        ["model_version"],
        sqlite_where=open_only,
        postgresql_where=open_only,
    )
    op.create_index("ix_model_snapshots_source_status", "model_snapshots", ["source", "status"])
    op.create_index(
        "ix_model_snapshots_source_promoted", "model_snapshots", ["source", "promoted_at"]
    )
    later = sa.text("promoted_at > created_at")
    op.create_index(
        "ix_model_snapshots_promoted_later",
        "model_snapshots",
        ["promoted_at"],
        sqlite_where=later,
        postgresql_where=later,
    )
    with op.batch_alter_table("training_points") as batch:
        batch.add_column(sa.Column("pending", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("merged", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("samples_per_negotiation", sa.Float(), nullable=True))
        batch.add_column(sa.Column("delay_s", sa.Float(), nullable=True))
    # The totals of what the store holds already: one pass over its finished negotiations.
    from haggler.store import snapshots, totals

    with Session(bind=op.get_bind()) as session:
        totals.rebuild(session=session)
        snapshots.recount_versions(session=session)
        session.flush()


def downgrade() -> None:
    with op.batch_alter_table("training_points") as batch:
        batch.drop_column("delay_s")
        batch.drop_column("samples_per_negotiation")
        batch.drop_column("merged")
        batch.drop_column("pending")
    op.drop_index("ix_model_snapshots_promoted_later", "model_snapshots")
    op.drop_index("ix_model_snapshots_source_promoted", "model_snapshots")
    op.drop_index("ix_model_snapshots_source_status", "model_snapshots")
    op.drop_index("ix_negotiations_open", "negotiations")
    op.create_index("ix_negotiations_status", "negotiations", ["status"])
    op.drop_index("ix_negotiations_finished", "negotiations")
    op.drop_table("version_outcomes")
    op.drop_table("outcome_totals")
