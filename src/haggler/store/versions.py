"""Model versions in the store as policy snapshots: the one that serves, the first one, publishing a
new one (restoring a checkpoint is `learning.checkpoints.restore`).

Every serving process acts with the version the store names as serving (a compare-and-swap
pointer), so a learner in another process, or a restore by the operator, reaches all of them.
A version number is never reused: a new one is always above every version ever stored or served.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from haggler.policy.snapshot import ModelFileError, PolicySnapshot
from haggler.store import base as store
from haggler.store import counters, experiments
from haggler.store import snapshots as snapshot_store

log = logging.getLogger("haggler.models")

KEEP_WEIGHTS = 20
"""Versions whose weights stay in the store (older ones keep only their log row)."""


def serving_snapshot(session: Session) -> PolicySnapshot | None:
    """The weights every serving process should act with now (None before the first start)."""
    version = snapshot_store.serving_version(session=session)
    if version is None:
        return None
    stored = snapshot_store.get_snapshot(version, session=session)
    if stored.weights is None:
        raise ModelFileError(f"the serving model version {version} has no weights in the store")
    return PolicySnapshot.from_bytes(stored.weights, version)


def ensure_serving(
    sessions: sessionmaker[Session], starter: Callable[[], PolicySnapshot]
) -> PolicySnapshot:
    """The store's serving version; on a new store, `starter()`'s weights (the model file, read
    only then) published as the first version."""
    with sessions() as session:
        replacing = None
        try:
            snapshot = serving_snapshot(session)
        except ModelFileError as error:
            # After an upgrade that changed the observations or moves, the stored weights no
            # longer fit: the model file (read only now) serves as a new version instead.
            log.warning("%s; publishing the model file as a new version to serve", error)
            replacing = snapshot_store.serving_version(session=session)
            snapshot = None
        if snapshot is None:
            highest = snapshot_store.highest_version(session=session)
            first = starter()
            # The model file's own version, unless the store has used that number for others.
            version = first.version if first.version > highest else highest + 1
            snapshot = dataclasses.replace(first, version=version)
            try:
                snapshot_store.publish_snapshot(
                    snapshot.to_bytes(),
                    session=session,
                    version=version,
                    expected_serving=replacing,
                    source="starter",
                    negotiations=counters.get_counter(
                        counters.NEGOTIATIONS_LEARNED, session=session
                    ),
                )
                session.commit()
            except store.Conflict:  # another process published first: serve its version
                session.rollback()
                return ensure_serving(sessions, starter)
    return snapshot


def publish(
    session: Session,
    snapshot: PolicySnapshot,
    *,
    expected_serving: int | None,
    source: str,
    negotiations: int,
    checkpoint: str | None = None,
    trained_from: datetime | None = None,
    reason: str | None = None,
    copy_of: int | None = None,
    forget_old: bool = True,
) -> None:
    """Store `snapshot` as a new model version and make it serve, in the caller's transaction;
    store.Conflict if its version is taken or the serving one is no longer `expected_serving`.
    With `forget_old`, old versions' weights are dropped in the same transaction (the learner,
    which publishes several times a second, drops them in a transaction of its own instead)."""
    snapshot_store.publish_snapshot(
        snapshot.to_bytes(),
        session=session,
        version=snapshot.version,
        expected_serving=expected_serving,
        source=source,
        negotiations=negotiations,
        checkpoint=checkpoint,
        trained_from=trained_from,
        reason=reason,
        copy_of=copy_of,
    )
    if forget_old:
        forget_old_weights(session)


def forget_old_weights(session: Session) -> None:
    """Keep the weights of the newest KEEP_WEIGHTS versions, and of every version that may be
    needed again: serving, known good, under A/B test."""
    snapshot_store.forget_old_weights(
        session=session, keep=KEEP_WEIGHTS, protect=experiments.protected_versions(session=session)
    )
