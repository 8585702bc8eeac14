"""The observation layout each negotiation's decisions were logged with: after a later upgrade
that changes what an observation means (same size or not), the learner leaves the older
negotiations' decisions out, where before only a change of size was caught.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Negotiations stored before keep NULL (not recorded): the learner checks their size only.
    with op.batch_alter_table("negotiations") as batch:
        batch.add_column(sa.Column("observation_layout", sa.String(16), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): batch mode would rebuild the table, which the foreign
    # keys of a store with negotiations refuse.
    op.drop_column("negotiations", "observation_layout")
