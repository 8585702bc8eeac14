"""A real `haggler serve` with its learner process in gated mode: checkpoints become candidates
that the gate judges, each listed with its verdict, while the served version only changes by a
promotion; an A/B test started by the operator splits new negotiations by id."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from haggler.agent import BuyerAgent
from haggler.config import DQNConfig
from servers import Server

OPERATOR = {"Authorization": "Bearer op"}


def negotiate(server: Server, seed: int) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/api/negotiations",
        json={
            "product_id": 1 + seed % 5,
            "max_unit_price": "250",
            "seller": {"kind": "simulated", "strategy": "linear", "seed": seed},
        },
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def get(server: Server, path: str, **params: Any) -> Any:
    response = httpx.get(f"{server.url}{path}", params=params, timeout=10)
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
        "PROMOTION": "gated",
        "EXPLORATION": "safe",
        "SAVE_INTERVAL": "5",
        "GATE_INTERVAL": "5",
        "OPERATOR_TOKEN": "op",
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
