"""Totals over every finished negotiation, kept up to date as each one finishes: the summary,
the Prometheus counts and the event streams read these few rows instead of scanning history.

Measured before them, on SQLite: `GET /api/summary` took 0.05 s at 10k stored negotiations and
0.49 s at 104k, `/metrics` 0.012 s and 0.106 s. A finish adds its figures to two rows in its own
transaction (an upsert each), so the totals and the negotiations never disagree after a crash.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Connection, Insert, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from haggler.core.negotiation import Outcome
from haggler.store.base import Database, run_statement
from haggler.store.tables import NegotiationRow, OutcomeTotalRow, VersionOutcomeRow

SHARDS = 8
"""Rows per outcome, chosen by the negotiation's id: several serving processes on PostgreSQL
finish negotiations at once, and one row per outcome would make each wait for the other's
commit (a row lock held to the end of the transaction)."""

OUTCOME_TOTALS = cast(Table, OutcomeTotalRow.__table__)
VERSION_OUTCOMES = cast(Table, VersionOutcomeRow.__table__)
_SUMS = (
    "negotiations",
    "rewarded",
    "reward_sum",
    "reward_squares",
    "savings_pct_sum",
    "savings_pct_squares",
    "savings_total",
    "rounds_sum",
    "rounds_squares",
)


@functools.cache
def _upsert(dialect: str, table: Table, keys: tuple[str, ...], sums: tuple[str, ...]) -> Insert:
    """INSERT of a row that adds its `sums` to the row with the same `keys` if there is one:
    SQLite and PostgreSQL both have ON CONFLICT DO UPDATE, in the same words."""
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: table.c[name] + statement.excluded[name] for name in sums},
    )


@dataclass(frozen=True)
class Finished:
    """What one finished negotiation adds to the totals."""

    negotiation_id: int
    model_version: int
    outcome: str
    reward: float | None
    rounds: int
    list_price: Decimal
    deal_price: Decimal | None
    quantity: int


def _row(finished: Finished) -> dict[str, Any]:
    """The row of sums one negotiation adds to its outcome's totals."""
    savings_pct, savings = 0.0, Decimal("0.00")
    if finished.deal_price is not None:
        saved = finished.list_price - finished.deal_price
        savings_pct = float(100 * saved / finished.list_price)
        savings = saved * finished.quantity
    reward = finished.reward if finished.reward is not None else 0.0
    return {
        "shard": finished.negotiation_id % SHARDS,
        "outcome": finished.outcome,
        "negotiations": 1,
        "rewarded": int(finished.reward is not None),
        "reward_sum": reward,
        "reward_squares": reward * reward,
        "deals_priced": int(finished.deal_price is not None),
        "savings_pct_sum": savings_pct,
        "savings_pct_squares": savings_pct * savings_pct,
        "savings_total": savings,
        "rounds_sum": finished.rounds,
        "rounds_squares": finished.rounds * finished.rounds,
    }


def add_finished(finished: Finished, *, session: Database) -> None:
    """Count one negotiation that has just finished, in the caller's transaction."""
    bind = session if isinstance(session, Connection) else session.get_bind()
    dialect = bind.dialect.name
    run_statement(
        session,
        _upsert(dialect, OUTCOME_TOTALS, ("shard", "outcome"), (*_SUMS, "deals_priced")),
        [_row(finished)],
    )
    run_statement(
        session,
        _upsert(dialect, VERSION_OUTCOMES, ("model_version", "outcome"), ("negotiations",)),
        [
            {
                "model_version": finished.model_version,
                "outcome": finished.outcome,
                "negotiations": 1,
            }
        ],
    )


def add_finished_many(finished: Iterable[Finished], *, session: Database) -> None:
    """Count many negotiations that finished (a bulk load), in the caller's transaction: their
    figures summed in Python first, then one upsert per row of totals they touch. Measured on
    SQLite: 0.05 s for 5,000 negotiations, a tenth of what `rebuild` takes to recount 100,000
    (2.2 s), which grows with the store."""
    sums: dict[tuple[int, str], dict[str, Any]] = {}
    by_version: dict[tuple[int, str], int] = {}
    for one in finished:
        row = _row(one)
        key = (row["shard"], row["outcome"])
        if key in sums:
            for name in (*_SUMS, "deals_priced"):
                sums[key][name] += row[name]
        else:
            sums[key] = row
        version = (one.model_version, one.outcome)
        by_version[version] = by_version.get(version, 0) + 1
    if not sums:
        return
    bind = session if isinstance(session, Connection) else session.get_bind()
    dialect = bind.dialect.name
    run_statement(
        session,
        _upsert(dialect, OUTCOME_TOTALS, ("shard", "outcome"), (*_SUMS, "deals_priced")),
        list(sums.values()),
    )
    run_statement(
        session,
        _upsert(dialect, VERSION_OUTCOMES, ("model_version", "outcome"), ("negotiations",)),
        [
            {"model_version": version, "outcome": outcome, "negotiations": count}
            for (version, outcome), count in by_version.items()
        ],
    )


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squares of one figure: its mean and spread without the values."""

    count: int = 0
    total: float = 0.0
    squares: float = 0.0

    def __add__(self, other: Moments) -> Moments:
        return Moments(
            self.count + other.count, self.total + other.total, self.squares + other.squares
        )


@dataclass(frozen=True)
class Totals:
    """Every finished negotiation, summed: per outcome, and over all."""

    negotiations: dict[str, int] = field(default_factory=dict)
    """Finished negotiations by outcome."""
    reward: Moments = Moments()
    savings_pct: Moments = Moments()
    """Saving against list price in percent, over the deals."""
    savings_total: Decimal = Decimal("0.00")
    rounds: Moments = Moments()

    @property
    def finished(self) -> int:
        return sum(self.negotiations.values())


def totals(*, session: Session) -> Totals:
    """The totals over every finished negotiation (a few rows, whatever the history)."""
    rows = session.execute(
        select(
            OutcomeTotalRow.outcome,
            *(func.sum(OUTCOME_TOTALS.c[name]) for name in (*_SUMS, "deals_priced")),
        ).group_by(OutcomeTotalRow.outcome)
    ).all()
    negotiations: dict[str, int] = {}
    reward = savings_pct = rounds = Moments()
    savings_total = Decimal("0.00")
    for outcome, count, rewarded, r_sum, r_sq, pct_sum, pct_sq, saved, n_sum, n_sq, priced in rows:
        negotiations[str(outcome)] = int(count)
        reward += Moments(int(rewarded), float(r_sum), float(r_sq))
        savings_pct += Moments(int(priced), float(pct_sum), float(pct_sq))
        savings_total += Decimal(saved).quantize(Decimal("0.01"))
        rounds += Moments(int(count), float(n_sum), float(n_sq))
    return Totals(negotiations, reward, savings_pct, savings_total, rounds)


def open_count(*, session: Session) -> int:
    """Negotiations in progress (the status index: as many rows as are open)."""
    return (
        session.scalar(
            select(func.count()).select_from(NegotiationRow).where(NegotiationRow.status == "open")
        )
        or 0
    )


def version_counts(*, session: Session, newest: int) -> list[tuple[str, str, int]]:
    """(outcome or 'open', model version, count) for the `newest` model versions that played
    negotiations, and every older one together as version 'older': a bounded set of series,
    however many versions training published."""
    # The newest rows of the key's order (a version has a row per outcome, at most four), read
    # back from the end of the index: as many rows as the answer needs, not one per version.
    rows = session.scalars(
        select(VersionOutcomeRow.model_version)
        .order_by(VersionOutcomeRow.model_version.desc())
        .limit(newest * len(Outcome))
    )
    versions = sorted(set(rows), reverse=True)[:newest]
    counts: list[tuple[str, str, int]] = []
    recent: dict[str, int] = {}
    if versions:
        for outcome, version, count in session.execute(
            select(
                VersionOutcomeRow.outcome,
                VersionOutcomeRow.model_version,
                VersionOutcomeRow.negotiations,
            ).where(VersionOutcomeRow.model_version >= versions[-1])
        ):
            counts.append((str(outcome), str(version), int(count)))
            recent[outcome] = recent.get(outcome, 0) + int(count)
    for outcome, count in totals(session=session).negotiations.items():
        if count > recent.get(outcome, 0):
            counts.append((outcome, "older", count - recent.get(outcome, 0)))
    for version, count in session.execute(
        select(NegotiationRow.model_version, func.count())
        .where(NegotiationRow.status == "open")
        .group_by(NegotiationRow.model_version)
    ):
        counts.append(("open", str(version), int(count)))
    return counts


def rebuild(*, session: Session) -> None:
    """Recount the totals from the negotiations in the store (the first fill, by a migration)."""
    session.execute(OUTCOME_TOTALS.delete())
    session.execute(VERSION_OUTCOMES.delete())
    query = select(
        NegotiationRow.id,
        NegotiationRow.model_version,
        NegotiationRow.outcome,
        NegotiationRow.reward,
        NegotiationRow.rounds,
        NegotiationRow.list_price,
        NegotiationRow.deal_price,
        NegotiationRow.quantity,
    ).where(NegotiationRow.status == "finished")
    # Streamed: add_finished_many sums every row before it writes.
    with session.execute(query.execution_options(yield_per=5000)) as finished:
        add_finished_many((Finished(*cast(Any, row)) for row in finished), session=session)
