"""Model versions in the store: their weights, the one that serves (a compare-and-swap pointer),
and the log of model changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from haggler.store.base import Conflict, Database, NotFound, run_statement
from haggler.store.counters import (
    COUNTERS,
    MODEL_VERSIONS,
    PROMOTIONS,
    SERVING_VERSION,
    SWAP_COUNTER,
    TRAINING_ENABLED,
    add_to_counter,
    count_model_version,
    forget_loaded_counter,
    get_counter,
    model_version_counts,
)
from haggler.store.tables import (
    ABTestRow,
    CounterRow,
    ModelSnapshotRow,
    NegotiationRow,
)


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


AB_TESTS = cast(Table, ABTestRow.__table__)
_INSERT_SNAPSHOT = insert(cast(Table, ModelSnapshotRow.__table__))
RUNNING_TEST = AB_TESTS.c.status == "running"  # at most one row: a partial unique index
_FOLLOWED = select(
    select(COUNTERS.c.value).where(COUNTERS.c.name == SERVING_VERSION).scalar_subquery(),
    select(COUNTERS.c.value).where(COUNTERS.c.name == TRAINING_ENABLED).scalar_subquery(),
    select(AB_TESTS.c.id).where(RUNNING_TEST).scalar_subquery(),
    select(AB_TESTS.c.challenger_version).where(RUNNING_TEST).scalar_subquery(),
)


def followed(*, session: Database) -> Followed:
    """The serving version, the training switch and the running A/B test, in one statement on
    the driver's cursor (a serving process asks ten times a second; through the ORM it cost
    ~2% of a core under load)."""
    row = run_statement(session, _FOLLOWED, [{}]).returned
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
        run_statement(session, _INSERT_SNAPSHOT, [row])
    except IntegrityError:
        raise Conflict(f"model version {version} exists already") from None
    count_model_version(source, "promoted", 1, session=session)
    if source == "training":
        add_to_counter(PROMOTIONS, 1, session=session)
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
    if run_statement(session, SWAP_COUNTER, [swap]).rowcount != 1:
        raise Conflict("the serving model changed meanwhile")
    forget_loaded_counter(SERVING_VERSION, session=session)


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
    return get_counter(PROMOTIONS, session=session)


def model_status_counts(*, session: Session) -> dict[tuple[str, str], int]:
    """How many model versions there are per (source, status)."""
    return model_version_counts(session=session)


def recount_versions(*, session: Session) -> None:
    """Set the counters of model versions from the versions in the store (a migration's)."""
    session.execute(
        COUNTERS.delete().where(
            COUNTERS.c.name.startswith(MODEL_VERSIONS, autoescape=True)
            | (COUNTERS.c.name == PROMOTIONS)
        )
    )
    rows = session.execute(
        select(ModelSnapshotRow.source, ModelSnapshotRow.status, func.count()).group_by(
            ModelSnapshotRow.source, ModelSnapshotRow.status
        )
    ).all()
    promoted = session.scalar(
        select(func.count())
        .select_from(ModelSnapshotRow)
        .where(ModelSnapshotRow.source == "training", ModelSnapshotRow.promoted_at.is_not(None))
    )
    values = [
        {"name": f"{MODEL_VERSIONS}{source}:{status}", "value": int(count)}
        for source, status, count in rows
    ]
    values.append({"name": PROMOTIONS, "value": int(promoted or 0)})
    session.execute(COUNTERS.insert(), values)


@dataclass(frozen=True)
class ServingChange:
    """A version that began to serve other than as an update of the learner that serves at once
    (PROMOTION=immediate, several a minute): what the dashboard's charts mark."""

    at: datetime
    kind: str
    """'restore' (a checkpoint's weights), 'rollback' (to the known good version's weights) or
    'promotion' (a stored version made to serve later: a candidate that passed the gate, the
    winner of an A/B test)."""
    version: int
    checkpoint: str | None
    copy_of: int | None
    reason: str | None


def serving_changes(*, session: Session, limit: int) -> list[ServingChange]:
    """The restores, rollbacks and promotions of the newest `limit` versions that had one,
    newest first. A version keeps the moment of its last promotion only."""
    row = ModelSnapshotRow
    # Published to serve at once (`publish_snapshot`), a version is promoted the moment it is
    # stored; a candidate (or an older version an A/B test brings back) is promoted later.
    columns = (
        row.version,
        row.source,
        row.created_at,
        row.promoted_at,
        row.checkpoint,
        row.copy_of,
        row.reason,
    )
    # Two reads of a few index entries each (restores and rollbacks; candidates promoted after
    # they were published), not a scan of every version the learner published.
    restored = session.execute(
        select(*columns)
        .where(row.source.in_(("restore", "rollback")))
        .order_by(row.created_at.desc())
        .limit(limit)
    ).all()
    promoted = session.execute(
        select(*columns)
        .where(row.promoted_at > row.created_at)
        .order_by(row.promoted_at.desc())
        .limit(limit)
    ).all()
    found = {r.version: r for r in (*restored, *promoted)}.values()
    changes = []
    for r in found:
        later = r.promoted_at is not None and r.promoted_at > r.created_at
        if r.source in ("restore", "rollback"):  # its reason, unless a promotion wrote over it
            reason = None if later else r.reason
            changes.append(
                ServingChange(r.created_at, r.source, r.version, r.checkpoint, r.copy_of, reason)
            )
        if later:
            changes.append(
                ServingChange(r.promoted_at, "promotion", r.version, None, None, r.reason)
            )
    return sorted(changes, key=lambda change: change.at, reverse=True)[:limit]
