"""Figures over time for the dashboard and the metrics: finished negotiations, training points,
the summary."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import (
    Table,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Session

from haggler.store.base import run_statement
from haggler.store.tables import (
    ModelSnapshotRow,
    NegotiationRow,
    TrainingPointRow,
)

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
