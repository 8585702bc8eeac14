"""Old finished negotiations moved out of the live store into an archive file, and back.

An archive is gzip-compressed JSON lines, one negotiation a line with its moves and the agent's
decisions, every column as stored. Archiving never takes what something live still reads
(`protected_from`): the learner's queue and negotiations in progress, the running A/B test, the
newest negotiations the promotion gate replays, the rollback monitor's reference window and
the experiences a restarted learner reloads into its replay buffer. The totals (the summary, the
Prometheus counts) keep counting archived negotiations: they are what the service did.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from sqlalchemy import DateTime, Numeric, Table, func, select
from sqlalchemy.orm import Session

from haggler.files import atomic_writer
from haggler.store.experiments import monitor_mark, running_ab_test
from haggler.store.tables import DecisionRow, MoveReplyRow, NegotiationRow, ProductRow, TurnRow

NEGOTIATIONS = cast(Table, NegotiationRow.__table__)
TURNS = cast(Table, TurnRow.__table__)
DECISIONS = cast(Table, DecisionRow.__table__)
REPLIES = cast(Table, MoveReplyRow.__table__)
CHUNK = 1000
"""Negotiations read, written or removed at a time (bounded IN lists and transactions)."""
FORMAT = "haggler-archive-1"
ADDED_LATER: dict[str, set[str]] = {"negotiations": {"observation_layout"}}
"""Columns an archive written before their migration lacks (0008's), per table."""


class ArchiveError(ValueError):
    """A file that is not an archive, or one whose negotiations this store cannot take."""


@dataclass(frozen=True)
class Needs:
    """How much recent history the live parts read (from the settings and the model)."""

    replay_transitions: int
    """Experiences a restarted learner reloads (the replay buffer's size)."""
    gate_negotiations: int
    """Newest finished negotiations the promotion gate replays."""
    reference_negotiations: int
    """Finished negotiations in the rollback monitor's reference window."""


@dataclass(frozen=True)
class Protection:
    """The lowest id that must stay in the store, and what needs it."""

    from_id: int
    reason: str


def protected_from(needs: Needs, *, session: Session) -> Protection:
    """The oldest negotiation something live still reads: it and every later one stay."""
    newest = session.scalar(select(func.max(NegotiationRow.id))) or 0
    found = [Protection(newest + 1, "nothing")]

    def finished_ids() -> Any:
        return select(NegotiationRow.id).where(NegotiationRow.status == "finished")

    oldest_open = session.scalar(
        select(func.min(NegotiationRow.id)).where(NegotiationRow.status == "open")
    )
    if oldest_open is not None:
        found.append(Protection(oldest_open, "a negotiation in progress"))
    oldest_queued = session.scalar(
        select(func.min(NegotiationRow.id)).where(
            NegotiationRow.status == "finished", NegotiationRow.learned_at.is_(None)
        )
    )
    if oldest_queued is not None:
        found.append(Protection(oldest_queued, "the learner's queue"))
    test = running_ab_test(session=session)
    if test is not None:
        first = session.scalar(
            select(func.min(NegotiationRow.id)).where(NegotiationRow.ab_test_id == test.id)
        )
        if first is not None:
            found.append(Protection(first, f"the running A/B test {test.id}"))
    gate = session.scalar(
        finished_ids()
        .order_by(NegotiationRow.id.desc())
        .offset(max(needs.gate_negotiations - 1, 0))
        .limit(1)
    )
    if gate is not None:
        found.append(Protection(gate, "the promotion gate's logged negotiations"))
    mark = monitor_mark(session=session)
    reference = session.scalar(
        finished_ids()
        .where(NegotiationRow.id <= mark.reference_up_to)
        .order_by(NegotiationRow.id.desc())
        .offset(max(needs.reference_negotiations - 1, 0))
        .limit(1)
    )
    if reference is not None:
        found.append(Protection(reference, "the rollback monitor's reference window"))
    replayed = _replay_start(needs.replay_transitions, session=session)
    if replayed is not None:
        found.append(Protection(replayed, "the replay buffer a restarted learner reloads"))
    return min(found, key=lambda p: p.from_id)


def _replay_start(transitions: int, *, session: Session) -> int | None:
    """The oldest negotiation among the newest ones whose decisions fill `transitions`."""
    query = (
        select(NegotiationRow.id, NegotiationRow.rounds)
        .where(NegotiationRow.status == "finished", NegotiationRow.learned_at.is_not(None))
        .order_by(NegotiationRow.id.desc())
    )
    total, oldest = 0, None
    with session.execute(query.execution_options(yield_per=5000)) as rows:  # closes the cursor
        for row in rows:
            oldest = row.id
            total += row.rounds
            if total >= transitions:
                break
    return oldest


@dataclass(frozen=True)
class Archived:
    negotiations: int
    first_id: int | None
    last_id: int | None
    protection: Protection
    path: Path


def archive(path: Path, *, session: Session, finished_before: datetime, needs: Needs) -> Archived:
    """Write the finished negotiations that ended before `finished_before` (and that nothing
    live reads) to a new archive at `path`, then remove them from the store. The file is
    whole and on disk before anything is removed; a removal cut short leaves negotiations that
    are in the file and still in the store, which a later `load` skips."""
    if path.exists():
        raise ArchiveError(f"{path} exists already: archive to a new file")
    protection = protected_from(needs, session=session)
    ids = list(
        session.scalars(
            select(NegotiationRow.id)
            .where(
                NegotiationRow.status == "finished",
                NegotiationRow.finished_at < finished_before,
                NegotiationRow.id < protection.from_id,
            )
            .order_by(NegotiationRow.id)
        )
    )
    _write(path, _records(ids, session=session))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for table in (DECISIONS, TURNS, REPLIES):
            session.execute(table.delete().where(table.c.negotiation_id.in_(chunk)))
        session.execute(NEGOTIATIONS.delete().where(NEGOTIATIONS.c.id.in_(chunk)))
        session.commit()
    return Archived(len(ids), ids[0] if ids else None, ids[-1] if ids else None, protection, path)


def _records(ids: Sequence[int], *, session: Session) -> Iterator[dict[str, Any]]:
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        turns: dict[int, list[dict[str, Any]]] = {i: [] for i in chunk}
        decisions: dict[int, list[dict[str, Any]]] = {i: [] for i in chunk}
        for row in session.execute(
            select(TURNS).where(TURNS.c.negotiation_id.in_(chunk)).order_by(TURNS.c.seq)
        ).mappings():
            turns[row["negotiation_id"]].append(_plain(TURNS, row))
        for row in session.execute(
            select(DECISIONS)
            .where(DECISIONS.c.negotiation_id.in_(chunk))
            .order_by(DECISIONS.c.round)
        ).mappings():
            decisions[row["negotiation_id"]].append(_plain(DECISIONS, row))
        for row in session.execute(
            select(NEGOTIATIONS).where(NEGOTIATIONS.c.id.in_(chunk)).order_by(NEGOTIATIONS.c.id)
        ).mappings():
            yield {
                "negotiation": _plain(NEGOTIATIONS, row),
                "turns": turns[row["id"]],
                "decisions": decisions[row["id"]],
            }


def _plain(table: Table, row: Any) -> dict[str, Any]:
    """A row as JSON can hold it: exact decimals as strings, times in ISO 8601."""
    plain = {}
    for column in table.c:
        value = row[column.name]
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        plain[column.name] = value
    return plain


def _typed(table: Table, plain: dict[str, Any]) -> dict[str, Any]:
    """A row read back from JSON, with its decimals and times as the columns take them. A column
    added to the store after the archive was written (`ADDED_LATER`) is empty."""
    columns = {column.name for column in table.c}
    if set(plain) - columns or columns - set(plain) - ADDED_LATER.get(table.name, set()):
        raise ArchiveError(f"a {table.name} row of the archive has other columns than the store's")
    typed = {}
    for column in table.c:
        value = plain.get(column.name)
        if value is not None and isinstance(column.type, Numeric) and column.type.asdecimal:
            value = Decimal(value)
        elif value is not None and isinstance(column.type, DateTime):
            value = datetime.fromisoformat(value)
        typed[column.name] = value
    return typed


def _write(path: Path, records: Iterator[dict[str, Any]]) -> None:
    """Write the archive so that `path` is either absent or whole, and on disk."""
    with atomic_writer(path) as raw, gzip.GzipFile(fileobj=raw, mode="wb") as file:
        file.write(json.dumps({"format": FORMAT}).encode() + b"\n")
        for record in records:
            file.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")


@dataclass(frozen=True)
class Loaded:
    loaded: int
    skipped: int
    """Negotiations the store holds already (a removal cut short, or a second load)."""


def load(path: Path, *, session: Session) -> Loaded:
    """Put the negotiations of the archive at `path` back in the store, in one transaction:
    all of them or, on an error, none."""
    try:
        with gzip.open(path, "rb") as file:
            header = json.loads(file.readline() or b"null")
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ArchiveError(f"{path} is not a haggler archive")
            records = [json.loads(line) for line in file]
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArchiveError(f"{path} is not a readable haggler archive ({error})") from None
    products = set(session.scalars(select(ProductRow.id)))
    loaded = skipped = 0
    for start in range(0, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        try:
            rows = [_typed(NEGOTIATIONS, record["negotiation"]) for record in chunk]
        except (KeyError, TypeError, ValueError) as error:
            raise ArchiveError(f"{path} holds a damaged negotiation ({error})") from None
        present = set(
            session.scalars(
                select(NegotiationRow.id).where(NegotiationRow.id.in_([r["id"] for r in rows]))
            )
        )
        fresh = [(row, record) for row, record in zip(rows, chunk, strict=True)]
        fresh = [(row, record) for row, record in fresh if row["id"] not in present]
        skipped += len(chunk) - len(fresh)
        missing = {row["product_id"] for row, _ in fresh} - products
        if missing:
            raise ArchiveError(
                f"the archive's negotiations name products this store does not have: "
                f"{sorted(missing)}"
            )
        if not fresh:
            continue
        session.execute(NEGOTIATIONS.insert(), [row for row, _ in fresh])
        turns = [_typed(TURNS, t) for _, record in fresh for t in record["turns"]]
        decisions = [_typed(DECISIONS, d) for _, record in fresh for d in record["decisions"]]
        if turns:
            session.execute(TURNS.insert(), turns)
        if decisions:
            session.execute(DECISIONS.insert(), decisions)
        loaded += len(fresh)
    return Loaded(loaded, skipped)


def store_bytes(*, session: Session) -> int | None:
    """Bytes the store takes on disk: SQLite's file with its write-ahead log, or the
    PostgreSQL database's size (None: neither)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        return int(session.scalar(select(func.pg_database_size(func.current_database()))) or 0)
    database = bind.engine.url.database
    if bind.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return sum(
        Path(database + suffix).stat().st_size
        for suffix in ("", "-wal")
        if Path(database + suffix).exists()
    )
