"""The learner's view of finished negotiations: its queue, their experiences, and marking them
learned."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from haggler.core.features import OBSERVATION_LAYOUT, OBSERVATION_SIZE
from haggler.core.transitions import Transitions, negotiation_transitions
from haggler.store import counters
from haggler.store.base import run_statement
from haggler.store.negotiations import NEGOTIATIONS
from haggler.store.tables import (
    DecisionRow,
    NegotiationRow,
)

LOGGED_WITH_THIS_LAYOUT = or_(
    NegotiationRow.observation_layout == OBSERVATION_LAYOUT,
    NegotiationRow.observation_layout.is_(None),
)
"""Negotiations whose decisions the network can read: logged with this observation layout, or
before layouts were recorded (up to 2026-12-05; `fits_the_network` checks those by size)."""


def fits_the_network(observations: Sequence[Sequence[float]]) -> bool:
    """Whether logged observations have the network's size (those logged before the layout was
    recorded are checked by this alone)."""
    return all(len(observation) == OBSERVATION_SIZE for observation in observations)


@dataclass(frozen=True)
class QueuedNegotiation:
    """A finished negotiation as the learner takes it in: only its experiences."""

    id: int
    finished_at: datetime | None
    experiences: Transitions | None
    """None for a negotiation without buyer decisions (the seller ended it at once), or with
    decisions logged with another observation layout."""


def _experiences_by_negotiation(
    negotiation_ids: Sequence[int], *, session: Session
) -> dict[int, Transitions]:
    """The experiences of finished negotiations from their decisions alone (measured: reading
    the turns and replaying them through the protocol took most of the learner's read time).
    The last decision of a finished negotiation is terminal (`transitions` says what follows it).
    Negotiations logged with another observation layout (before an upgrade) are kept in the
    store, but left out here: their observations do not mean what the network reads. Those
    logged before the layout was recorded (up to 2026-12-05) are checked by their size."""
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
            .join(NegotiationRow, NegotiationRow.id == DecisionRow.negotiation_id)
            .where(DecisionRow.negotiation_id.in_(chunk), LOGGED_WITH_THIS_LAYOUT)
            .order_by(DecisionRow.negotiation_id, DecisionRow.round)
        ):
            rows.setdefault(row.negotiation_id, []).append(row)
    return {
        negotiation_id: negotiation_transitions(
            np.asarray([d.observation for d in decisions], dtype=np.float32),  # (T, O)
            np.asarray([d.action_mask for d in decisions], dtype=bool),  # (T, N_MOVES)
            np.asarray([d.move for d in decisions], dtype=np.int64),
            np.asarray([d.reward or 0.0 for d in decisions], dtype=np.float32),
        )
        for negotiation_id, decisions in rows.items()
        if fits_the_network([d.observation for d in decisions])
    }


def learned_experiences(*, session: Session, limit: int) -> Transitions | None:
    """At least the newest `limit` experiences the learner has taken in (whole negotiations),
    oldest first, to rebuild its replay buffer after a restart; None if there are none."""
    ids: list[int] = []
    total = 0
    query = (
        select(NegotiationRow.id, NegotiationRow.rounds)
        .where(
            NegotiationRow.status == "finished",
            NegotiationRow.learned_at.is_not(None),
            LOGGED_WITH_THIS_LAYOUT,  # not to count rounds that will not be replayed
        )
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


def count_to_learn(*, session: Session) -> int:
    """How many finished negotiations wait in the learner's queue (its partial index)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(NegotiationRow)
            .where(NegotiationRow.status == "finished", NegotiationRow.learned_at.is_(None))
        )
        or 0
    )


_MARK_LEARNED = (
    update(NEGOTIATIONS)
    .where(NEGOTIATIONS.c.id == bindparam("learned_id"), NEGOTIATIONS.c.learned_at.is_(None))
    .values(learned_at=bindparam("learned_when"))
)


def mark_learned(
    negotiation_ids: Collection[int], *, session: Session, trained_on: Collection[int] = ()
) -> int | None:
    """Take negotiations off the learner's queue and count those of them in `trained_on` in
    NEGOTIATIONS_LEARNED, in the caller's transaction: one commit does both or neither. A
    negotiation already off the queue (a retry, or another learner) is neither taken off nor
    counted again. Returns the counter's new value (None: it did not change).

    On the driver's cursor, like all of the learner's step: on SQLite every serving process
    waits while it holds the write lock."""
    now = datetime.now(UTC)
    counted = set(trained_on)
    trained = [{"learned_id": i, "learned_when": now} for i in negotiation_ids if i in counted]
    kept = [{"learned_id": i, "learned_when": now} for i in negotiation_ids if i not in counted]
    if kept:
        run_statement(session, _MARK_LEARNED, kept)
    if not trained:
        return None
    newly_learned = run_statement(session, _MARK_LEARNED, trained).rowcount
    if newly_learned == 0:
        return None
    return counters.add_to_counter(counters.NEGOTIATIONS_LEARNED, newly_learned, session=session)
