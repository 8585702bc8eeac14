"""Property-based tests of the whole API from its OpenAPI schema (schemathesis): no input, however
odd, gets a 5xx. Bounded: a few dozen generated requests per operation."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from api_fixtures import OPERATOR
from haggler.api.app import create_app
from haggler.config import DQNConfig, Settings
from haggler.learning.dqn import BuyerAgent


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    model = BuyerAgent(DQNConfig(hidden_sizes=(32,), batch_size=8))
    settings = Settings(
        model_path=model.save_model(tmp_path / "models" / "buyer_agent.pth"),
        checkpoint_dir=tmp_path / "models" / "checkpoints",
        database_url=f"sqlite:///{tmp_path / 'haggler.db'}",
        operator_token="operator-secret",
        trusted_hosts=("testserver", "localhost"),
        rate_limit_per_second=0,  # hundreds of requests, one token
        enable_training=True,
        save_interval=3,
        replay_anchor_negotiations=20,  # the learner process's anchor kept to a few negotiations
    )
    app = create_app(settings)
    with TestClient(app):  # runs the lifespan: store, agent and learner stay up for the test
        yield app


def test_no_request_gets_a_server_error(app: FastAPI) -> None:
    # Driven through schemathesis' strategies directly: its pytest integration (from_fixture)
    # does not run under pytest 9.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=OPERATOR)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 10

    calls = 0
    statuses: set[int] = set()
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case[Any]) -> None:
            nonlocal calls
            calls += 1
            # As an operator, who may call every route: signed out, every call would be a 401.
            response = case.call_and_validate(headers=OPERATOR, checks=[not_a_server_error])
            if case.path != "/api/session":  # a sign-in with a wrong password is a 401
                statuses.add(response.status_code)

        try:
            no_server_error()
        except Unsatisfiable:  # an operation without inputs has no invalid request to make
            assert mode is GenerationMode.NEGATIVE
    assert calls >= 10 * len(operations), "valid and invalid requests for every operation"
    assert 401 not in statuses and {200, 201, 422} <= statuses, statuses
