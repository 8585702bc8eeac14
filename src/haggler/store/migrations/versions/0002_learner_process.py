"""The learner as its own process: the queue of negotiations to learn from, the published
model snapshots (the serving weights and the log of model changes), and the training history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("negotiations") as batch:
        batch.add_column(sa.Column("learned_at", sa.DateTime(timezone=True), nullable=True))
    # What a store from before the learner process finished was learned from already.
    op.execute("UPDATE negotiations SET learned_at = finished_at WHERE status = 'finished'")
    # The learner's queue: finished, not yet learned from. A partial index keeps it small.
    op.create_index(
        "ix_negotiations_to_learn",
        "negotiations",
        ["finished_at"],
        sqlite_where=sa.text("status = 'finished' AND learned_at IS NULL"),
        postgresql_where=sa.text("status = 'finished' AND learned_at IS NULL"),
    )
    op.create_table(
        "model_snapshots",
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("checkpoint", sa.String(500), nullable=True),
        sa.Column("negotiations", sa.Integer(), nullable=False),
        sa.Column("trained_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("weights", sa.LargeBinary(), nullable=True),
    )
    op.create_table(
        "training_points",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("negotiations", sa.Integer(), nullable=False),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("replay_buffer_size", sa.Integer(), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("checkpoint", sa.String(500), nullable=True),
        sa.Column("checkpoint_error", sa.String(1000), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("training_points")
    op.drop_table("model_snapshots")
    op.drop_index("ix_negotiations_to_learn", "negotiations")
    with op.batch_alter_table("negotiations") as batch:
        batch.drop_column("learned_at")
