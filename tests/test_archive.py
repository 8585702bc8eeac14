"""Archiving: old negotiations move to a file and back, exactly; what something live reads stays;
bad input changes nothing."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api_fixtures import StartExternal
from haggler.config import Settings
from haggler.store import archive as archive_store
from haggler.store import experiences as experience_store
from haggler.store.database import make_engine, session_factory
from haggler.store.tables import NegotiationRow
from servers import HAGGLER
from test_api_operations import play, wait_for

TOMORROW = datetime.now(UTC) + timedelta(days=1)
SMALL = archive_store.Needs(replay_transitions=1, gate_negotiations=2, reference_negotiations=2)
"""Live parts that read little: most of a small store can go."""


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    yield session_factory(engine)
    engine.dispose()


def _learned(sessions: sessionmaker[Session]) -> None:
    """Wait until the learner took every finished negotiation off its queue."""

    def queue_empty() -> bool:
        with sessions() as session:
            return experience_store.count_to_learn(session=session) == 0

    wait_for(queue_empty)


def test_old_negotiations_go_to_a_file_and_come_back_exactly(
    client: TestClient, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    played = play(client, 8)
    _learned(sessions)
    before = {p["id"]: client.get(f"/api/negotiations/{p['id']}").json() for p in played}
    summary = client.get("/api/summary").json()
    path = tmp_path / "archive.jsonl.gz"
    with sessions() as session:
        done = archive_store.archive(path, session=session, finished_before=TOMORROW, needs=SMALL)
    # The newest two stay for the gate (and the monitor); the six before them go.
    ids = sorted(before)
    assert (done.negotiations, done.first_id, done.last_id) == (6, ids[0], ids[5])
    assert "gate" in done.protection.reason or "monitor" in done.protection.reason
    listed = client.get("/api/negotiations").json()
    assert [item["id"] for item in listed["items"]] == ids[6:][::-1]
    for gone in ids[:6]:
        assert client.get(f"/api/negotiations/{gone}").status_code == 404
    # The totals count what the service did, archived or not.
    assert client.get("/api/summary").json() == summary
    with sessions() as session:
        loaded = archive_store.load(path, session=session)
        session.commit()
    assert (loaded.loaded, loaded.skipped) == (6, 0)
    after = {i: client.get(f"/api/negotiations/{i}").json() for i in ids}
    assert after == before
    with sessions() as session:  # a second load adds nothing
        again = archive_store.load(path, session=session)
        session.commit()
    assert (again.loaded, again.skipped) == (0, 6)


def test_what_something_live_reads_stays(
    client: TestClient,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    start_external: StartExternal,
) -> None:
    play(client, 3)
    in_progress, _, _ = start_external()
    play(client, 3)
    _learned(sessions)
    with sessions() as session:
        done = archive_store.archive(
            tmp_path / "a.jsonl.gz", session=session, finished_before=TOMORROW, needs=SMALL
        )
    assert done.protection == archive_store.Protection(in_progress, "a negotiation in progress")
    assert done.negotiations == 3
    assert client.get(f"/api/negotiations/{in_progress}").status_code == 200
    # A replay buffer that needs every experience keeps every negotiation.
    whole = archive_store.Needs(
        replay_transitions=10**6, gate_negotiations=1, reference_negotiations=1
    )
    with sessions() as session:
        kept = archive_store.archive(
            tmp_path / "b.jsonl.gz", session=session, finished_before=TOMORROW, needs=whole
        )
    assert kept.negotiations == 0
    # Nothing ended before the date: nothing goes.
    with sessions() as session:
        early = archive_store.archive(
            tmp_path / "c.jsonl.gz",
            session=session,
            finished_before=datetime(2020, 1, 1, tzinfo=UTC),
            needs=SMALL,
        )
    assert early.negotiations == 0


def test_an_archive_written_before_the_observation_layout_was_stored_comes_back(
    client: TestClient, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Its negotiations come back without a layout (as stored before it was recorded: the learner
    reads them if their observations have the network's size) and show as before."""
    played = play(client, 4)
    _learned(sessions)
    path = tmp_path / "archive.jsonl.gz"
    with sessions() as session:
        done = archive_store.archive(path, session=session, finished_before=TOMORROW, needs=SMALL)
    assert done.negotiations == 2
    # The same archive as an earlier version wrote it: without the column.
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    records = [json.loads(line) for line in lines]
    for record in records[1:]:
        del record["negotiation"]["observation_layout"]
    older = tmp_path / "older.jsonl.gz"
    older.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in records).encode() + b"\n"))
    with sessions() as session:
        loaded = archive_store.load(older, session=session)
        session.commit()
    assert loaded.loaded == 2
    first = min(p["id"] for p in played)
    assert client.get(f"/api/negotiations/{first}").status_code == 200
    with sessions() as session:
        row = session.get(NegotiationRow, first)
        assert row is not None and row.observation_layout is None


def test_bad_files_are_refused_and_change_nothing(
    client: TestClient, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    play(client, 4)
    _learned(sessions)
    listed = client.get("/api/negotiations").json()
    taken = tmp_path / "taken.jsonl.gz"
    taken.write_bytes(b"mine")
    with (
        sessions() as session,
        pytest.raises(archive_store.ArchiveError, match="exists"),
    ):
        archive_store.archive(taken, session=session, finished_before=TOMORROW, needs=SMALL)
    assert taken.read_bytes() == b"mine"
    not_archive = tmp_path / "other.jsonl.gz"
    with gzip.open(not_archive, "wb") as file:
        file.write(b'{"format": "something else"}\n')
    for bad in (taken, not_archive):
        with (
            sessions() as session,
            pytest.raises(archive_store.ArchiveError, match="not a"),
        ):
            archive_store.load(bad, session=session)
    assert client.get("/api/negotiations").json() == listed


def test_the_command_archives_and_reports_the_store(
    settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient as Client

    from api_fixtures import OPERATOR
    from haggler.api.app import create_app

    with Client(create_app(settings), headers=OPERATOR) as client:
        play(client, 3)
        _learned(sessions)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HAGGLER_")},
        "DATABASE_URL": settings.database_url,
        "MODEL_PATH": str(settings.model_path),
    }

    def haggler(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HAGGLER), "archive", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    status = haggler("status")
    assert status.returncode == 0, status.stderr
    assert "Negotiations in the store: 3" in status.stdout
    bad = haggler("export", "--finished-before", "last tuesday", "--to", "x.jsonl.gz")
    assert bad.returncode != 0
    assert bad.stderr.strip() == (
        "haggler: error: bad date 'last tuesday': give one like 2026-11-01 or "
        "2026-11-01T12:00+01:00"
    )
    assert not (tmp_path / "x.jsonl.gz").exists()
    done = haggler("export", "--finished-before", "2020-01-01", "--to", "x.jsonl.gz")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Archived nothing")
    missing = haggler("load", "nowhere.jsonl.gz")
    assert missing.returncode != 0 and "does not exist" in missing.stderr
