"""Keeping the store healthy while it serves: folding SQLite's write-ahead log back, and the
lease that lets one learner run at a time."""

from __future__ import annotations

from sqlalchemy import (
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from haggler.store.tables import (
    CounterRow,
)

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
