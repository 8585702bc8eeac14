"""A real `haggler serve` process, killed with SIGKILL mid-work and started again: nothing lost."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from haggler.config import DQNConfig
from haggler.learning.dqn import BuyerAgent
from servers import Server

OPERATOR_TOKEN = "op"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
"""Every request goes as the operator, but the seller's moves (the negotiation's seller token)."""


@pytest.fixture
def workdir(tmp_path: Path, database_url: str) -> Iterator[tuple[Path, dict[str, str]]]:
    model = BuyerAgent(DQNConfig(hidden_sizes=(32,), batch_size=8))
    model.save_model(tmp_path / "models" / "buyer_agent.pth")
    env = {key: value for key, value in os.environ.items() if not key.startswith("HAGGLER_")}
    env |= {
        "DATABASE_URL": database_url,
        "ENABLE_TRAINING": "true",
        "REPLAY_ANCHOR_NEGOTIATIONS": "20",  # the learner's simulated experience, kept brief
        "SAVE_INTERVAL": "1",
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
    }
    yield tmp_path, env


def post(server: Server, path: str, body: dict[str, Any], token: str = OPERATOR_TOKEN) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=10)
    assert response.status_code < 300, response.text
    return response.json()


def get(server: Server, path: str, **params: Any) -> Any:
    response = httpx.get(f"{server.url}{path}", params=params, headers=OPERATOR, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_killed_server_comes_back_with_everything(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    server = Server(env, cwd)
    try:
        finished = [
            post(
                server,
                "/api/negotiations",
                {
                    "product_id": 1,
                    "max_unit_price": "280",
                    "seller": {"kind": "simulated", "seed": s},
                },
            )
            for s in range(3)
        ]
        started = post(
            server,
            "/api/negotiations",
            {
                "product_id": 2,
                "max_unit_price": "420",
                "seller": {"kind": "external", "asking_price": "520"},
            },
        )
        token, negotiation_id = started["seller_token"], started["negotiation"]["id"]
        answered = post(
            server,
            f"/api/negotiations/{negotiation_id}/moves",
            {"move": "counter", "price": "500"},
            token,
        )
        # The learner starts (torch included) and trains at a low CPU priority: with the two
        # cores busy it took 30 s to train on these three.
        deadline = time.monotonic() + 60
        while get(server, "/api/training")["negotiations_trained"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        version = get(server, "/api/models")[0]["version"]
        while get(server, "/api/training")["model_version"] != version:
            assert time.monotonic() < deadline  # serving follows the learner within a poll
            time.sleep(0.05)
    finally:
        server.kill()

    server = Server(env, cwd)
    try:
        listing = get(server, "/api/negotiations", limit=10)
        assert listing["total"] == 4
        for before in finished:
            assert get(server, f"/api/negotiations/{before['id']}") == before
        view = get(server, f"/api/negotiations/{negotiation_id}")
        assert view["transcript"] == answered["transcript"]
        status = get(server, "/api/training")
        assert status["replay_buffer_size"] == sum(n["result"]["rounds"] for n in finished)
        assert status["model_version"] == version
        assert status["negotiations_trained"] == 3
        if answered["status"] == "open":  # the negotiation in progress goes on where it stopped
            moved = post(
                server, f"/api/negotiations/{negotiation_id}/moves", {"move": "walk_away"}, token
            )
            assert moved["outcome"] == "seller_walked"
    finally:
        server.kill()
