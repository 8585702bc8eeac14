"""Stored negotiations: opening one, recording each move (with the agent's logged decision),
reading them back and listing them."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import numpy as np
from sqlalchemy import (
    Select,
    Table,
    Update,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from haggler.core.features import OBSERVATION_LAYOUT
from haggler.core.negotiation import (
    Action,
    Move,
    NegotiationState,
    Party,
    Terms,
    Turn,
    apply_move,
    open_negotiation,
)
from haggler.core.transitions import LoggedDecision
from haggler.store import totals
from haggler.store.base import Conflict, Database, NotFound, money_decimal, run_statement
from haggler.store.catalogue import StoredProduct, get_product, list_products
from haggler.store.tables import (
    DecisionRow,
    MoveReplyRow,
    NegotiationRow,
    TurnRow,
)

# -- negotiations -----------------------------------------------------------------------------

# The statements of a move are a serving process's hot path. They are Core statements, compiled
# once per dialect by SQLAlchemy and run on the driver's cursor of the caller's connection (same
# transaction): `Connection.execute` spends ~75 µs a statement on its per-call bookkeeping here,
# the cursor ~10 µs, and a move runs four of them.
NEGOTIATIONS = cast(Table, NegotiationRow.__table__)
TURNS = cast(Table, TurnRow.__table__)
DECISIONS = cast(Table, DecisionRow.__table__)
_INSERT_NEGOTIATION = insert(NEGOTIATIONS).returning(NEGOTIATIONS.c.id)
_INSERT_TURNS = insert(TURNS)
_INSERT_DECISION = insert(DECISIONS)
_REWARD_DECISION = (
    update(DECISIONS)
    .where(
        DECISIONS.c.negotiation_id == bindparam("answered_negotiation"),
        DECISIONS.c.round == bindparam("answered_round"),
    )
    .values(reward=bindparam("answered_reward"))
)


@dataclass(frozen=True)
class SellerInfo:
    kind: str
    """'simulated' or 'external'."""
    strategy: str | None = None
    seed: int | None = None
    token_hash: str | None = None
    account_id: int | None = None
    """The seller account party to it (an external seller may have one)."""


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
    purchaser_id: int | None = None
    """The purchaser account it belongs to (None: opened before there were accounts)."""


def create_negotiation(
    state: NegotiationState,
    *,
    session: Database,
    product_id: int,
    seller: SellerInfo,
    model_version: int,
    created_at: datetime | None = None,
    purchaser_id: int | None = None,
) -> int:
    """Store a negotiation just opened by the seller's ask, for the purchaser account
    `purchaser_id`; return its id."""
    terms = state.terms
    values = {
        "product_id": product_id,
        "quantity": terms.quantity,
        "list_price": money_decimal(terms.list_price),
        "buyer_limit": money_decimal(terms.buyer_limit),
        "max_rounds": terms.max_rounds,
        "seller_kind": seller.kind,
        "seller_strategy": seller.strategy,
        "seller_seed": seller.seed,
        "seller_token_hash": seller.token_hash,
        "seller_account_id": seller.account_id,
        "purchaser_id": purchaser_id,
        "status": "open",
        "rounds": 0,
        "model_version": model_version,
        "observation_layout": OBSERVATION_LAYOUT,
        "created_at": created_at or datetime.now(UTC),
    }
    returned = run_statement(session, _INSERT_NEGOTIATION, [values]).returned
    assert returned is not None  # INSERT ... RETURNING id
    negotiation_id = int(returned[0])
    _add_turns(negotiation_id, state.transcript, first_seq=0, session=session)
    return negotiation_id


def _add_turns(
    negotiation_id: int, turns: Sequence[Turn], *, first_seq: int, session: Database
) -> None:
    if not turns:
        return
    rows = [
        {
            "negotiation_id": negotiation_id,
            "seq": first_seq + offset,
            "party": turn.party.value,
            "move": turn.move.value,
            "price": money_decimal(turn.price) if turn.price is not None else None,
            "round": turn.round,
        }
        for offset, turn in enumerate(turns)
    ]
    run_statement(session, _INSERT_TURNS, rows)


def record_progress(
    negotiation_id: int,
    before: NegotiationState,
    after: NegotiationState,
    *,
    session: Database,
    model_version: int,
    decisions: Sequence[LoggedDecision] = (),
    answered: tuple[int, float] | None = None,
    reward: float | None = None,
) -> None:
    """Store the moves that took `before` to `after`: the new turns, the buyer's `decisions`,
    the reward of the earlier decision the seller's move `answered` (round, reward) and, once
    the negotiation is over, its outcome and return `reward`, counted in the totals under the
    `model_version` that played it. The update only applies if nobody else moved first
    (Conflict otherwise)."""
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
    updated = run_statement(
        session,
        _advance_statement(after.is_over),
        [{"negotiation_id": negotiation_id, "rounds_before": before.buyer_moves, **values}],
    )
    if updated.rowcount != 1:
        raise Conflict(f"negotiation {negotiation_id} changed meanwhile; read it again")
    if after.is_over:
        totals.add_finished(
            totals.Finished(
                negotiation_id,
                model_version,
                after.outcome.value if after.outcome else "unknown",
                reward,
                after.buyer_moves,
                money_decimal(after.terms.list_price),
                money_decimal(after.deal_price) if after.deal_price is not None else None,
                after.terms.quantity,
            ),
            session=session,
        )
    if answered is not None:
        answer = {
            "answered_negotiation": negotiation_id,
            "answered_round": answered[0],
            "answered_reward": answered[1],
        }
        run_statement(session, _REWARD_DECISION, [answer])
    try:
        _add_turns(negotiation_id, new_turns, first_seq=len(before.transcript), session=session)
        if decisions:
            rows = [
                {
                    "negotiation_id": negotiation_id,
                    "round": decision.round,
                    "observation": [float(x) for x in decision.observation],
                    "action_mask": [bool(x) for x in decision.action_mask],
                    "move": decision.move,
                    "propensity": decision.propensity,
                    "model_version": decision.model_version,
                    "reward": decision.reward,
                }
                for decision in decisions
            ]
            run_statement(session, _INSERT_DECISION, rows)
    except IntegrityError:  # another request stored the same move first
        raise Conflict(f"negotiation {negotiation_id} changed meanwhile; read it again") from None


# -- answers kept for idempotent retries --------------------------------------------------------

REPLIES = cast(Table, MoveReplyRow.__table__)
_INSERT_REPLY = insert(REPLIES)
_FIND_REPLY = select(REPLIES.c.request_hash, REPLIES.c.answer).where(
    REPLIES.c.negotiation_id == bindparam("reply_negotiation"),
    REPLIES.c.idempotency_key == bindparam("reply_key"),
)


def kept_reply(negotiation_id: int, key: str, *, session: Database) -> tuple[str, str] | None:
    """The answer kept for a move sent with idempotency key `key`: (its request's hash, the
    answer); None if no move came with that key."""
    row = session.execute(
        _FIND_REPLY, {"reply_negotiation": negotiation_id, "reply_key": key}
    ).first()
    return (row.request_hash, row.answer) if row is not None else None


def keep_reply(
    negotiation_id: int, key: str, request_hash: str, answer: str, *, session: Database
) -> None:
    """Keep the answer to a move sent with idempotency key `key`, in the move's transaction;
    Conflict if a move with that key was stored first."""
    values = {
        "negotiation_id": negotiation_id,
        "idempotency_key": key,
        "request_hash": request_hash,
        "answer": answer,
        "created_at": datetime.now(UTC),
    }
    try:
        run_statement(session, _INSERT_REPLY, [values])
    except IntegrityError:
        raise Conflict(f"a move with idempotency key {key!r} was stored first") from None


@functools.cache
def _advance_statement(finishes: bool) -> Update:
    """UPDATE of a negotiation's round count (and outcome, if it `finishes`), only if it is
    still open at the round count the writer read."""
    columns = ["rounds"]
    if finishes:
        columns += ["status", "outcome", "deal_price", "reward", "finished_at"]
    return (
        update(NEGOTIATIONS)
        .where(
            NEGOTIATIONS.c.id == bindparam("negotiation_id"),
            NEGOTIATIONS.c.status == "open",
            NEGOTIATIONS.c.rounds == bindparam("rounds_before"),
        )
        .values({column: bindparam(column) for column in columns})
    )


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
    return _stored(row, get_product(row.product_id, session=session), turns, decisions)


def _stored(
    row: NegotiationRow,
    product: StoredProduct,
    turns: Sequence[TurnRow],
    decisions: Sequence[DecisionRow],
) -> StoredNegotiation:
    terms = Terms(
        float(row.list_price),
        float(row.buyer_limit),
        max_rounds=row.max_rounds,
        quantity=row.quantity,
    )
    return StoredNegotiation(
        id=row.id,
        product=product,
        seller=SellerInfo(
            row.seller_kind,
            row.seller_strategy,
            row.seller_seed,
            row.seller_token_hash,
            row.seller_account_id,
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
        purchaser_id=row.purchaser_id,
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
    purchaser_id: int | None = None
    """Only this purchaser's negotiations."""
    seller_account_id: int | None = None
    """Only the negotiations this seller account is party to."""


COUNT_LIMIT = 1_000
"""A filtered count stops here (the API says "at least"): counting every match of a filter
grows with history, and a list's first page must not (measured at 1M stored negotiations, a
cap of 10,000 made a list filtered by seller and outcome 5x slower than at 10k)."""


def _filtered(where: NegotiationFilter) -> Select[NegotiationRow]:
    query = select(NegotiationRow)
    for column, value in (
        (NegotiationRow.product_id, where.product_id),
        (NegotiationRow.outcome, where.outcome),
        (NegotiationRow.status, where.status),
        (NegotiationRow.seller_strategy, where.seller_strategy),
        (NegotiationRow.model_version, where.model_version),
        (NegotiationRow.purchaser_id, where.purchaser_id),
        (NegotiationRow.seller_account_id, where.seller_account_id),
    ):
        if value is not None:
            query = query.where(column == value)
    return query


def count_negotiations(*, session: Session, where: NegotiationFilter) -> tuple[int, bool]:
    """How many negotiations match `where`, and whether that is exact: from the totals kept
    as negotiations finish where the filter is only by status, else counted up to COUNT_LIMIT
    (False past it: at least that many)."""
    if dataclasses.replace(where, status=None) == NegotiationFilter():
        opened = totals.open_count(session=session)
        if where.status == "open":
            return opened, True
        finished = totals.totals(session=session).finished
        return (finished, True) if where.status == "finished" else (finished + opened, True)
    capped = _filtered(where).with_only_columns(NegotiationRow.id).limit(COUNT_LIMIT + 1)
    found = session.scalar(select(func.count()).select_from(capped.subquery())) or 0
    return min(found, COUNT_LIMIT), found <= COUNT_LIMIT


def list_negotiations(
    *,
    session: Session,
    where: NegotiationFilter,
    limit: int = 50,
    offset: int = 0,
    before: int | None = None,
) -> list[StoredNegotiation]:
    """One page of negotiations, newest first: after skipping `offset`, or (a cursor, whose
    cost does not grow with the page's depth) those with an id below `before`."""
    query = _filtered(where)
    if before is not None:
        query = query.where(NegotiationRow.id < before)
    rows = session.scalars(query.order_by(NegotiationRow.id.desc()).limit(limit).offset(offset))
    return _negotiations(rows.all(), session=session)


def negotiation_page(
    *,
    session: Session,
    where: NegotiationFilter,
    limit: int,
    offset: int = 0,
    before: int | None = None,
) -> tuple[list[StoredNegotiation], int | None]:
    """`list_negotiations`' page and the cursor of the next one: None when this page is the
    last (one row more is read to know it; a full page is not a sign that more follow)."""
    rows = list_negotiations(
        session=session, where=where, limit=limit + 1, offset=offset, before=before
    )
    page = rows[:limit]
    return page, page[-1].id if len(rows) > limit else None


def newest_id(*, session: Session, where: NegotiationFilter) -> int | None:
    """The id of the newest negotiation `where` selects."""
    query = _filtered(where).with_only_columns(NegotiationRow.id)
    return session.scalar(query.order_by(NegotiationRow.id.desc()).limit(1))


def open_negotiation_ids(*, session: Session) -> list[int]:
    """Negotiations still in progress (for example after a restart)."""
    return list(
        session.scalars(
            select(NegotiationRow.id)
            .where(NegotiationRow.status == "open")
            .order_by(NegotiationRow.id)
        )
    )


def _negotiations(rows: Sequence[NegotiationRow], *, session: Session) -> list[StoredNegotiation]:
    """Many negotiations with their turns and decisions in three queries, not 2 per row."""
    ids = [row.id for row in rows]
    turns: dict[int, list[TurnRow]] = {i: [] for i in ids}
    decisions: dict[int, list[DecisionRow]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):  # bounded IN lists
        chunk = ids[start : start + 500]
        for turn in session.scalars(
            select(TurnRow).where(TurnRow.negotiation_id.in_(chunk)).order_by(TurnRow.seq)
        ):
            turns[turn.negotiation_id].append(turn)
        for decision in session.scalars(
            select(DecisionRow)
            .where(DecisionRow.negotiation_id.in_(chunk))
            .order_by(DecisionRow.round)
        ):
            decisions[decision.negotiation_id].append(decision)
    products = {p.id: p for p in list_products(session=session)}
    return [
        _stored(row, products[row.product_id], turns[row.id], decisions[row.id]) for row in rows
    ]
