"""The repository: the only code that reads or writes the database.

Every function takes the session as a keyword-only argument and leaves committing to the caller,
so that one request (or one negotiation step) is one transaction. Rows become domain objects here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from haggler.agent import LoggedDecision, Transitions, negotiation_transitions
from haggler.catalogue import SEED_CATALOGUE, Product
from haggler.negotiation import (
    Action,
    Move,
    NegotiationState,
    Party,
    Terms,
    Turn,
    apply_move,
    open_negotiation,
)
from haggler.store.tables import CounterRow, DecisionRow, NegotiationRow, ProductRow, TurnRow


class NotFound(LookupError):
    """No row with that id."""


class Conflict(ValueError):
    """The write would break a uniqueness rule (for example a product name taken)."""


def money_decimal(value: float) -> Decimal:
    """A price as an exact two-place decimal."""
    return Decimal(f"{value:.2f}")


# -- products ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredProduct:
    id: int
    product: Product


def _product(row: ProductRow) -> StoredProduct:
    return StoredProduct(row.id, Product(row.name, row.category, float(row.list_price)))


def seed_catalogue(*, session: Session) -> int:
    """Add the seed catalogue to an empty store; return how many products were added."""
    if session.scalar(select(func.count()).select_from(ProductRow)):
        return 0
    for product in SEED_CATALOGUE:
        session.add(
            ProductRow(
                name=product.name,
                category=product.category,
                list_price=money_decimal(product.list_price),
            )
        )
    session.flush()
    return len(SEED_CATALOGUE)


def list_products(*, session: Session) -> list[StoredProduct]:
    return [_product(row) for row in session.scalars(select(ProductRow).order_by(ProductRow.id))]


def get_product(product_id: int, *, session: Session) -> StoredProduct:
    row = session.get(ProductRow, product_id)
    if row is None:
        raise NotFound(f"no product {product_id}")
    return _product(row)


def add_product(product: Product, *, session: Session) -> StoredProduct:
    existing = session.scalar(select(ProductRow).where(ProductRow.name == product.name))
    if existing is not None:
        raise Conflict(f"a product named {product.name!r} exists already")
    row = ProductRow(
        name=product.name, category=product.category, list_price=money_decimal(product.list_price)
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # a concurrent insert of the same name
        raise Conflict(f"a product named {product.name!r} exists already") from None
    return _product(row)


# -- negotiations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SellerInfo:
    kind: str
    """'simulated' or 'external'."""
    strategy: str | None = None
    seed: int | None = None
    token_hash: str | None = None


@dataclass(frozen=True)
class StoredNegotiation:
    id: int
    product: StoredProduct
    seller: SellerInfo
    state: NegotiationState
    model_version: int
    reward: float | None
    created_at: datetime
    finished_at: datetime | None
    decisions: tuple[LoggedDecision, ...]


def create_negotiation(
    state: NegotiationState,
    *,
    session: Session,
    product_id: int,
    seller: SellerInfo,
    model_version: int,
) -> int:
    """Store a negotiation just opened by the seller's ask; return its id."""
    terms = state.terms
    row = NegotiationRow(
        product_id=product_id,
        quantity=terms.quantity,
        list_price=money_decimal(terms.list_price),
        buyer_limit=money_decimal(terms.buyer_limit),
        max_rounds=terms.max_rounds,
        seller_kind=seller.kind,
        seller_strategy=seller.strategy,
        seller_seed=seller.seed,
        seller_token_hash=seller.token_hash,
        status="open",
        rounds=0,
        model_version=model_version,
    )
    session.add(row)
    session.flush()
    _add_turns(row.id, state.transcript, first_seq=0, session=session)
    return row.id


def _add_turns(
    negotiation_id: int, turns: Sequence[Turn], *, first_seq: int, session: Session
) -> None:
    for offset, turn in enumerate(turns):
        session.add(
            TurnRow(
                negotiation_id=negotiation_id,
                seq=first_seq + offset,
                party=turn.party.value,
                move=turn.move.value,
                price=money_decimal(turn.price) if turn.price is not None else None,
                round=turn.round,
            )
        )


def record_progress(
    negotiation_id: int,
    before: NegotiationState,
    after: NegotiationState,
    *,
    session: Session,
    decision: LoggedDecision | None = None,
    reward: float | None = None,
) -> None:
    """Store the moves that took `before` to `after`, the buyer's decision (if any) and, once
    the negotiation is over, its outcome. The update only applies if nobody else moved first."""
    new_turns = after.transcript[len(before.transcript) :]
    values: dict[str, object] = {"rounds": after.buyer_moves}
    if after.is_over:
        values |= {
            "status": "finished",
            "outcome": after.outcome.value if after.outcome else None,
            "deal_price": money_decimal(after.deal_price) if after.deal_price is not None else None,
            "reward": reward,
            "finished_at": datetime.now(UTC),
        }
    # Optimistic concurrency: the row must still be open at the length we read.
    updated = session.execute(
        update(NegotiationRow)
        .where(
            NegotiationRow.id == negotiation_id,
            NegotiationRow.status == "open",
            NegotiationRow.rounds == before.buyer_moves,
        )
        .values(**values)
    )
    if updated.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"negotiation {negotiation_id} changed meanwhile; read it again")
    _add_turns(negotiation_id, new_turns, first_seq=len(before.transcript), session=session)
    if decision is not None:
        session.add(
            DecisionRow(
                negotiation_id=negotiation_id,
                round=decision.round,
                observation=[float(x) for x in decision.observation],
                action_mask=[bool(x) for x in decision.action_mask],
                move=decision.move,
                propensity=decision.propensity,
                model_version=decision.model_version,
                reward=decision.reward,
            )
        )
    try:
        session.flush()
    except IntegrityError:  # another request stored the same move first
        raise Conflict(f"negotiation {negotiation_id} changed meanwhile; read it again") from None


def get_negotiation(
    negotiation_id: int, *, session: Session, with_decisions: bool = True
) -> StoredNegotiation:
    """One negotiation; `with_decisions=False` skips the decision log (a cheaper read)."""
    row = session.get(NegotiationRow, negotiation_id)
    if row is None:
        raise NotFound(f"no negotiation {negotiation_id}")
    return _negotiation(row, session=session, with_decisions=with_decisions)


def _negotiation(
    row: NegotiationRow, *, session: Session, with_decisions: bool = True
) -> StoredNegotiation:
    turns = session.scalars(
        select(TurnRow).where(TurnRow.negotiation_id == row.id).order_by(TurnRow.seq)
    ).all()
    decisions = (
        session.scalars(
            select(DecisionRow)
            .where(DecisionRow.negotiation_id == row.id)
            .order_by(DecisionRow.round)
        ).all()
        if with_decisions
        else []
    )
    terms = Terms(
        float(row.list_price),
        float(row.buyer_limit),
        max_rounds=row.max_rounds,
        quantity=row.quantity,
    )
    return StoredNegotiation(
        id=row.id,
        product=get_product(row.product_id, session=session),
        seller=SellerInfo(
            row.seller_kind, row.seller_strategy, row.seller_seed, row.seller_token_hash
        ),
        state=_replay(terms, turns),
        model_version=row.model_version,
        reward=row.reward,
        created_at=row.created_at,
        finished_at=row.finished_at,
        decisions=tuple(
            LoggedDecision(
                d.round,
                np.asarray(d.observation, dtype=np.float32),
                np.asarray(d.action_mask, dtype=bool),
                d.move,
                d.propensity,
                d.model_version,
                d.reward,
            )
            for d in decisions
        ),
    )


def _replay(terms: Terms, turns: Sequence[TurnRow]) -> NegotiationState:
    """Rebuild the state by replaying the stored moves through the protocol (which checks them)."""
    opening = turns[0]
    assert opening.price is not None
    state = open_negotiation(terms, float(opening.price))
    for turn in turns[1:]:
        move = Move(turn.move)
        price = float(turn.price) if turn.price is not None else None
        state = apply_move(state, Party(turn.party), Action(move, price))
    return state


@dataclass(frozen=True)
class NegotiationFilter:
    product_id: int | None = None
    outcome: str | None = None
    status: str | None = None
    seller_strategy: str | None = None
    model_version: int | None = None


def list_negotiations(
    *, session: Session, where: NegotiationFilter, limit: int = 50, offset: int = 0
) -> tuple[list[StoredNegotiation], int]:
    """One page of negotiations, newest first, and the total that match."""
    query = select(NegotiationRow)
    for column, value in (
        (NegotiationRow.product_id, where.product_id),
        (NegotiationRow.outcome, where.outcome),
        (NegotiationRow.status, where.status),
        (NegotiationRow.seller_strategy, where.seller_strategy),
        (NegotiationRow.model_version, where.model_version),
    ):
        if value is not None:
            query = query.where(column == value)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(NegotiationRow.id.desc()).limit(limit).offset(offset))
    return [_negotiation(row, session=session) for row in rows], total


def open_negotiation_ids(*, session: Session) -> list[int]:
    """Negotiations still in progress (for example after a restart)."""
    return list(
        session.scalars(
            select(NegotiationRow.id)
            .where(NegotiationRow.status == "open")
            .order_by(NegotiationRow.id)
        )
    )


def finished_experiences(*, session: Session, limit: int) -> Transitions | None:
    """At least the newest `limit` experiences of finished negotiations (whole negotiations),
    to rebuild the replay buffer after a restart; None if there are none."""
    ids = session.scalars(
        select(NegotiationRow.id)
        .where(NegotiationRow.status == "finished")
        .order_by(NegotiationRow.id.desc())
    ).all()
    batches: list[Transitions] = []
    total = 0
    for negotiation_id in ids:
        negotiation = get_negotiation(negotiation_id, session=session)
        if not negotiation.decisions:
            continue
        rewards = [d.reward or 0.0 for d in negotiation.decisions]
        batches.append(negotiation_transitions(negotiation.decisions, rewards, negotiation.state))
        total += len(negotiation.decisions)
        if total >= limit:
            break
    if not batches:
        return None
    batches.reverse()  # oldest first, as they were played
    return Transitions(*(np.concatenate(parts) for parts in zip(*batches, strict=True)))


# -- counters ---------------------------------------------------------------------------------


def get_counter(name: str, *, session: Session) -> int:
    row = session.get(CounterRow, name)
    return row.value if row is not None else 0


def set_counter(name: str, value: int, *, session: Session) -> None:
    row = session.get(CounterRow, name)
    if row is None:
        session.add(CounterRow(name=name, value=value))
    else:
        row.value = value
    session.flush()


def set_decision_reward(
    negotiation_id: int, round_: int, reward: float, *, session: Session
) -> None:
    """Fill in the reward of a buyer decision once the seller has answered it."""
    session.execute(
        update(DecisionRow)
        .where(DecisionRow.negotiation_id == negotiation_id, DecisionRow.round == round_)
        .values(reward=reward)
    )


@dataclass(frozen=True)
class Summary:
    negotiations: int
    finished: int
    deals: int
    rewards: list[float]
    savings_pct: list[float]
    """Per deal: saving against list price in percent."""
    savings_total: Decimal
    rounds: list[int]


def summary(*, session: Session) -> Summary:
    """Totals and per-negotiation figures over all finished negotiations."""
    total = session.scalar(select(func.count()).select_from(NegotiationRow)) or 0
    rows = session.execute(
        select(
            NegotiationRow.outcome,
            NegotiationRow.deal_price,
            NegotiationRow.list_price,
            NegotiationRow.quantity,
            NegotiationRow.reward,
            NegotiationRow.rounds,
        ).where(NegotiationRow.status == "finished")
    ).all()
    deals = [r for r in rows if r.outcome == "deal" and r.deal_price is not None]
    return Summary(
        negotiations=total,
        finished=len(rows),
        deals=len(deals),
        rewards=[r.reward for r in rows if r.reward is not None],
        savings_pct=[float(100 * (r.list_price - r.deal_price) / r.list_price) for r in deals],
        savings_total=sum(
            ((r.list_price - r.deal_price) * r.quantity for r in deals), start=Decimal("0.00")
        ),
        rounds=[r.rounds for r in rows],
    )
