"""Fixtures for the API tests (a pytest plugin): an app on a temporary store and a small model,
driven in-process over HTTP (TestClient)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from haggler.api.app import create_app
from haggler.config import DQNConfig, Settings
from haggler.learning.dqn import BuyerAgent
from haggler.store.database import make_engine

POSTGRES_URL = os.environ.get("HAGGLER_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]
OPERATOR = {"Authorization": "Bearer operator-secret"}
NOBODY = {"Authorization": ""}
"""Headers of a request with no credentials (the `client` fixture's default is an operator)."""


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'haggler.db'}"
    assert POSTGRES_URL is not None
    engine = make_engine(POSTGRES_URL)
    with engine.begin() as connection:
        # Nothing else may hold the tables being dropped (a server a test killed is gone, but a
        # test run beside this one on the same database would deadlock the drop).
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return POSTGRES_URL


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    model = BuyerAgent(DQNConfig(hidden_sizes=(32,), batch_size=8, seed=0))
    model.model_version = 1
    model_path = model.save_model(tmp_path / "models" / "buyer_agent.pth")
    return Settings(
        model_path=model_path,
        checkpoint_dir=tmp_path / "models" / "checkpoints",
        database_url=database_url,
        operator_token="operator-secret",
        trusted_hosts=("testserver", "127.0.0.1", "localhost"),
        save_interval=2,
        train_steps=5,
        learner="thread",
        # Every learner plays the replay anchor's simulated negotiations when it first trains:
        # 1,000 by default (seconds each time), a few here.
        replay_anchor_negotiations=20,
        # One token sends every request of a test (hundreds, from the fuzzer): the limits have
        # their own tests (test_api_limits.py).
        rate_limit_per_second=0,
        # The learner trains on each negotiation as the spec says, however slow a busy machine
        # makes it: merging when it falls behind has its own tests (test_learner_process.py).
        learner_max_delay=60.0,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A client signed in as an operator (who may do everything); tests of other roles, or of
    none, send their own `Authorization` header."""
    with TestClient(create_app(settings), headers=OPERATOR) as client:
        yield client


StartExternal = Callable[..., tuple[int, dict[str, str], dict[str, Any]]]


@pytest.fixture
def start_external(client: TestClient) -> StartExternal:
    """Start a negotiation as an external seller: (id, the seller's auth header, the answer)."""

    def start(
        ask: str = "320.00", limit: str = "270.00"
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        response = client.post(
            "/api/negotiations",
            json={
                "product_id": 1,
                "max_unit_price": limit,
                "seller": {"kind": "external", "asking_price": ask},
            },
        )
        assert response.status_code == 201, response.text
        body = response.json()
        seller = {"Authorization": f"Bearer {body['seller_token']}"}
        return body["negotiation"]["id"], seller, body

    return start
