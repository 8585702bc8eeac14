"""Fixtures for the store tests (a pytest plugin): a migrated store on SQLite and, when
HAGGLER_TEST_POSTGRES_URL is set, on PostgreSQL, with a clean schema for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from haggler.store.database import make_engine, migrate, session_factory

POSTGRES_URL = os.environ.get("HAGGLER_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'store' / 'haggler.db'}")
    else:
        assert POSTGRES_URL is not None
        engine = make_engine(POSTGRES_URL)
        with engine.begin() as connection:  # a clean schema for every test
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as session:
        yield session
