"""SQLite's write-ahead log stays small whoever folds it: the learner, or, when the learner does
not (behind, stopped), a serving process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from api_fixtures import OPERATOR
from haggler.api.app import create_app
from haggler.config import Settings
from haggler.store import maintenance
from haggler.store.database import JOURNAL_SIZE_LIMIT, make_engine, migrate
from test_api_operations import play, wait_for

PAGE = 4096


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE filler (data BLOB)"))
    yield engine
    engine.dispose()


def write(engine: Engine, size: int) -> None:
    """Commits of about `size` bytes in all, as serving processes write them."""
    for _ in range(size // (16 * PAGE)):
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO filler (data) VALUES (:data)"),
                [{"data": b"x" * (PAGE - 100)} for _ in range(16)],
            )


def log_size(engine: Engine) -> int:
    return Path(f"{engine.url.database}-wal").stat().st_size


def learner_folds(engine: Engine) -> None:
    with Session(engine) as session:
        maintenance.checkpoint_write_ahead_log(session=session)


def test_the_log_file_is_cut_back_when_the_log_starts_over(sqlite_engine: Engine) -> None:
    write(sqlite_engine, 2 * JOURNAL_SIZE_LIMIT)
    assert log_size(sqlite_engine) > 2 * JOURNAL_SIZE_LIMIT
    learner_folds(sqlite_engine)
    write(sqlite_engine, 16 * PAGE)  # the next writer starts the log over
    assert log_size(sqlite_engine) <= JOURNAL_SIZE_LIMIT


def test_a_serving_process_folds_the_log_only_when_nothing_else_does(
    sqlite_engine: Engine,
) -> None:
    fold = maintenance.WriteAheadLogFold(sqlite_engine)
    assert fold.path == Path(f"{sqlite_engine.url.database}-wal")
    write(sqlite_engine, 16 * PAGE)
    assert not fold.due(now=0.0)
    # The learner folds the log every second: it starts over, and the serving process leaves it.
    for second in range(1, 4):
        write(sqlite_engine, maintenance.WAL_FOLD_BYTES // 2)
        learner_folds(sqlite_engine)
        write(sqlite_engine, maintenance.WAL_FOLD_BYTES + 16 * PAGE)
        assert log_size(sqlite_engine) > maintenance.WAL_FOLD_BYTES
        assert not fold.due(now=second * maintenance.WAL_FOLD_STALE_SECONDS)
    # The learner stops folding: once the log has not started over for long enough, it is due.
    now = 3 * maintenance.WAL_FOLD_STALE_SECONDS
    write(sqlite_engine, 16 * PAGE)
    assert not fold.due(now=now + maintenance.WAL_FOLD_STALE_SECONDS / 2)
    assert fold.due(now=now + maintenance.WAL_FOLD_STALE_SECONDS)
    assert fold.fold() > maintenance.WAL_FOLD_BYTES // PAGE
    assert log_size(sqlite_engine) == 0  # the file emptied, not only the log
    assert not fold.due(now=now + 10 * maintenance.WAL_FOLD_STALE_SECONDS)
    with sqlite_engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM filler")).scalar_one() > 0


def test_only_an_sqlite_file_has_a_log_to_fold(engine: Engine) -> None:
    fold = maintenance.WriteAheadLogFold(engine)
    if engine.dialect.name == "sqlite":
        assert fold.path is not None
    else:
        assert fold.path is None and not fold.due(now=1e9)
    memory = make_engine("sqlite://")
    assert maintenance.WriteAheadLogFold(memory).path is None
    memory.dispose()


def test_with_the_learner_stopped_the_service_keeps_the_log_small(settings: Settings) -> None:
    """Negotiations served with no learner to fold the log: the serving process's fold (as its
    app runs it, every second) empties it; without it the log only grows."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL has no write-ahead log file of ours to fold")
    no_learner = settings.model_copy(update={"learner": "external"})
    above = 256 * 1024  # below the default, so that the app's own fold stays out of the way
    with TestClient(create_app(no_learner), headers=OPERATOR) as client:
        fold = maintenance.WriteAheadLogFold(client.app.state.runtime.engine, above_bytes=above)
        assert fold.path is not None
        assert not fold.due(now=0.0)
        play(client, 12)  # ~60 KB of log a negotiation
        grown = fold.path.stat().st_size
        assert grown > above
        assert fold.due(now=maintenance.WAL_FOLD_STALE_SECONDS)
        assert fold.fold() > above // PAGE
        assert fold.path.stat().st_size == 0
        play(client, 1)
        assert 0 < fold.path.stat().st_size < above
        assert client.get("/api/summary").json()["finished"] == 13


def test_with_no_learner_the_service_folds_the_log_itself(settings: Settings) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL has no write-ahead log file of ours to fold")
    no_learner = settings.model_copy(update={"learner": "external"})
    with TestClient(create_app(no_learner), headers=OPERATOR) as client:
        log_file = Path(f"{client.app.state.runtime.engine.url.database}-wal")  # type: ignore[attr-defined]
        # Play until the log passes WAL_FOLD_BYTES (ten negotiations write ~0.9 MB of it) or the
        # service folds it between two looks (the log shrank: nothing else shrinks it). Playing
        # a fixed 100 failed on a busy machine: the fold came mid-play, and the ~2 MB the rest
        # wrote stayed below the fold's size, so the log never emptied.
        sizes = [0]
        while sizes[-1] <= maintenance.WAL_FOLD_BYTES:
            assert len(sizes) <= 60, f"the log never passed the fold's size: {sizes[-1]:,} bytes"
            play(client, 10)
            size = log_file.stat().st_size
            if size < sizes[-1]:
                break  # folded while the last ten were played; their writes are what is left
            sizes.append(size)
        else:
            # A generous wait: on a busy machine the fold took just over 10 s once.
            wait_for(lambda: log_file.stat().st_size == 0, timeout=30)
        assert log_file.stat().st_size <= maintenance.WAL_FOLD_BYTES  # folded, not grown on
