"""Filling a store fast for `bench.scale`: a pool of negotiations played for real once, then
copied in bulk.

The pool is played as the API plays a simulated seller's negotiation (the game loop against the
seller families, recorded by the store's own writes), exploring as a service that learns does.
A copy takes a pool negotiation's columns with a new id and a new end (executemany), and its
turns and decisions by INSERT ... SELECT inside the database (`1 + id % pool` names the copied
one); the totals of each batch are summed in Python and upserted, all in one transaction per
batch. Measured on SQLite with a pool of 2,000: ~7,000 negotiations a second (17.6 turns and
8.5 decisions each), on PostgreSQL ~3,200.

A service's history is more than its negotiations: the learner published a model version and
wrote a training point with each update. The fill adds one of each per `1 / updates_per_
negotiation` negotiations (without weights, as the store keeps only the newest versions'; their
training points carry no loss), the negotiations copied between two of them played by the
first, and ends by publishing the serving weights as the newest version.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import Connection, Engine, Table, bindparam, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from haggler.store import counters, totals
from haggler.store.base import run_statement
from haggler.store.negotiations import DECISIONS, NEGOTIATIONS, TURNS
from haggler.store.tables import ModelSnapshotRow, NegotiationRow, TrainingPointRow

SNAPSHOTS = cast(Table, ModelSnapshotRow.__table__)
POINTS = cast(Table, TrainingPointRow.__table__)


@dataclass(frozen=True)
class Pool:
    """The negotiations played for real (ids 1..size): what the fill copies."""

    rows: tuple[dict[str, Any], ...]
    """Each one's columns, without its id, times and model version."""
    durations: tuple[timedelta, ...]
    finished: tuple[totals.Finished, ...]

    @property
    def size(self) -> int:
        return len(self.rows)

    def template(self, negotiation_id: int) -> int:
        """The index in the pool of the negotiation that `negotiation_id` copies (its id is one
        more: `_TEMPLATE` in SQL)."""
        return negotiation_id % self.size


@dataclass(frozen=True)
class Accounts:
    """The accounts the pool's negotiations belong to, and their tokens."""

    purchaser_token: str
    seller_token: str


# Each new negotiation of the batch [lo, hi) gets its template's turns and decisions.
_NEW = NEGOTIATIONS.alias("new")
_TEMPLATE = 1 + _NEW.c.id % bindparam("pool")


def _copy(table: Table, columns: tuple[str, ...]) -> Any:
    source = table.alias("source")
    copied = [
        _NEW.c.model_version if name == "model_version" else source.c[name] for name in columns
    ]
    return insert(table).from_select(
        ["negotiation_id", *columns],
        select(_NEW.c.id, *copied)
        .join_from(_NEW, source, source.c.negotiation_id == _TEMPLATE)
        # Bounds the template side too: on PostgreSQL a hash join read every turn otherwise.
        .where(
            _NEW.c.id >= bindparam("lo"),
            _NEW.c.id < bindparam("hi"),
            source.c.negotiation_id <= bindparam("pool"),
        ),
    )


_COPY_TURNS = _copy(TURNS, ("seq", "party", "move", "price", "round"))
_COPY_DECISIONS = _copy(
    DECISIONS,
    ("round", "observation", "action_mask", "move", "propensity", "model_version", "reward"),
)
_INSERT_NEGOTIATIONS = insert(NEGOTIATIONS)
_INSERT_VERSIONS = insert(SNAPSHOTS)
_INSERT_POINTS = insert(POINTS)
_KEPT_APART = ("id", "created_at", "finished_at", "learned_at", "model_version")


def fill(
    engine: Engine,
    pool: Pool,
    *,
    first_id: int,
    count: int,
    ends: Callable[[int], datetime],
    learned: bool,
    batch: int,
    updates_per_negotiation: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Copy `count` negotiations of the pool into the store with the ids from `first_id` on,
    one transaction per `batch`: negotiation `i` ends at `ends(i)`, marked learned (or left on
    the learner's queue). With `updates_per_negotiation`, the learner's updates of that
    history too (see the module). `progress` hears how many are copied after each batch."""
    with Session(engine) as session:
        serving = _serving_version(session)
    versions: dict[int, int] = {}
    """Model version of each group of copies: numbered past the store's newest as each group
    first appears (a service on the store may publish one meanwhile: a rollback, a last update)."""
    for lo in range(first_id, first_id + count, batch):
        hi = min(lo + batch, first_id + count)
        for attempt in range(3):
            try:
                with engine.begin() as connection:
                    versions = _copy_batch(
                        connection,
                        pool,
                        range(lo, hi),
                        ends=ends,
                        learned=learned,
                        versions=versions,
                        group=lambda i: math.floor((i - first_id) * updates_per_negotiation),
                        apart=round(1 / updates_per_negotiation) if updates_per_negotiation else 0,
                        serving=None if updates_per_negotiation else serving,
                    )
                break
            except IntegrityError:  # a version published meanwhile took a number: renumber
                if attempt == 2:
                    raise
        if progress is not None:
            progress(hi - first_id)
    if engine.dialect.name == "postgresql":  # the ids were given: move the sequence past them
        with engine.begin() as connection:
            connection.execute(
                text("SELECT setval(pg_get_serial_sequence('negotiations', 'id'), :top)"),
                {"top": first_id + count - 1},
            )
    if versions:
        _serve_newest(engine)


def _copy_batch(
    connection: Connection,
    pool: Pool,
    ids: range,
    *,
    ends: Callable[[int], datetime],
    learned: bool,
    versions: dict[int, int],
    group: Callable[[int], int],
    apart: int,
    serving: int | None,
) -> dict[int, int]:
    """Copy negotiations `ids` (with their turns, decisions and totals) in the caller's
    transaction: played by `serving`, or (None) by their group's version, added with its
    training point if new. Returns the versions of the groups."""
    before = versions
    if serving is None:
        versions = dict(versions)
        stored = connection.scalar(select(func.max(ModelSnapshotRow.version))) or 0
        newest = max(stored, *versions.values(), 0)
        for i in ids:
            if group(i) not in versions:
                newest += 1
                versions[group(i)] = newest
    rows = []
    for i in ids:
        template = pool.template(i)
        end = ends(i)
        rows.append(
            {
                **pool.rows[template],
                "id": i,
                "created_at": end - pool.durations[template],
                "finished_at": end,
                "learned_at": end + timedelta(seconds=1) if learned else None,
                "model_version": serving if serving is not None else versions[group(i)],
            }
        )
    bounds = {"pool": pool.size, "lo": ids.start, "hi": ids.stop}
    run_statement(connection, _INSERT_NEGOTIATIONS, rows)
    connection.execute(_COPY_TURNS, bounds)
    connection.execute(_COPY_DECISIONS, bounds)
    totals.add_finished_many(
        (
            dataclasses.replace(
                pool.finished[pool.template(row["id"])],
                negotiation_id=row["id"],
                model_version=row["model_version"],
            )
            for row in rows
        ),
        session=connection,
    )
    added = set(versions.values()) - set(before.values())
    _add_updates(connection, [row for row in rows if row["model_version"] in added], apart=apart)
    return versions


def _add_updates(connection: Connection, negotiations: list[dict[str, Any]], *, apart: int) -> None:
    """A model version and a training point for each new version the `negotiations` name,
    published just before the first of them began, `apart` negotiations after the one before.
    As the learner does, an update that took the count of negotiations past a multiple of
    SAVE_INTERVAL (10) saved a checkpoint, named in its point (`/api/training` reads the
    newest)."""
    from haggler.learning.checkpoints import checkpoint_name

    first: dict[int, dict[str, Any]] = {}
    for row in negotiations:
        first.setdefault(row["model_version"], row)
    if not first:
        return
    published = {v: row["created_at"] - timedelta(seconds=1) for v, row in first.items()}
    run_statement(
        connection,
        _INSERT_VERSIONS,
        [
            {
                "version": v,
                "created_at": published[v],
                "source": "training",
                "checkpoint": None,
                "negotiations": row["id"],
                "trained_from": published[v] - timedelta(seconds=1),
                "weights": None,
                "status": "promoted",
                "promoted_at": published[v],
            }
            for v, row in first.items()
        ],
    )
    run_statement(
        connection,
        _INSERT_POINTS,
        [
            {
                "at": published[v],
                "negotiations": row["id"],
                "loss": None,
                "replay_buffer_size": 0,
                "epsilon": 0.1,
                "model_version": v,
                "checkpoint": checkpoint_name(row["id"], published[v])
                if row["id"] // 10 > (row["id"] - apart) // 10
                else None,
                "pending": 0,
                "merged": 0,
            }
            for v, row in first.items()
        ],
    )
    # Counted as `snapshots.publish_snapshot` counts a version it publishes, in its transaction.
    with Session(bind=connection) as session:
        counters.count_model_version("training", "promoted", len(first), session=session)
        counters.add_to_counter(counters.PROMOTIONS, len(first), session=session)


def _serving_version(session: Session) -> int:
    from haggler.store import snapshots

    serving = snapshots.serving_version(session=session)
    if serving is None:
        raise RuntimeError("no model serves in the store yet")
    return serving


def _highest_version(session: Session) -> int:
    return int(session.scalar(select(func.max(ModelSnapshotRow.version))) or 0)


def _serve_newest(engine: Engine) -> None:
    """Publish the serving weights as the version after the newest: the history's last update
    is what serves, as after any learner's."""
    from haggler.store import versions

    with Session(engine) as session:
        snapshot = versions.serving_snapshot(session)
        assert snapshot is not None
        versions.publish(
            session,
            dataclasses.replace(snapshot, version=_highest_version(session) + 1),
            expected_serving=snapshot.version,
            source="training",
            negotiations=0,
        )
        session.commit()


def read_pool(sessions: sessionmaker[Session], size: int) -> Pool:
    """The pool's negotiations (ids 1..size, finished) as the fill copies them."""
    with sessions() as session:
        stored = [
            dict(row._mapping)
            for row in session.execute(
                select(NEGOTIATIONS).where(NEGOTIATIONS.c.id <= size).order_by(NEGOTIATIONS.c.id)
            )
        ]
    if [row["id"] for row in stored] != list(range(1, size + 1)):
        raise RuntimeError("the pool's negotiations are not the store's first ids")
    return Pool(
        rows=tuple({k: v for k, v in row.items() if k not in _KEPT_APART} for row in stored),
        durations=tuple(row["finished_at"] - row["created_at"] for row in stored),
        finished=tuple(
            totals.Finished(
                row["id"],
                row["model_version"],
                row["outcome"] or "unknown",
                row["reward"],
                row["rounds"],
                row["list_price"],
                row["deal_price"],
                row["quantity"],
            )
            for row in stored
        ),
    )


_POOL_TIMES = (
    update(NEGOTIATIONS)
    .where(NEGOTIATIONS.c.id == bindparam("pool_id"))
    .values(
        created_at=bindparam("new_created"),
        finished_at=bindparam("new_finished"),
        learned_at=bindparam("new_learned"),
    )
)


def play_pool(
    engine: Engine, model: Path, *, size: int, seed: int, ends: Callable[[int], datetime]
) -> tuple[Pool, Accounts]:
    """A new store with a purchaser and a seller account, and `size` negotiations played for
    real as the oldest of its history, learned from."""
    from haggler.config import Settings
    from haggler.core.negotiation import Terms, money, open_negotiation
    from haggler.core.sellers import ALL_STRATEGIES, make_seller
    from haggler.learning.dqn import BuyerAgent
    from haggler.serving import turns
    from haggler.serving.service import NegotiationService
    from haggler.store import accounts, versions
    from haggler.store import catalogue as catalogue_store
    from haggler.store import negotiations as negotiation_store
    from haggler.store.database import migrate, session_factory

    migrate(engine)
    sessions = session_factory(engine)
    with sessions() as session:
        if session.scalar(select(func.count()).select_from(NegotiationRow)):
            raise ValueError("the store holds negotiations already: give a new SQLite file")
        catalogue_store.seed_catalogue(session=session)
        accounts.create_account("bench-purchaser", accounts.Role.PURCHASER, session=session)
        accounts.create_account(
            "bench-seller", accounts.Role.SELLER, session=session, purchaser="bench-purchaser"
        )
        _, purchaser_token = accounts.issue_token("bench-purchaser", "bench", session=session)
        _, seller_token = accounts.issue_token("bench-seller", "bench", session=session)
        purchaser = accounts.get_account("bench-purchaser", session=session).id
        seller = accounts.get_account("bench-seller", session=session).id
        products = catalogue_store.list_products(session=session)
        session.commit()
    snapshot = versions.ensure_serving(sessions, lambda: BuyerAgent.from_file(model).snapshot)
    # Training on (exploring, each propensity logged), the learner elsewhere: the moves and
    # decisions of a service that learns.
    service = NegotiationService(
        model,
        enable_training=True,
        settings=Settings(_env_file=None),
        seed=seed,
        learn_inline=False,
        snapshot=snapshot,
    )
    rng = np.random.default_rng(seed)
    with sessions() as session:
        for i in range(size):
            product = products[int(rng.integers(len(products)))]
            strategy = ALL_STRATEGIES[int(rng.integers(len(ALL_STRATEGIES)))]
            list_price = product.product.list_price
            terms = Terms(
                list_price,
                money(list_price * rng.uniform(0.55, 1.0)),
                max_rounds=10,
                quantity=int(rng.integers(1, 6)),
            )
            seller_seed = int(rng.integers(2**62))
            persona = make_seller(strategy, list_price, np.random.default_rng(seller_seed))
            opened = open_negotiation(terms, persona.opening_ask())
            # A tenth are a seller account's: its list has pages to read.
            info = negotiation_store.SellerInfo(
                "simulated", strategy, seller_seed, account_id=seller if i % 10 == 0 else None
            )
            negotiation_id = negotiation_store.create_negotiation(
                opened,
                session=session,
                product_id=product.id,
                seller=info,
                model_version=snapshot.version,
                purchaser_id=purchaser,
            )
            turns.play_simulated(
                service, negotiation_id, opened, persona, version=snapshot.version, session=session
            )
            if i % 200 == 199:
                session.commit()
        session.commit()
    pool = read_pool(sessions, size)
    with engine.begin() as connection:
        run_statement(
            connection,
            _POOL_TIMES,
            [
                {
                    "pool_id": i + 1,
                    "new_created": ends(i + 1) - pool.durations[i],
                    "new_finished": ends(i + 1),
                    "new_learned": ends(i + 1) + timedelta(seconds=1),
                }
                for i in range(pool.size)
            ],
        )
    return pool, Accounts(purchaser_token, seller_token)


def history_clock(top: int, days: float, now: datetime) -> Callable[[int], datetime]:
    """When negotiation `i` of a history of `top` ended: evenly over `days` up to `now` (ids
    past `top` end at `now`)."""
    spacing = timedelta(days=days) / top
    return lambda i: now - max(0, top - i) * spacing


def newest_id(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.max(NegotiationRow.id))) or 0)
