"""Drop the single-column indexes on turns.negotiation_id and decisions.negotiation_id: the
unique (negotiation_id, seq) and (negotiation_id, round) indexes start with that column and serve
every lookup by negotiation, and each extra index was one more page written by every move.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_turns_negotiation_id", "turns")
    op.drop_index("ix_decisions_negotiation_id", "decisions")


def downgrade() -> None:
    op.create_index("ix_decisions_negotiation_id", "decisions", ["negotiation_id"])
    op.create_index("ix_turns_negotiation_id", "turns", ["negotiation_id"])
