"""Two indexes for reads that grew with history: the model versions that still carry weights
(the learner's tidy-up after each update reads only those), and negotiations by seller and
outcome (a list filtered by both counts its matches in the index).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    has_weights = sa.text("weights IS NOT NULL")
    op.create_index(
        "ix_model_snapshots_with_weights",
        "model_snapshots",
        ["version"],
        sqlite_where=has_weights,
        postgresql_where=has_weights,
    )
    op.create_index(
        "ix_negotiations_seller_outcome", "negotiations", ["seller_strategy", "outcome"]
    )


def downgrade() -> None:
    op.drop_index("ix_negotiations_seller_outcome", "negotiations")
    op.drop_index("ix_model_snapshots_with_weights", "model_snapshots")
