"""Keeping the store healthy while it serves: folding SQLite's write-ahead log back, and the
lease that lets one learner run at a time."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import (
    Engine,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from haggler.store.database import JOURNAL_SIZE_LIMIT
from haggler.store.tables import (
    CounterRow,
)

WAL_RESTART_FRAMES = 256
"""Log frames (pages, ~4 KB each) past which the learner's checkpoint makes the log start over."""
WAL_RESTART_WAIT_MS = 10
"""How long a RESTART may wait, in all, for the write lock and for reads to end (it holds every
writer back from when it has the lock until it is done)."""


def checkpoint_write_ahead_log(
    *,
    session: Session,
    wait_ms: int = WAL_RESTART_WAIT_MS,
    restart_frames: int = WAL_RESTART_FRAMES,
    truncate: bool = False,
) -> int:
    """SQLite: copy the write-ahead log into the database file; return the frames it held.

    A PASSIVE pass blocks no one, but under steady writes it never reaches the log's end, so the
    log never starts over: it grew to `wal_autocheckpoint` every 1-4 s under load, and then a
    serving process folded it inside a request (stalls of 10-30 ms, measured at 500-1,500
    moves/s). Past `restart_frames` a RESTART pass follows. Holding the write lock, it copies
    what the PASSIVE pass left (the last milliseconds' writes), syncs the log and the database
    file, and waits for the reads still on the log to end; the waits, for the lock and for the
    reads, take at most `wait_ms` in all (a long read, a dashboard's, makes it give up until the
    next time). Then the next writer starts the log over (measured: the RESTART takes ~2 ms at
    500 moves/s). With `truncate`, a TRUNCATE pass instead also empties the log file."""
    if session.get_bind().dialect.name != "sqlite":
        return 0
    _busy, frames, _copied = session.execute(text("PRAGMA wal_checkpoint(PASSIVE)")).one()
    if frames > restart_frames:
        usual_wait = session.execute(text("PRAGMA busy_timeout")).scalar_one()
        session.execute(text(f"PRAGMA busy_timeout={int(wait_ms)}"))
        try:
            mode = "TRUNCATE" if truncate else "RESTART"
            session.execute(text(f"PRAGMA wal_checkpoint({mode})")).one()
        finally:
            try:
                session.execute(text(f"PRAGMA busy_timeout={int(usual_wait)}"))
            except DBAPIError:  # a connection left with the short wait must not be reused
                session.connection().invalidate()
                raise
    return int(frames)


WAL_FOLD_BYTES = JOURNAL_SIZE_LIMIT
"""A serving process folds the log itself once the log file is past this size (~1,000 pages) and
nothing has let the log start over for WAL_FOLD_STALE_SECONDS. (Not below JOURNAL_SIZE_LIMIT:
the file is cut back to that size when the log starts over, so past it, it is this log's size.)"""
WAL_FOLD_STALE_SECONDS = 1.5
"""The learner lets the log start over every second or so when it is past WAL_RESTART_FRAMES;
when it has not for this long, it is behind (or busy, or stopped)."""


class WriteAheadLogFold:
    """A serving process's fold of SQLite's write-ahead log, for when the learner does not fold
    it: the learner is behind (on a busy machine, minutes behind), judging a candidate,
    restarting, or not running (LEARNER=external). Then the log grew to the 40 MB automatic
    checkpoint, which a serving process ran inside a request, and the file stayed 40 MB. A
    serving process calls `due` twice a second (a `stat` and a 20-byte read) and, when it says
    so, `fold` off its event loop: a PASSIVE pass, then a TRUNCATE pass that empties the log
    file. While the learner folds, `due` stays false (the log starts over every second or so):
    a serving process folds only what the learner leaves. Never due on PostgreSQL."""

    def __init__(
        self,
        engine: Engine,
        *,
        above_bytes: int = WAL_FOLD_BYTES,
        stale_seconds: float = WAL_FOLD_STALE_SECONDS,
    ) -> None:
        self.engine = engine
        self.above_bytes = above_bytes
        self.stale_seconds = stale_seconds
        database = engine.url.database
        self.path = (
            Path(f"{database}-wal")
            if engine.dialect.name == "sqlite" and database and database != ":memory:"
            else None
        )
        """The log file (None: no SQLite file, nothing to fold)."""
        self._generation: bytes | None = None
        self._started_over_at = 0.0

    def due(self, now: float | None = None) -> bool:
        """Whether the log is past `above_bytes` and has not started over for `stale_seconds`."""
        if self.path is None:
            return False
        now = time.monotonic() if now is None else now
        try:
            with self.path.open("rb") as log_file:
                size = os.fstat(log_file.fileno()).st_size
                # The log's header: its checkpoint sequence number and first salt (bytes 12-19)
                # change each time the log starts over (sqlite.org/fileformat.html#walformat).
                generation = log_file.read(20)[12:]
        except FileNotFoundError:
            return False
        if generation != self._generation:
            self._generation, self._started_over_at = generation, now
        return size > self.above_bytes and now - self._started_over_at >= self.stale_seconds

    def fold(self) -> int:
        """Fold the log into the database and empty its file; return the frames it held."""
        with Session(self.engine) as session:
            return checkpoint_write_ahead_log(session=session, restart_frames=0, truncate=True)


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
