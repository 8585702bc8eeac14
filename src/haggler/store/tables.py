"""The database tables. Money is NUMERIC(14, 2): exact, as the spec asks at the boundaries."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    func,
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


class NegotiationRow(Base):
    __tablename__ = "negotiations"

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
    status: Mapped[str] = mapped_column(String(20), index=True)
    """'open' until the negotiation ends, then 'finished'."""
    outcome: Mapped[str | None] = mapped_column(String(20), index=True)
    deal_price: Mapped[Decimal | None] = mapped_column(Money)
    rounds: Mapped[int] = mapped_column(Integer, default=0)
    reward: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TurnRow(Base):
    """One move of the transcript; `seq` orders them (0 is the seller's opening ask)."""

    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("negotiation_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    negotiation_id: Mapped[int] = mapped_column(ForeignKey("negotiations.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    party: Mapped[str] = mapped_column(String(10))
    move: Mapped[str] = mapped_column(String(20))
    price: Mapped[Decimal | None] = mapped_column(Money)
    round: Mapped[int] = mapped_column(Integer)


class DecisionRow(Base):
    """One buyer decision as served, with its propensity: the experience log for learning and
    for off-policy evaluation. `reward` is known once the seller has answered."""

    __tablename__ = "decisions"
    __table_args__ = (UniqueConstraint("negotiation_id", "round"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    negotiation_id: Mapped[int] = mapped_column(ForeignKey("negotiations.id"), index=True)
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
