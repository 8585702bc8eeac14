"""Products, negotiations, their turns and decisions, counters.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MONEY = sa.Numeric(14, 2)


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("list_price", MONEY, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_table(
        "negotiations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("products.id"), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("list_price", MONEY, nullable=False),
        sa.Column("buyer_limit", MONEY, nullable=False),
        sa.Column("max_rounds", sa.Integer(), nullable=False),
        sa.Column("seller_kind", sa.String(20), nullable=False),
        sa.Column("seller_strategy", sa.String(50), nullable=True),
        sa.Column("seller_seed", sa.BigInteger(), nullable=True),
        sa.Column("seller_token_hash", sa.String(64), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("deal_price", MONEY, nullable=True),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    for column in ("product_id", "seller_strategy", "status", "outcome", "model_version"):
        op.create_index(f"ix_negotiations_{column}", "negotiations", [column])
    op.create_table(
        "turns",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("negotiation_id", sa.Integer(), sa.ForeignKey("negotiations.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("party", sa.String(10), nullable=False),
        sa.Column("move", sa.String(20), nullable=False),
        sa.Column("price", MONEY, nullable=True),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.UniqueConstraint("negotiation_id", "seq"),
    )
    op.create_index("ix_turns_negotiation_id", "turns", ["negotiation_id"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("negotiation_id", sa.Integer(), sa.ForeignKey("negotiations.id"), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("observation", sa.JSON(), nullable=False),
        sa.Column("action_mask", sa.JSON(), nullable=False),
        sa.Column("move", sa.Integer(), nullable=False),
        sa.Column("propensity", sa.Float(), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.UniqueConstraint("negotiation_id", "round"),
    )
    op.create_index("ix_decisions_negotiation_id", "decisions", ["negotiation_id"])
    op.create_table(
        "counters",
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    for table in ("counters", "decisions", "turns", "negotiations", "products"):
        op.drop_table(table)
