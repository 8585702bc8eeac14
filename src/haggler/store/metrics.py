"""Figures over time for the dashboard and the metrics: finished negotiations, training points,
the summary."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import (
    Table,
    insert,
    select,
)
from sqlalchemy.orm import Session

from haggler.store.base import run_statement
from haggler.store.counters import model_version_counts
from haggler.store.tables import (
    NegotiationRow,
    TrainingPointRow,
)
from haggler.store.totals import Totals, open_count, totals

_INSERT_TRAINING_POINT = insert(cast(Table, TrainingPointRow.__table__))


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
        # Finished is what has an end; by this condition, not the status, the planner walks
        # the (finished_at, id) index backwards, reading only the rows it returns.
        .where(NegotiationRow.finished_at.is_not(None))
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


def model_change_counts(*, session: Session) -> dict[str, int]:
    """How many model versions each source ('starter', 'training', 'restore') published."""
    changes: dict[str, int] = {}
    for (source, _), count in model_version_counts(session=session).items():
        changes[source] = changes.get(source, 0) + count
    return changes


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
    pending: int = 0
    """Finished negotiations still waiting for the learner after this update."""
    merged: int = 0
    """Negotiations merged into this update (0: it trained on each one by one)."""
    samples_per_negotiation: float | None = None
    """Transitions the update's gradient steps sampled, per negotiation taken in."""
    delay_s: float | None = None
    """Median seconds from the end of its negotiations to the version this update published."""


def add_training_point(point: TrainingPoint, *, session: Session) -> None:
    run_statement(session, _INSERT_TRAINING_POINT, [dataclasses.asdict(point)])


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
        row.pending,
        row.merged,
        row.samples_per_negotiation,
        row.delay_s,
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


@dataclass(frozen=True)
class Summary:
    negotiations: int
    finished: int
    deals: int
    totals: Totals
    """Sums over every finished negotiation (reward, savings, rounds)."""


def summary(*, session: Session) -> Summary:
    """Totals over all finished negotiations, from the totals kept as each one finished."""
    kept = totals(session=session)
    return Summary(
        negotiations=kept.finished + open_count(session=session),
        finished=kept.finished,
        deals=kept.negotiations.get("deal", 0),
        totals=kept,
    )
