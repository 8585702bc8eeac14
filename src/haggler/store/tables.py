"""The database tables. Money is NUMERIC(14, 2): exact, as the spec asks at the boundaries."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Money = Numeric(14, 2)


class Base(DeclarativeBase):
    pass


class ProductRow(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    category: Mapped[str] = mapped_column(String(100))
    list_price: Mapped[Decimal] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When an operator archived it: no new negotiations, kept for the ones it has."""


class AccountRow(Base):
    """A person or program: a purchaser, a seller or an operator."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    """'purchaser', 'seller' or 'operator'."""
    password_hash: Mapped[str | None] = mapped_column(String(200))
    """argon2id; None: the account signs in with tokens only."""
    purchaser_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    """A seller's purchaser: whose limit a negotiation opened through `/api/sell` plays with."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiTokenRow(Base):
    """A bearer token of an account, stored as its SHA-256 (tokens are random, 256 bits)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebSessionRow(Base):
    """A browser login: the cookie holds the session id, the store its SHA-256."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


LEARNER_QUEUE = text("status = 'finished' AND learned_at IS NULL")
OPEN = text("status = 'open'")
PROMOTED_LATER = text("promoted_at > created_at")
HAS_WEIGHTS = text("weights IS NOT NULL")


class NegotiationRow(Base):
    __tablename__ = "negotiations"
    __table_args__ = (
        # The learner's queue (finished, not learned from yet): a partial index keeps it small.
        Index(
            "ix_negotiations_to_learn",
            "finished_at",
            sqlite_where=LEARNER_QUEUE,
            postgresql_where=LEARNER_QUEUE,
        ),
        # The newest finished first (the dashboard's series): a read of as many index entries
        # as it returns, where sorting every finished negotiation grew with history.
        Index("ix_negotiations_finished", "finished_at", "id"),
        # The negotiations in progress, a few whatever the history. An index of every status
        # misled SQLite's planner: it walked all finished negotiations through it, and sorted
        # them, for the learner's queue (2 negotiations/s learned at 1M stored).
        Index(
            "ix_negotiations_open",
            "model_version",
            sqlite_where=OPEN,
            postgresql_where=OPEN,
        ),
        # An operator's list filtered by seller and outcome counts its matches (up to 1,000) in
        # this index; through the seller's index alone it read each match's row: 0.8 ms at 10k
        # stored, 13 ms at 300k, where the rows no longer sit in the cache. (The seller's own
        # index stays: it keeps a list filtered by seller alone in id order, with no sort.)
        Index("ix_negotiations_seller_outcome", "seller_strategy", "outcome"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    list_price: Mapped[Decimal] = mapped_column(Money)
    buyer_limit: Mapped[Decimal] = mapped_column(Money)
    max_rounds: Mapped[int] = mapped_column(Integer)
    seller_kind: Mapped[str] = mapped_column(String(20))
    """'simulated' (a persona played by the server) or 'external' (the caller)."""
    seller_strategy: Mapped[str | None] = mapped_column(String(50), index=True)
    seller_seed: Mapped[int | None] = mapped_column(BigInteger)
    seller_token_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    """'open' until the negotiation ends, then 'finished' (indexed only while open)."""
    outcome: Mapped[str | None] = mapped_column(String(20), index=True)
    deal_price: Mapped[Decimal | None] = mapped_column(Money)
    rounds: Mapped[int] = mapped_column(Integer, default=0)
    reward: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    learned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the learner took it in (its queue is the finished ones without this)."""
    ab_test_id: Mapped[int | None] = mapped_column(Integer, index=True)
    """The A/B test running when it started (None: no test ran)."""
    arm: Mapped[str | None] = mapped_column(String(12))
    """'champion' or 'challenger' within `ab_test_id`, chosen from the negotiation's id."""
    purchaser_id: Mapped[int | None] = mapped_column(Integer, index=True)
    """The purchaser account it belongs to (None: opened before accounts existed)."""
    seller_account_id: Mapped[int | None] = mapped_column(Integer, index=True)
    """The seller account party to it, if any (else its seller token, or a simulated seller)."""
    observation_layout: Mapped[str | None] = mapped_column(String(16))
    """`OBSERVATION_LAYOUT` of the version that logged its decisions (None: logged before it was
    recorded, up to 2026-12-05)."""


class MoveReplyRow(Base):
    """The answer to a seller's move sent with an `Idempotency-Key`: a retry gets it again."""

    __tablename__ = "move_replies"
    __table_args__ = (UniqueConstraint("negotiation_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    negotiation_id: Mapped[int] = mapped_column(ForeignKey("negotiations.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the move's body: the same key with another move is refused."""
    answer: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TurnRow(Base):
    """One move of the transcript; `seq` orders them (0 is the seller's opening ask)."""

    __tablename__ = "turns"
    # Also the index of lookups by negotiation: one index less for every move to write.
    __table_args__ = (UniqueConstraint("negotiation_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    negotiation_id: Mapped[int] = mapped_column(ForeignKey("negotiations.id"))
    seq: Mapped[int] = mapped_column(Integer)
    party: Mapped[str] = mapped_column(String(10))
    move: Mapped[str] = mapped_column(String(20))
    price: Mapped[Decimal | None] = mapped_column(Money)
    round: Mapped[int] = mapped_column(Integer)


class DecisionRow(Base):
    """One buyer decision as served, with its propensity: the experience log for learning and
    for off-policy evaluation. `reward` is known once the seller has answered."""

    __tablename__ = "decisions"
    # Also the index of lookups by negotiation (see TurnRow).
    __table_args__ = (UniqueConstraint("negotiation_id", "round"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    negotiation_id: Mapped[int] = mapped_column(ForeignKey("negotiations.id"))
    round: Mapped[int] = mapped_column(Integer)
    observation: Mapped[list[float]] = mapped_column(JSON)
    action_mask: Mapped[list[bool]] = mapped_column(JSON)
    move: Mapped[int] = mapped_column(Integer)
    propensity: Mapped[float] = mapped_column(Float)
    model_version: Mapped[int] = mapped_column(Integer)
    reward: Mapped[float | None] = mapped_column(Float)


class CounterRow(Base):
    """Named counters that survive restarts (for example negotiations trained on)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class ModelSnapshotRow(Base):
    """A model version as published for serving: the newest one is what every serving process
    acts with. `weights` (the policy network as .npz) is kept for the newest versions only; the
    rows themselves are the log of model changes."""

    __tablename__ = "model_snapshots"
    __table_args__ = (
        # The counts by source and status (the dashboard, /metrics) read these, not the rows.
        Index("ix_model_snapshots_source_status", "source", "status"),
        Index("ix_model_snapshots_source_promoted", "source", "promoted_at"),
        # Candidates that served later than they were published: the dashboard's promotions.
        Index(
            "ix_model_snapshots_promoted_later",
            "promoted_at",
            sqlite_where=PROMOTED_LATER,
            postgresql_where=PROMOTED_LATER,
        ),
        # The few versions that still carry weights: the learner's tidy-up after each update
        # reads these, where it walked every older version (8.7 -> 0.8 ms at 100k versions on
        # SQLite, inside its write lock, so serving waited too).
        Index(
            "ix_model_snapshots_with_weights",
            "version",
            sqlite_where=HAS_WEIGHTS,
            postgresql_where=HAS_WEIGHTS,
        ),
    )

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    source: Mapped[str] = mapped_column(String(20))
    """'starter' (the model file at first start), 'training', 'restore' or 'rollback'."""
    checkpoint: Mapped[str | None] = mapped_column(String(500))
    negotiations: Mapped[int] = mapped_column(Integer)
    """Negotiations the learner had trained on when it published this version."""
    trained_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """End of the oldest negotiation first learned from in this version."""
    weights: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), server_default="promoted")
    """'promoted' (it served), 'candidate' (waiting: in an A/B test), or 'rejected'."""
    reason: Mapped[str | None] = mapped_column(String(1000))
    """Why it was promoted, rejected or published (a gate verdict, an A/B test, a rollback)."""
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The gate's figures for a candidate."""
    copy_of: Mapped[int | None] = mapped_column(Integer)
    """A rollback serves the weights of this earlier version again."""
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


RUNNING = text("status = 'running'")


class ABTestRow(Base):
    """Champion against challenger on a share of new negotiations, until a verdict."""

    __tablename__ = "ab_tests"
    __table_args__ = (
        Index(
            "ix_ab_tests_one_running",
            "status",
            unique=True,
            sqlite_where=RUNNING,
            postgresql_where=RUNNING,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    champion_version: Mapped[int] = mapped_column(Integer)
    challenger_version: Mapped[int] = mapped_column(Integer)
    split: Mapped[float] = mapped_column(Float)
    """Share of new negotiations played by the challenger."""
    status: Mapped[str] = mapped_column(String(20))
    """'running', then 'promoted' or 'rejected' (the challenger's fate) or 'stopped'."""
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(20))
    """'rule' (the stopping rule) or 'operator' (a manual override)."""
    reason: Mapped[str | None] = mapped_column(String(1000))
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The last look's per-arm figures."""


class TrainingPointRow(Base):
    """One learner update: the training history the dashboard and `/api/training` show."""

    __tablename__ = "training_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    negotiations: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    replay_buffer_size: Mapped[int] = mapped_column(Integer)
    epsilon: Mapped[float] = mapped_column(Float)
    model_version: Mapped[int] = mapped_column(Integer)
    checkpoint: Mapped[str | None] = mapped_column(String(500))
    checkpoint_error: Mapped[str | None] = mapped_column(String(1000))
    pending: Mapped[int] = mapped_column(Integer, server_default="0")
    """Finished negotiations still waiting for the learner after this update."""
    merged: Mapped[int] = mapped_column(Integer, server_default="0")
    """Negotiations merged into this update (0: trained on one by one)."""
    samples_per_negotiation: Mapped[float | None] = mapped_column(Float)
    delay_s: Mapped[float | None] = mapped_column(Float)
    """Median seconds from its negotiations' end to the version it published."""


class OutcomeTotalRow(Base):
    """Sums over the finished negotiations of one outcome (one of SHARDS rows per outcome)."""

    __tablename__ = "outcome_totals"

    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    outcome: Mapped[str] = mapped_column(String(20), primary_key=True)
    negotiations: Mapped[int] = mapped_column(BigInteger)
    rewarded: Mapped[int] = mapped_column(BigInteger)
    """Negotiations with a reward (every one the agent played)."""
    reward_sum: Mapped[float] = mapped_column(Float)
    reward_squares: Mapped[float] = mapped_column(Float)
    deals_priced: Mapped[int] = mapped_column(BigInteger)
    savings_pct_sum: Mapped[float] = mapped_column(Float)
    """Saving against list price in percent, summed over the deals."""
    savings_pct_squares: Mapped[float] = mapped_column(Float)
    savings_total: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    """Money saved against list price (price difference times quantity), exact."""
    rounds_sum: Mapped[int] = mapped_column(BigInteger)
    rounds_squares: Mapped[int] = mapped_column(BigInteger)


class VersionOutcomeRow(Base):
    """Finished negotiations by the model version that played them and their outcome."""

    __tablename__ = "version_outcomes"

    model_version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    outcome: Mapped[str] = mapped_column(String(20), primary_key=True)
    negotiations: Mapped[int] = mapped_column(BigInteger)
