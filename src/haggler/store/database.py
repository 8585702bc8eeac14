"""Engine, sessions and migrations. SQLite (WAL) by default; PostgreSQL by DATABASE_URL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"

JOURNAL_SIZE_LIMIT = 4 * 2**20
"""Bytes SQLite cuts the write-ahead log file back to each time the log starts over (without a
limit the file keeps the largest size the log ever reached: 40 MB after the learner fell behind)."""


def normalise_url(url: str) -> str:
    """Accept the usual `postgresql://` URL and use the psycopg 3 driver for it."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file gets WAL mode and its folder is created."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # WAL lets readers run beside the writer; NORMAL sync is durable across process crashes
    # (a kill -9 loses nothing committed) and measured 3x the commits/s of FULL here.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    # The learner folds the log into the database every second and lets it start over
    # (`maintenance.checkpoint_write_ahead_log`), and a serving process does it off its event
    # loop when the learner does not (`maintenance.WriteAheadLogFold`); SQLite's own fold, inside
    # a request, comes only past 40 MB, when long reads keep the log from starting over.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema up to date (`alembic upgrade head`)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are per plugin
    command.upgrade(alembic_config(engine), "head")
