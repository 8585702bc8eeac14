"""The repository: the only code that reads or writes the database.

Every function takes the session as a keyword-only argument and leaves committing to the caller,
so that one request (or one negotiation step) is one transaction. The writes of a move also take
a Core connection in place of the session (the serving hot path opens no ORM session). Rows
become domain objects here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import numpy as np
from sqlalchemy import (
    Connection,
    Dialect,
    Executable,
    Insert,
    Table,
    Update,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, defer

from haggler.agent import LoggedDecision, Transitions
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
from haggler.store.tables import (
    ABTestRow,
    CounterRow,
    DecisionRow,
    ModelSnapshotRow,
    NegotiationRow,
    ProductRow,
    TrainingPointRow,
    TurnRow,
)


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
Database = Session | Connection
"""A session or a Core connection: the hot path's writes take either (in its transaction)."""


@dataclass(frozen=True)
class _DriverStatement:
    """A Core statement as SQLAlchemy compiles it for one dialect: its SQL, the order of its
    parameters (positional drivers) and the dialect's conversion of each value."""

    sql: str
    names: tuple[str, ...] | None
    defaults: dict[str, Any]
    converters: dict[str, Any]

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        merged = {**self.defaults, **values}
        for name, convert in self.converters.items():
            merged[name] = convert(merged[name])
        return tuple(merged[name] for name in self.names) if self.names else merged


@functools.cache
def _compiled(
    statement: Executable, columns: tuple[str, ...] | None, dialect: Dialect
) -> _DriverStatement:
    compiled = cast(Any, statement).compile(
        dialect=dialect, column_keys=list(columns) if columns else None
    )
    converters = {}
    for name, bind in compiled.binds.items():
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None:
            converters[name] = convert
    names = tuple(compiled.positiontup) if compiled.positional else None
    return _DriverStatement(compiled.string, names, dict(compiled.params), converters)


@dataclass(frozen=True)
class _Ran:
    rowcount: int
    returned: tuple[Any, ...] | None
    """The first row a RETURNING gave (None: the statement returns none)."""


def _run(database: Database, statement: Executable, rows: Sequence[dict[str, Any]]) -> _Ran:
    """Run `statement` once per row on the driver's cursor of `database`'s connection (an
    INSERT sets the columns the rows name, in their order). A driver
    error is raised as SQLAlchemy's (IntegrityError, OperationalError, ...), and a connection
    the server dropped is invalidated, as `Connection.execute` does. A session's pending
    changes are flushed first, as `Session.execute` does."""
    if isinstance(database, Session):
        database.flush()  # nothing to do, and next to free, when nothing is pending
        connection = database.connection()
    else:
        connection = database
        if not connection.in_transaction():  # the cursor alone would not begin one
            connection.begin()
    dialect = connection.dialect
    columns = tuple(rows[0]) if isinstance(statement, Insert) else None
    prepared = _compiled(statement, columns, dialect)
    cursor: Any = connection.connection.cursor()
    try:
        if len(rows) == 1:
            cursor.execute(prepared.sql, prepared.parameters(rows[0]))
        else:
            cursor.executemany(prepared.sql, [prepared.parameters(row) for row in rows])
        returned = cursor.fetchone() if cursor.description is not None else None
        return _Ran(cursor.rowcount, tuple(returned) if returned is not None else None)
    except dialect.loaded_dbapi.Error as error:
        dropped = dialect.is_disconnect(error, connection.connection, cursor)
        if dropped:
            connection.invalidate(error)
        raise DBAPIError.instance(
            prepared.sql,
            None,
            error,
            dialect.loaded_dbapi.Error,
            connection_invalidated=dropped,
            dialect=dialect,
        ) from None
    finally:
        cursor.close()


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
    session: Database,
    product_id: int,
    seller: SellerInfo,
    model_version: int,
    created_at: datetime | None = None,
) -> int:
    """Store a negotiation just opened by the seller's ask; return its id."""
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
        "status": "open",
        "rounds": 0,
        "model_version": model_version,
        "created_at": created_at or datetime.now(UTC),
    }
    returned = _run(session, _INSERT_NEGOTIATION, [values]).returned
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
    _run(session, _INSERT_TURNS, rows)


def record_progress(
    negotiation_id: int,
    before: NegotiationState,
    after: NegotiationState,
    *,
    session: Database,
    decision: LoggedDecision | None = None,
    answered: tuple[int, float] | None = None,
    reward: float | None = None,
) -> None:
    """Store the moves that took `before` to `after`: the new turns, the buyer's decision (if
    any), the reward of the earlier decision the seller's move `answered` (round, reward) and,
    once the negotiation is over, its outcome and return `reward`. The update only applies if
    nobody else moved first (Conflict otherwise)."""
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
    updated = _run(
        session,
        _advance_statement(after.is_over),
        [{"negotiation_id": negotiation_id, "rounds_before": before.buyer_moves, **values}],
    )
    if updated.rowcount != 1:
        raise Conflict(f"negotiation {negotiation_id} changed meanwhile; read it again")
    if answered is not None:
        answer = {
            "answered_negotiation": negotiation_id,
            "answered_round": answered[0],
            "answered_reward": answered[1],
        }
        _run(session, _REWARD_DECISION, [answer])
    try:
        _add_turns(negotiation_id, new_turns, first_seq=len(before.transcript), session=session)
        if decision is not None:
            row = {
                "negotiation_id": negotiation_id,
                "round": decision.round,
                "observation": [float(x) for x in decision.observation],
                "action_mask": [bool(x) for x in decision.action_mask],
                "move": decision.move,
                "propensity": decision.propensity,
                "model_version": decision.model_version,
                "reward": decision.reward,
            }
            _run(session, _INSERT_DECISION, [row])
    except IntegrityError:  # another request stored the same move first
        raise Conflict(f"negotiation {negotiation_id} changed meanwhile; read it again") from None


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
    return _negotiations(rows.all(), session=session), total


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


@dataclass(frozen=True)
class QueuedNegotiation:
    """A finished negotiation as the learner takes it in: only its experiences."""

    id: int
    finished_at: datetime | None
    experiences: Transitions | None
    """None for a negotiation without buyer decisions (the seller ended it at once)."""


def _experiences_by_negotiation(
    negotiation_ids: Sequence[int], *, session: Session
) -> dict[int, Transitions]:
    """The experiences of finished negotiations from their decisions alone (measured: reading
    the turns and replaying them through the protocol took most of the learner's read time).
    The last decision of a finished negotiation is terminal, so its next observation is never
    used: it is stored as zeros with every move marked legal."""
    rows: dict[int, list[Any]] = {}
    for start in range(0, len(negotiation_ids), 500):  # bounded IN lists
        chunk = list(negotiation_ids[start : start + 500])
        for row in session.execute(
            select(
                DecisionRow.negotiation_id,
                DecisionRow.observation,
                DecisionRow.action_mask,
                DecisionRow.move,
                DecisionRow.reward,
            )
            .where(DecisionRow.negotiation_id.in_(chunk))
            .order_by(DecisionRow.negotiation_id, DecisionRow.round)
        ):
            rows.setdefault(row.negotiation_id, []).append(row)
    experiences = {}
    for negotiation_id, decisions in rows.items():
        observations = np.asarray([d.observation for d in decisions], dtype=np.float32)  # (T, O)
        masks = np.asarray([d.action_mask for d in decisions], dtype=bool)  # (T, N_MOVES)
        terminated = np.zeros(len(decisions), dtype=bool)
        terminated[-1] = True
        experiences[negotiation_id] = Transitions(
            observation=observations,
            action_mask=masks,
            move=np.asarray([d.move for d in decisions], dtype=np.int64),
            reward=np.asarray([d.reward or 0.0 for d in decisions], dtype=np.float32),
            next_observation=np.concatenate([observations[1:], np.zeros_like(observations[:1])]),
            next_action_mask=np.concatenate([masks[1:], np.ones_like(masks[:1])]),
            terminated=terminated,
        )
    return experiences


def learned_experiences(*, session: Session, limit: int) -> Transitions | None:
    """At least the newest `limit` experiences the learner has taken in (whole negotiations),
    oldest first, to rebuild its replay buffer after a restart; None if there are none."""
    ids: list[int] = []
    total = 0
    query = (
        select(NegotiationRow.id, NegotiationRow.rounds)
        .where(NegotiationRow.status == "finished", NegotiationRow.learned_at.is_not(None))
        .order_by(NegotiationRow.id.desc())
    )
    for row in session.execute(query.execution_options(yield_per=1000)):
        ids.append(row.id)
        total += row.rounds
        if total >= limit:
            break
    ids.reverse()  # oldest first, as they were played
    by_negotiation = _experiences_by_negotiation(ids, session=session)
    batches = [by_negotiation[i] for i in ids if i in by_negotiation]
    if not batches:
        return None
    return Transitions(*(np.concatenate(parts) for parts in zip(*batches, strict=True)))


def negotiations_to_learn(*, session: Session, limit: int) -> list[QueuedNegotiation]:
    """The learner's queue: finished negotiations not yet learned from, in the order they ended."""
    rows = session.execute(
        select(NegotiationRow.id, NegotiationRow.finished_at)
        .where(NegotiationRow.status == "finished", NegotiationRow.learned_at.is_(None))
        .order_by(NegotiationRow.finished_at, NegotiationRow.id)
        .limit(limit)
    ).all()
    experiences = _experiences_by_negotiation([r.id for r in rows], session=session)
    return [QueuedNegotiation(r.id, r.finished_at, experiences.get(r.id)) for r in rows]


_MARK_LEARNED = (
    update(NEGOTIATIONS)
    .where(NEGOTIATIONS.c.id == bindparam("learned_id"))
    .values(learned_at=bindparam("learned_when"))
)


def mark_learned(negotiation_ids: Sequence[int], *, session: Session) -> None:
    """Take negotiations off the learner's queue (on the driver's cursor, like all of the
    learner's step: on SQLite every serving process waits while it holds the write lock)."""
    if negotiation_ids:
        now = datetime.now(UTC)
        rows = [{"learned_id": id_, "learned_when": now} for id_ in negotiation_ids]
        _run(session, _MARK_LEARNED, rows)


# -- model snapshots: what serves, and the log of model changes ----------------------------------

SERVING_VERSION = "serving_version"
"""Counter naming the model version every serving process acts with."""
TRAINING_ENABLED = "training_enabled"
"""Counter: 1 while online training is on (switched at run time by the operator)."""
NEGOTIATIONS_LEARNED = "negotiations_learned"
"""Counter: negotiations the learner has trained on (checkpoint names count with it)."""


@dataclass(frozen=True)
class StoredSnapshot:
    version: int
    created_at: datetime
    source: str
    checkpoint: str | None
    negotiations: int
    trained_from: datetime | None
    weights: bytes | None
    status: str = "promoted"
    """'promoted' (it served), 'candidate' (waiting, or in an A/B test) or 'rejected'."""
    reason: str | None = None
    evaluation: dict[str, Any] | None = None
    copy_of: int | None = None
    promoted_at: datetime | None = None


def _snapshot(row: ModelSnapshotRow, *, with_weights: bool = True) -> StoredSnapshot:
    return StoredSnapshot(
        row.version,
        row.created_at,
        row.source,
        row.checkpoint,
        row.negotiations,
        row.trained_from,
        row.weights if with_weights else None,
        row.status,
        row.reason,
        row.evaluation,
        row.copy_of,
        row.promoted_at,
    )


def serving_version(*, session: Session) -> int | None:
    row = session.get(CounterRow, SERVING_VERSION)
    return row.value if row is not None else None


@dataclass(frozen=True)
class Followed:
    """What every serving process follows in the store, several times a second."""

    serving_version: int | None
    training_enabled: bool
    ab_test_id: int | None
    """The running A/B test (None: none runs)."""
    challenger_version: int | None


_COUNTERS = cast(Table, CounterRow.__table__)
_AB_TESTS = cast(Table, ABTestRow.__table__)
_SET_COUNTER = (
    update(_COUNTERS)
    .where(_COUNTERS.c.name == bindparam("counter"))
    .values(value=bindparam("counter_value"))
)
_SWAP_COUNTER = _SET_COUNTER.where(_COUNTERS.c.value == bindparam("expected_value"))
_INSERT_COUNTER = insert(_COUNTERS)
_INSERT_SNAPSHOT = insert(cast(Table, ModelSnapshotRow.__table__))
_INSERT_TRAINING_POINT = insert(cast(Table, TrainingPointRow.__table__))
_RUNNING = _AB_TESTS.c.status == "running"  # at most one row: a partial unique index
_FOLLOWED = select(
    select(_COUNTERS.c.value).where(_COUNTERS.c.name == SERVING_VERSION).scalar_subquery(),
    select(_COUNTERS.c.value).where(_COUNTERS.c.name == TRAINING_ENABLED).scalar_subquery(),
    select(_AB_TESTS.c.id).where(_RUNNING).scalar_subquery(),
    select(_AB_TESTS.c.challenger_version).where(_RUNNING).scalar_subquery(),
)


def followed(*, session: Database) -> Followed:
    """The serving version, the training switch and the running A/B test, in one statement on
    the driver's cursor (a serving process asks ten times a second; through the ORM it cost
    ~2% of a core under load)."""
    row = _run(session, _FOLLOWED, [{}]).returned
    assert row is not None  # a SELECT of scalar subqueries gives one row
    serving, training, test, challenger = row
    return Followed(serving, training == 1, test, challenger)


def get_snapshot(version: int, *, session: Session) -> StoredSnapshot:
    row = session.get(ModelSnapshotRow, version)
    if row is None:
        raise NotFound(f"no model version {version}")
    return _snapshot(row)


def highest_version(*, session: Session) -> int:
    """The highest model version ever used, in snapshots or by negotiations (0 if none)."""
    snapshots = session.scalar(select(func.max(ModelSnapshotRow.version))) or 0
    served = session.scalar(select(func.max(NegotiationRow.model_version))) or 0
    return max(snapshots, served)


def publish_snapshot(
    weights: bytes,
    *,
    session: Session,
    version: int,
    expected_serving: int | None,
    source: str,
    negotiations: int,
    checkpoint: str | None = None,
    trained_from: datetime | None = None,
    reason: str | None = None,
    copy_of: int | None = None,
) -> None:
    """Add model `version` and make it the one that serves, if the serving version is still
    `expected_serving` (compare-and-swap); Conflict otherwise, or if `version` is taken."""
    now = datetime.now(UTC)
    row = {
        "version": version,
        "created_at": now,
        "source": source,
        "checkpoint": checkpoint,
        "negotiations": negotiations,
        "trained_from": trained_from,
        "weights": weights,
        "status": "promoted",
        "reason": reason,
        "copy_of": copy_of,
        "promoted_at": now,
    }
    try:  # on the driver's cursor: the learner publishes several times a second (see mark_learned)
        _run(session, _INSERT_SNAPSHOT, [row])
    except IntegrityError:
        raise Conflict(f"model version {version} exists already") from None
    if expected_serving is None:
        if session.get(CounterRow, SERVING_VERSION) is not None:
            raise Conflict("a model is serving already")
        session.add(CounterRow(name=SERVING_VERSION, value=version))
        try:
            session.flush()
        except IntegrityError:
            raise Conflict("a model is serving already") from None
        return
    swap_serving(version, expected_serving=expected_serving, session=session)


def swap_serving(version: int, *, expected_serving: int, session: Session) -> None:
    """Point the serving counter at `version` if it still names `expected_serving`."""
    swap = {
        "counter": SERVING_VERSION,
        "counter_value": version,
        "expected_value": expected_serving,
    }
    if _run(session, _SWAP_COUNTER, [swap]).rowcount != 1:
        raise Conflict("the serving model changed meanwhile")
    _forget_loaded_counter(SERVING_VERSION, session=session)


def forget_old_weights(*, session: Session, keep: int, protect: Sequence[int] = ()) -> None:
    """Drop the weights of all but the newest `keep` versions and the `protect`ed ones (the
    serving, known-good and A/B versions); their log rows stay."""
    newest = session.scalar(select(func.max(ModelSnapshotRow.version)))
    if newest is None:
        return
    cutoff = session.scalar(
        select(ModelSnapshotRow.version)
        .where(ModelSnapshotRow.weights.is_not(None))
        .order_by(ModelSnapshotRow.version.desc())
        .offset(keep)
        .limit(1)
    )
    if cutoff is not None:
        session.execute(
            update(ModelSnapshotRow)
            .where(
                ModelSnapshotRow.version <= cutoff,
                ModelSnapshotRow.weights.is_not(None),
                ModelSnapshotRow.version.not_in(list(protect)),
            )
            .values(weights=None)
        )


def model_log(
    *, session: Session, limit: int, status: str | None = None, source: str | None = None
) -> list[StoredSnapshot]:
    """The newest `limit` model versions (of `status` and `source` if given), newest first,
    without their weights."""
    query = select(ModelSnapshotRow).options(defer(ModelSnapshotRow.weights))
    if status is not None:
        query = query.where(ModelSnapshotRow.status == status)
    if source is not None:
        query = query.where(ModelSnapshotRow.source == source)
    rows = session.scalars(query.order_by(ModelSnapshotRow.version.desc()).limit(limit))
    return [_snapshot(row, with_weights=False) for row in rows]


def promotion_count(*, session: Session) -> int:
    """Trained versions that ever went on to serve (a promotion is never undone in the log)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(ModelSnapshotRow)
            .where(ModelSnapshotRow.source == "training", ModelSnapshotRow.promoted_at.is_not(None))
        )
        or 0
    )


def model_status_counts(*, session: Session) -> dict[tuple[str, str], int]:
    """How many model versions there are per (source, status)."""
    rows = session.execute(
        select(ModelSnapshotRow.source, ModelSnapshotRow.status, func.count()).group_by(
            ModelSnapshotRow.source, ModelSnapshotRow.status
        )
    ).all()
    return {(str(source), str(status)): int(count) for source, status, count in rows}


@dataclass(frozen=True)
class FinishedPoint:
    """One finished negotiation as a point of the dashboard's series."""

    id: int
    finished_at: datetime
    outcome: str
    reward: float | None
    savings_pct: float | None
    """Saving against list price, in percent (deals only)."""
    model_version: int


def finished_series(*, session: Session, limit: int) -> list[FinishedPoint]:
    """The newest `limit` finished negotiations, in the order they ended."""
    rows = session.execute(
        select(
            NegotiationRow.id,
            NegotiationRow.finished_at,
            NegotiationRow.outcome,
            NegotiationRow.reward,
            NegotiationRow.list_price,
            NegotiationRow.deal_price,
            NegotiationRow.model_version,
        )
        .where(NegotiationRow.status == "finished")
        .order_by(NegotiationRow.finished_at.desc(), NegotiationRow.id.desc())
        .limit(limit)
    ).all()
    return [
        FinishedPoint(
            r.id,
            r.finished_at,
            r.outcome,
            r.reward,
            float(100 * (r.list_price - r.deal_price) / r.list_price)
            if r.deal_price is not None
            else None,
            r.model_version,
        )
        for r in reversed(rows)
    ]


def negotiation_counts(*, session: Session) -> list[tuple[str, int, int]]:
    """(outcome or 'open', model version, count) over every negotiation in the store."""
    rows = session.execute(
        select(
            func.coalesce(NegotiationRow.outcome, "open"),
            NegotiationRow.model_version,
            func.count(),
        ).group_by(NegotiationRow.outcome, NegotiationRow.model_version)
    ).all()
    return [(str(outcome), int(version), int(count)) for outcome, version, count in rows]


def model_change_counts(*, session: Session) -> dict[str, int]:
    """How many model versions each source ('starter', 'training', 'restore') published."""
    rows = session.execute(
        select(ModelSnapshotRow.source, func.count()).group_by(ModelSnapshotRow.source)
    ).all()
    return {str(source): int(count) for source, count in rows}


# -- training history -------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingPoint:
    at: datetime
    negotiations: int
    loss: float | None
    replay_buffer_size: int
    epsilon: float
    model_version: int
    checkpoint: str | None = None
    checkpoint_error: str | None = None


def add_training_point(point: TrainingPoint, *, session: Session) -> None:
    _run(session, _INSERT_TRAINING_POINT, [dataclasses.asdict(point)])


def _point(row: TrainingPointRow) -> TrainingPoint:
    return TrainingPoint(
        row.at,
        row.negotiations,
        row.loss,
        row.replay_buffer_size,
        row.epsilon,
        row.model_version,
        row.checkpoint,
        row.checkpoint_error,
    )


def training_history(*, session: Session, limit: int) -> list[TrainingPoint]:
    """The newest `limit` learner updates, oldest first."""
    rows = session.scalars(
        select(TrainingPointRow).order_by(TrainingPointRow.id.desc()).limit(limit)
    ).all()
    return [_point(row) for row in reversed(rows)]


def last_checkpoint_point(*, session: Session) -> TrainingPoint | None:
    """The newest learner update that saved a checkpoint or failed to."""
    row = session.scalars(
        select(TrainingPointRow)
        .where(
            (TrainingPointRow.checkpoint.is_not(None))
            | (TrainingPointRow.checkpoint_error.is_not(None))
        )
        .order_by(TrainingPointRow.id.desc())
        .limit(1)
    ).first()
    return _point(row) if row is not None else None


WAL_RESTART_FRAMES = 256
"""Log frames (pages, ~4 KB each) past which the learner's checkpoint makes the log start over."""
WAL_RESTART_WAIT_MS = 10
"""How long a RESTART may wait, in all, for the write lock and for reads to end (it holds every
writer back from when it has the lock until it is done)."""


def checkpoint_write_ahead_log(*, session: Session, wait_ms: int = WAL_RESTART_WAIT_MS) -> int:
    """SQLite: copy the write-ahead log into the database file; return the frames it held.

    A PASSIVE pass blocks no one, but under steady writes it never reaches the log's end, so the
    log never starts over: it grew to `wal_autocheckpoint` every 1-4 s under load, and then a
    serving process folded it inside a request (stalls of 10-30 ms, measured at 500-1,500
    moves/s). Past WAL_RESTART_FRAMES a RESTART pass follows. Holding the write lock, it copies
    what the PASSIVE pass left (the last milliseconds' writes), syncs the log and the database
    file, and waits for the reads still on the log to end; the waits, for the lock and for the
    reads, take at most `wait_ms` in all (a long read, a dashboard's, makes it give up until the
    next time). Then the next writer starts the log over (measured: the RESTART takes ~2 ms at
    500 moves/s)."""
    if session.get_bind().dialect.name != "sqlite":
        return 0
    _busy, frames, _copied = session.execute(text("PRAGMA wal_checkpoint(PASSIVE)")).one()
    if frames > WAL_RESTART_FRAMES:
        usual_wait = session.execute(text("PRAGMA busy_timeout")).scalar_one()
        session.execute(text(f"PRAGMA busy_timeout={int(wait_ms)}"))
        try:
            session.execute(text("PRAGMA wal_checkpoint(RESTART)")).one()
        finally:
            try:
                session.execute(text(f"PRAGMA busy_timeout={int(usual_wait)}"))
            except DBAPIError:  # a connection left with the short wait must not be reused
                session.connection().invalidate()
                raise
    return int(frames)


LEARNER_LEASE = "learner_lease"
"""Counter: who learns from this store (one learner at a time), and until when: the expiry in
epoch seconds in the high bits, the learner's 31-bit id in the low ones, so that one
compare-and-swap claims both."""


def claim_learner_lease(learner_id: int, *, session: Session, now: float, seconds: float) -> bool:
    """Hold (or renew) the store's learner lease for `seconds` from `now`, unless another
    learner holds it unexpired; True if this learner holds it now. Commits nothing itself."""
    held = session.get(CounterRow, LEARNER_LEASE)
    if held is not None:
        holder, until = held.value & (2**31 - 1), held.value >> 31
        if holder != learner_id and until > now:
            return False
    lease = (int(now + seconds) << 31) | learner_id
    if held is None:
        session.add(CounterRow(name=LEARNER_LEASE, value=lease))
        try:
            session.flush()
        except IntegrityError:  # another learner claimed it first
            return False
        return True
    swapped = session.execute(
        update(CounterRow)
        .where(CounterRow.name == LEARNER_LEASE, CounterRow.value == held.value)
        .values(value=lease)
        .execution_options(synchronize_session=False)
    )
    return bool(swapped.rowcount == 1)  # type: ignore[attr-defined]


def learner_lease_held(*, session: Session, now: float) -> bool:
    """Whether a learner holds the store's lease now (it claims it once it has caught up)."""
    held = session.get(CounterRow, LEARNER_LEASE)
    return held is not None and held.value >> 31 > now


def release_learner_lease(learner_id: int, *, session: Session) -> None:
    """Give the lease up (a clean stop), so that another learner can take over at once."""
    session.execute(
        update(CounterRow)
        .where(
            CounterRow.name == LEARNER_LEASE,
            CounterRow.value.op("&")(2**31 - 1) == learner_id,
        )
        .values(value=learner_id)
    )


# -- counters ---------------------------------------------------------------------------------


def get_counter(name: str, *, session: Session) -> int:
    row = session.get(CounterRow, name)
    return row.value if row is not None else 0


def set_counter(name: str, value: int, *, session: Session) -> None:
    """Set counter `name` (on the driver's cursor: the learner sets one every step)."""
    if _run(session, _SET_COUNTER, [{"counter": name, "counter_value": value}]).rowcount == 0:
        _run(session, _INSERT_COUNTER, [{"name": name, "value": value}])
    _forget_loaded_counter(name, session=session)


def _forget_loaded_counter(name: str, *, session: Session) -> None:
    """The driver's cursor bypasses the session: a counter it loaded before must be read again."""
    loaded = session.identity_map.get(session.identity_key(CounterRow, name))
    if loaded is not None:
        session.expire(loaded)


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
