"""A real `haggler serve` with its learner process in gated mode: checkpoints become candidates
that the gate judges, each listed with its verdict, while the served version only changes by a
promotion; an A/B test started by the operator splits new negotiations by id."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import torch

from conftest import fixed_preferences
from haggler.config import DQNConfig
from haggler.core.features import BuyerMove
from haggler.learning.dqn import BuyerAgent
from servers import Server

OPERATOR_TOKEN = "op"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
"""Every request goes as the operator."""


def negotiate(
    server: Server, seed: int, *, product: int | None = None, limit: str = "250"
) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/api/negotiations",
        json={
            "product_id": product or 1 + seed % 5,
            "max_unit_price": limit,
            "seller": {"kind": "simulated", "strategy": "linear", "seed": seed},
        },
        headers=OPERATOR,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def get(server: Server, path: str, **params: Any) -> Any:
    response = httpx.get(f"{server.url}{path}", params=params, headers=OPERATOR, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_gated_learning_judges_each_checkpoint_and_ab_tests_split_by_id(
    tmp_path: Path, database_url: str
) -> None:
    model = BuyerAgent(DQNConfig(hidden_sizes=(32,), batch_size=8))
    model.save_model(tmp_path / "models" / "buyer_agent.pth")
    env = {key: value for key, value in os.environ.items() if not key.startswith("HAGGLER_")}
    env |= {
        "DATABASE_URL": database_url,
        "ENABLE_TRAINING": "true",
        "REPLAY_ANCHOR_NEGOTIATIONS": "20",  # the learner's simulated experience, kept brief
        "PROMOTION": "gated",
        "EXPLORATION": "safe",
        "SAVE_INTERVAL": "5",
        "GATE_INTERVAL": "5",
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
    }
    server = Server(env, tmp_path)
    try:
        assert get(server, "/api/safety")["promotion"] == "gated"
        first = get(server, "/api/safety")["serving_version"]
        for seed in range(12):
            negotiate(server, seed)
        deadline = time.monotonic() + 60
        judged: list[dict[str, Any]] = []
        while len(judged) < 2:  # two checkpoints, two verdicts
            assert time.monotonic() < deadline, "the learner judged no candidates"
            time.sleep(0.5)
            judged = [
                m
                for m in get(server, "/api/models", limit=20)
                if m["source"] == "training" and m["evaluation"] is not None
            ]
        for candidate in judged:
            assert candidate["status"] in ("promoted", "rejected")
            assert candidate["reason"]
            assert candidate["checkpoint"].startswith("buyer_agent_n")
        promoted = [m["version"] for m in judged if m["status"] == "promoted"]
        serving = get(server, "/api/safety")["serving_version"]
        assert serving == (max(promoted) if promoted else first)

        # The operator tests the first model against what serves now.
        challenger = judged[0]["version"] if serving == first else first
        started = httpx.post(
            f"{server.url}/api/ab-tests",
            json={"challenger_version": challenger, "split": 0.5},
            headers=OPERATOR,
            timeout=10,
        )
        assert started.status_code == 201, started.text
        time.sleep(0.5)  # the serving process picks the test up within a poll
        versions = {negotiate(server, 100 + seed)["model_version"] for seed in range(30)}
        assert versions == {serving, challenger}
    finally:
        server.stop()


def fixed_model(move: BuyerMove) -> BuyerAgent:
    """A small network whose best legal move is always `move` (then `fixed_preferences`' order)."""
    agent = BuyerAgent(DQNConfig(hidden_sizes=(32,), batch_size=8))
    preference = torch.from_numpy(fixed_preferences(move))
    with torch.no_grad():
        for layer in agent.q_network:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.zero_()
                layer.bias.zero_()
        output = agent.q_network[-1]
        assert isinstance(output, torch.nn.Linear)
        output.bias.copy_(preference)
    agent.target_network.load_state_dict(agent.q_network.state_dict())
    agent.publish()
    return agent


def test_a_restored_model_that_loses_every_deal_is_rolled_back_within_a_minute(
    tmp_path: Path, database_url: str
) -> None:
    fixed_model(BuyerMove.CONCEDE_25).save_model(tmp_path / "models" / "buyer_agent.pth")
    quitter = tmp_path / "models" / "checkpoints" / "buyer_agent_n1_20261124_120000.pth"
    fixed_model(BuyerMove.WALK_AWAY).save_model(quitter)
    env = {key: value for key, value in os.environ.items() if not key.startswith("HAGGLER_")}
    env |= {"DATABASE_URL": database_url, "OPERATOR_TOKEN": OPERATOR_TOKEN, "ROLLBACK_WINDOW": "30"}
    server = Server(env, tmp_path)
    try:
        good = get(server, "/api/safety")["serving_version"]
        for seed in range(30):  # a limit near list price: the good model deals often
            negotiate(server, seed, product=3, limit="330")
        deadline = time.monotonic() + 30
        while get(server, "/api/safety")["known_good_version"] != good:
            assert time.monotonic() < deadline, "the monitor set no reference"
            time.sleep(0.5)

        restored = httpx.post(
            f"{server.url}/api/checkpoints/restore",
            json={"checkpoint": quitter.name},
            headers=OPERATOR,
            timeout=10,
        )
        assert restored.status_code == 200, restored.text
        bad = restored.json()["model_version"]
        played = [negotiate(server, 100 + seed, product=3, limit="330") for seed in range(30)]
        assert {p["model_version"] for p in played} == {bad}
        assert all(p["result"]["outcome"] == "buyer_walked" for p in played)
        lost_at = time.monotonic()

        while (status := get(server, "/api/safety"))["rollbacks"] == 0:
            assert time.monotonic() - lost_at < 60, "no rollback within a minute"
            time.sleep(0.5)
        rollback = status["last_rollback"]
        assert rollback["copy_of"] == good
        assert f"from version {bad} to {good}" in rollback["reason"]
        assert "Deal rate fell" in rollback["reason"]
        time.sleep(0.3)  # the serving process follows within a poll
        assert negotiate(server, 500)["model_version"] == rollback["version"]
        assert "[Safety] Rolled back" in (tmp_path / f"serve-{server.port}.log").read_text()
    finally:
        server.stop()
