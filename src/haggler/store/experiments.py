"""The repository of safe online learning: candidates, A/B tests, the rollback monitor's marks,
and the logged negotiations that off-policy evaluation and the monitor read.

Like `repository`, every function takes the session as a keyword-only argument and leaves
committing to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from haggler.core.transitions import LoggedEpisode
from haggler.store.base import Conflict, NotFound
from haggler.store.counters import (
    PROMOTIONS,
    SERVING_VERSION,
    add_to_counter,
    count_model_version,
    get_counter,
    set_counter,
)
from haggler.store.experiences import LOGGED_WITH_THIS_LAYOUT, fits_the_network
from haggler.store.snapshots import swap_serving
from haggler.store.tables import ABTestRow, DecisionRow, ModelSnapshotRow, NegotiationRow

KNOWN_GOOD_VERSION = "known_good_version"
"""Counter: the last version whose live results held up (what a rollback goes back to)."""
MONITOR_REFERENCE = "monitor_reference_up_to"
"""Counter: the rollback monitor's reference window is the negotiations up to this id."""
MONITOR_WATCH = "monitor_watch_from"
"""Counter: the rollback monitor judges the negotiations after this id."""

# -- candidates -------------------------------------------------------------------------------


def add_candidate(
    weights: bytes,
    *,
    session: Session,
    version: int,
    negotiations: int,
    status: str,
    reason: str,
    evaluation: dict[str, Any] | None,
    checkpoint: str | None = None,
    trained_from: datetime | None = None,
) -> None:
    """Store a candidate version judged by the gate ('candidate' or 'rejected'); it does not
    serve. Conflict if the version number is taken."""
    session.add(
        ModelSnapshotRow(
            version=version,
            created_at=datetime.now(UTC),
            source="training",
            checkpoint=checkpoint,
            negotiations=negotiations,
            trained_from=trained_from,
            weights=weights,
            status=status,
            reason=reason,
            evaluation=evaluation,
        )
    )
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"model version {version} exists already") from None
    count_model_version("training", status, 1, session=session)


def set_status(version: int, status: str, reason: str, *, session: Session) -> None:
    row = session.get(ModelSnapshotRow, version)
    if row is None:
        raise NotFound(f"no model version {version}")
    if row.status != status:
        count_model_version(row.source, row.status, -1, session=session)
        count_model_version(row.source, status, 1, session=session)
    row.status, row.reason = status, reason
    session.flush()


def promote(version: int, *, expected_serving: int, reason: str, session: Session) -> None:
    """Make the stored candidate `version` serve, if `expected_serving` still does
    (compare-and-swap); Conflict otherwise. NotFound if it has no weights."""
    row = session.get(ModelSnapshotRow, version)
    if row is None or row.weights is None:
        raise NotFound(f"model version {version} has no weights in the store")
    swap_serving(version, expected_serving=expected_serving, session=session)
    if row.status != "promoted":
        count_model_version(row.source, row.status, -1, session=session)
        count_model_version(row.source, "promoted", 1, session=session)
    if row.source == "training" and row.promoted_at is None:
        add_to_counter(PROMOTIONS, 1, session=session)
    row.status, row.reason, row.promoted_at = "promoted", reason, datetime.now(UTC)
    session.flush()


# -- A/B tests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredABTest:
    id: int
    champion_version: int
    challenger_version: int
    split: float
    status: str
    started_at: datetime
    ended_at: datetime | None
    decided_by: str | None
    reason: str | None
    verdict: dict[str, Any] | None


def _ab_test(row: ABTestRow) -> StoredABTest:
    return StoredABTest(
        row.id,
        row.champion_version,
        row.challenger_version,
        row.split,
        row.status,
        row.started_at,
        row.ended_at,
        row.decided_by,
        row.reason,
        row.verdict,
    )


def start_ab_test(
    champion: int, challenger: int, split: float, *, session: Session
) -> StoredABTest:
    """Start testing `challenger` against the serving `champion`; Conflict if a test runs."""
    if running_ab_test(session=session) is not None:
        raise Conflict("an A/B test is running already; stop it first")
    row = ABTestRow(
        champion_version=champion,
        challenger_version=challenger,
        split=split,
        status="running",
        started_at=datetime.now(UTC),
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # another process started one at the same moment
        raise Conflict("an A/B test is running already; stop it first") from None
    return _ab_test(row)


def running_ab_test(*, session: Session) -> StoredABTest | None:
    row = session.scalar(
        select(ABTestRow).where(ABTestRow.status == "running").order_by(ABTestRow.id.desc())
    )
    return _ab_test(row) if row is not None else None


def get_ab_test(test_id: int, *, session: Session) -> StoredABTest:
    row = session.get(ABTestRow, test_id)
    if row is None:
        raise NotFound(f"no A/B test {test_id}")
    return _ab_test(row)


def ab_tests(*, session: Session, limit: int) -> list[StoredABTest]:
    """The newest `limit` A/B tests, newest first."""
    rows = session.scalars(select(ABTestRow).order_by(ABTestRow.id.desc()).limit(limit))
    return [_ab_test(row) for row in rows]


def record_verdict(test_id: int, verdict: dict[str, Any], *, session: Session) -> None:
    """The latest look at a running test (its per-arm figures), for the API and dashboard."""
    session.execute(
        update(ABTestRow)
        .where(ABTestRow.id == test_id, ABTestRow.status == "running")
        .values(verdict=verdict)
    )


def end_ab_test(
    test_id: int,
    *,
    session: Session,
    status: str,
    decided_by: str,
    reason: str,
    verdict: dict[str, Any] | None = None,
) -> StoredABTest:
    """Close a running test with its outcome; Conflict if it is not running any more."""
    values: dict[str, Any] = {
        "status": status,
        "decided_by": decided_by,
        "reason": reason,
        "ended_at": datetime.now(UTC),
    }
    if verdict is not None:
        values["verdict"] = verdict
    ended = session.execute(
        update(ABTestRow)
        .where(ABTestRow.id == test_id, ABTestRow.status == "running")
        .values(values)
    )
    if ended.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"A/B test {test_id} is not running")
    return get_ab_test(test_id, session=session)


def assign_arm(
    negotiation_id: int, *, ab_test_id: int, arm: str, model_version: int, session: Session
) -> None:
    """Record the arm a new negotiation plays in, and the version that plays it."""
    session.execute(
        update(NegotiationRow)
        .where(NegotiationRow.id == negotiation_id)
        .values(ab_test_id=ab_test_id, arm=arm, model_version=model_version)
    )


# -- what was played: outcomes and logged decisions -------------------------------------------


@dataclass(frozen=True)
class FinishedOutcome:
    """One finished negotiation as the A/B test and the rollback monitor see it."""

    id: int
    model_version: int
    ab_test_id: int | None
    arm: str | None
    reward: float
    outcome: str
    list_price: float
    buyer_limit: float
    deal_price: float | None
    seller_kind: str
    seller_strategy: str | None
    seller_seed: int | None


def finished_outcomes(
    *,
    session: Session,
    limit: int,
    after_id: int = 0,
    up_to_id: int | None = None,
    ab_test_id: int | None = None,
    arm: str | None = None,
    champion_only: bool = False,
) -> list[FinishedOutcome]:
    """The newest `limit` finished negotiations with ids in (after_id, up_to_id], oldest first;
    only those of `ab_test_id` (and `arm`) if given; `champion_only` leaves out challenger
    negotiations (the rollback monitor judges what serves, not what is on trial)."""
    query = select(
        NegotiationRow.id,
        NegotiationRow.model_version,
        NegotiationRow.ab_test_id,
        NegotiationRow.arm,
        NegotiationRow.reward,
        NegotiationRow.outcome,
        NegotiationRow.list_price,
        NegotiationRow.buyer_limit,
        NegotiationRow.deal_price,
        NegotiationRow.seller_kind,
        NegotiationRow.seller_strategy,
        NegotiationRow.seller_seed,
    ).where(NegotiationRow.status == "finished", NegotiationRow.id > after_id)
    if up_to_id is not None:
        query = query.where(NegotiationRow.id <= up_to_id)
    if ab_test_id is not None:
        query = query.where(NegotiationRow.ab_test_id == ab_test_id)
    if arm is not None:
        query = query.where(NegotiationRow.arm == arm)
    if champion_only:
        query = query.where((NegotiationRow.arm.is_(None)) | (NegotiationRow.arm == "champion"))
    rows = session.execute(query.order_by(NegotiationRow.id.desc()).limit(limit)).all()
    return [
        FinishedOutcome(
            r.id,
            r.model_version,
            r.ab_test_id,
            r.arm,
            float(r.reward or 0.0),
            str(r.outcome),
            float(r.list_price),
            float(r.buyer_limit),
            float(r.deal_price) if r.deal_price is not None else None,
            r.seller_kind,
            r.seller_strategy,
            r.seller_seed,
        )
        for r in reversed(rows)
    ]


def logged_episodes(*, session: Session, limit: int) -> list[LoggedEpisode]:
    """The decisions of the newest `limit` finished negotiations, oldest first, as off-policy
    evaluation reads them: what each decision saw, did, with what probability, and earned.
    Negotiations logged with another observation layout (before an upgrade) are left out."""
    ids = list(
        session.scalars(
            select(NegotiationRow.id)
            .where(
                NegotiationRow.status == "finished",
                NegotiationRow.rounds > 0,
                LOGGED_WITH_THIS_LAYOUT,
            )
            .order_by(NegotiationRow.id.desc())
            .limit(limit)
        )
    )
    ids.reverse()
    decisions: dict[int, list[DecisionRow]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):  # bounded IN lists
        chunk = ids[start : start + 500]
        for decision in session.scalars(
            select(DecisionRow)
            .where(DecisionRow.negotiation_id.in_(chunk))
            .order_by(DecisionRow.negotiation_id, DecisionRow.round)
        ):
            decisions[decision.negotiation_id].append(decision)
    return [
        LoggedEpisode(
            observations=np.asarray([d.observation for d in rows], dtype=np.float32),
            action_masks=np.asarray([d.action_mask for d in rows], dtype=bool),
            moves=np.asarray([d.move for d in rows], dtype=np.int64),
            propensities=np.asarray([d.propensity for d in rows], dtype=np.float64),
            rewards=np.asarray([d.reward or 0.0 for d in rows], dtype=np.float64),
        )
        for rows in decisions.values()
        if rows and fits_the_network([d.observation for d in rows])
    ]


def latest_negotiation_id(*, session: Session) -> int:
    """The id of the newest negotiation, finished or not (0 if none)."""
    return int(session.scalar(select(func.max(NegotiationRow.id))) or 0)


def latest_finished_id(*, session: Session) -> int:
    """The id of the newest finished negotiation (0 if none)."""
    newest = session.scalar(
        select(NegotiationRow.id)
        .where(NegotiationRow.status == "finished")
        .order_by(NegotiationRow.id.desc())
        .limit(1)
    )
    return int(newest or 0)


# -- the rollback monitor's state -------------------------------------------------------------


@dataclass(frozen=True)
class MonitorMark:
    known_good: int | None
    """The last version whose live results held up (None until one has)."""
    reference_up_to: int
    """The reference window is the negotiations up to this id."""
    watch_from: int
    """The monitored negotiations are those after this id (later than the reference after a
    rollback, so the negotiations that caused it are left out of both)."""


def monitor_mark(*, session: Session) -> MonitorMark:
    known_good = get_counter(KNOWN_GOOD_VERSION, session=session)
    return MonitorMark(
        known_good or None,
        get_counter(MONITOR_REFERENCE, session=session),
        get_counter(MONITOR_WATCH, session=session),
    )


def set_monitor_mark(mark: MonitorMark, *, session: Session) -> None:
    if mark.known_good is not None:
        set_counter(KNOWN_GOOD_VERSION, mark.known_good, session=session)
    set_counter(MONITOR_REFERENCE, mark.reference_up_to, session=session)
    set_counter(MONITOR_WATCH, mark.watch_from, session=session)


def protected_versions(*, session: Session) -> list[int]:
    """Versions whose weights must stay in the store: serving, known good, under A/B test."""
    versions = [get_counter(SERVING_VERSION, session=session)]
    versions.append(get_counter(KNOWN_GOOD_VERSION, session=session))
    test = running_ab_test(session=session)
    if test is not None:
        versions += [test.champion_version, test.challenger_version]
    return [v for v in versions if v]
