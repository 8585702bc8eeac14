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
        "OPERATOR_TOKEN": "op",
    }
    yield tmp_path, env


def post(server: Server, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=10)
    assert response.status_code < 300, response.text
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
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/api/training").json()["negotiations_trained"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        version = httpx.get(f"{server.url}/api/models").json()[0]["version"]
        while httpx.get(f"{server.url}/api/training").json()["model_version"] != version:
            assert time.monotonic() < deadline  # serving follows the learner within a poll
            time.sleep(0.05)
    finally:
        server.kill()

    server = Server(env, cwd)
    try:
        listing = httpx.get(f"{server.url}/api/negotiations", params={"limit": 10}).json()
        assert listing["total"] == 4
        for before in finished:
            assert httpx.get(f"{server.url}/api/negotiations/{before['id']}").json() == before
        view = httpx.get(f"{server.url}/api/negotiations/{negotiation_id}").json()
        assert view["transcript"] == answered["transcript"]
        status = httpx.get(f"{server.url}/api/training").json()
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
