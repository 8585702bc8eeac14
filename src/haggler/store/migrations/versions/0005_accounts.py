"""Accounts and roles: accounts, their API tokens and browser sessions; negotiations belong to
a purchaser (and may name a seller account); products can be archived; a seller's move sent with
an idempotency key keeps its answer.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(50), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("purchaser_id", sa.Integer(), sa.ForeignKey("accounts.id"), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_api_tokens_account_id", "api_tokens", ["account_id"])
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("session_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_web_sessions_account_id", "web_sessions", ["account_id"])
    op.create_table(
        "move_replies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("negotiation_id", sa.Integer(), sa.ForeignKey("negotiations.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.UniqueConstraint("negotiation_id", "idempotency_key"),
    )
    with op.batch_alter_table("negotiations") as batch:
        batch.add_column(sa.Column("purchaser_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("seller_account_id", sa.Integer(), nullable=True))
        batch.create_index("ix_negotiations_purchaser_id", ["purchaser_id"])
        batch.create_index("ix_negotiations_seller_account_id", ["seller_account_id"])
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.drop_column("archived_at")
    with op.batch_alter_table("negotiations") as batch:
        batch.drop_index("ix_negotiations_seller_account_id")
        batch.drop_index("ix_negotiations_purchaser_id")
        batch.drop_column("seller_account_id")
        batch.drop_column("purchaser_id")
    op.drop_table("move_replies")
    op.drop_index("ix_web_sessions_account_id", "web_sessions")
    op.drop_table("web_sessions")
    op.drop_index("ix_api_tokens_account_id", "api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("accounts")
