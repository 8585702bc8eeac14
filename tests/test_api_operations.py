"""Summary metrics, training switch, checkpoints and restore, and what survives a restart."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from api_fixtures import NOBODY, OPERATOR
from haggler.api.app import create_app
from haggler.config import Settings


def play(client: TestClient, n: int, strategy: str = "linear") -> list[dict[str, Any]]:
    return [
        client.post(
            "/api/negotiations",
            json={
                "product_id": 3,
                "max_unit_price": "330.00",
                "seller": {"kind": "simulated", "strategy": strategy, "seed": seed},
            },
        ).json()
        for seed in range(n)
    ]


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_summary_counts_deals_and_savings(client: TestClient) -> None:
    played = play(client, 6)
    summary = client.get("/api/summary").json()
    deals = [p for p in played if p["result"]["outcome"] == "deal"]
    assert summary["negotiations"] == summary["finished"] == 6
    assert summary["deals"] == len(deals)
    assert summary["deal_rate"]["mean"] == len(deals) / 6
    assert (
        summary["deal_rate"]["ci_low"]
        <= summary["deal_rate"]["mean"]
        <= summary["deal_rate"]["ci_high"]
    )
    assert float(summary["savings_total"]) == sum(
        float(p["result"]["savings_total"]) for p in deals
    )


def test_operator_actions_need_the_operator_token(client: TestClient) -> None:
    assert client.put("/api/training", json={"enabled": True}, headers=NOBODY).status_code == 401
    wrong = client.put(
        "/api/training", json={"enabled": True}, headers={"Authorization": "Bearer x"}
    )
    assert wrong.status_code == 401
    assert "unknown or revoked token" in wrong.json()["detail"]
    assert client.get("/api/training").json()["enabled"] is False
    restore = client.post("/api/checkpoints/restore", json={"checkpoint": "x.pth"}, headers=NOBODY)
    assert restore.status_code == 401


def test_with_training_on_every_negotiation_trains_and_checkpoints_follow(
    client: TestClient,
) -> None:
    before = client.get("/api/training").json()
    assert before["enabled"] is False and before["epsilon"] == 0.0
    turned_on = client.put("/api/training", json={"enabled": True}, headers=OPERATOR).json()
    assert turned_on["enabled"] is True and turned_on["epsilon"] == 0.1
    played = play(client, 4)
    moves = sum(p["result"]["rounds"] for p in played)
    wait_for(lambda: client.get("/api/training").json()["negotiations_trained"] == 4)
    # Serving follows the learner's newest version within a poll of the store.
    wait_for(lambda: client.get("/api/training").json()["model_version"] > before["model_version"])
    status = client.get("/api/training").json()
    assert status["replay_buffer_size"] == moves
    assert status["update_delay_median_s"] is not None
    checkpoints = client.get("/api/checkpoints").json()
    assert [c["negotiations"] for c in checkpoints] == [2, 4]
    assert status["last_checkpoint"] == checkpoints[-1]["name"]


def test_restoring_a_checkpoint_serves_its_version(client: TestClient) -> None:
    client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
    play(client, 2)
    wait_for(lambda: len(client.get("/api/checkpoints").json()) == 1)
    [checkpoint] = client.get("/api/checkpoints").json()
    version_at_checkpoint = client.get("/api/training").json()["model_version"]
    play(client, 1)
    wait_for(lambda: client.get("/api/training").json()["negotiations_trained"] == 3)
    wait_for(lambda: client.get("/api/training").json()["model_version"] > version_at_checkpoint)
    trained = client.get("/api/training").json()["model_version"]
    client.put("/api/training", json={"enabled": False}, headers=OPERATOR)
    restored = client.post(
        "/api/checkpoints/restore", json={"checkpoint": checkpoint["name"]}, headers=OPERATOR
    )
    assert restored.status_code == 200, restored.text
    # The restored weights serve as a new version: a version number never names two models.
    version = restored.json()["model_version"]
    assert version > trained
    [change, *_] = client.get("/api/models").json()
    assert change == {**change, "version": version, "source": "restore"}
    assert change["checkpoint"] == checkpoint["name"] and change["negotiations"] == 2
    new = play(client, 1)[0]
    assert new["model_version"] == version


def test_restore_refuses_paths_outside_the_folder_and_files_that_are_not_checkpoints(
    client: TestClient, settings: Settings
) -> None:
    settings.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    (settings.checkpoint_dir / "buyer_agent_n5_20231225_120000.pth").write_bytes(b"junk")
    version = client.get("/api/training").json()["model_version"]
    for name, words in [
        ("../buyer_agent.pth", "outside the checkpoint folder"),
        ("/etc/passwd", "outside the checkpoint folder"),
        ("buyer_agent_n9_20231225_120000.pth", "no checkpoint"),
        ("buyer_agent_n5_20231225_120000.pth", "not a readable model file"),
    ]:
        response = client.post(
            "/api/checkpoints/restore", json={"checkpoint": name}, headers=OPERATOR
        )
        assert response.status_code == 400
        assert words in response.json()["detail"]
    assert client.get("/api/training").json()["model_version"] == version


def test_a_restart_keeps_negotiations_in_progress_the_replay_buffer_and_the_version(
    settings: Settings,
) -> None:
    # Safe exploration never explores with walk-away or accept: with uniform (`epsilon`)
    # exploration the buyer's first move in the external negotiation could end it at once.
    update = {"enable_training": True, "save_interval": 1, "exploration": "safe"}
    settings = settings.model_copy(update=update)
    with TestClient(create_app(settings), headers=OPERATOR) as client:
        finished = play(client, 2)
        response = client.post(
            "/api/negotiations",
            json={
                "product_id": 1,
                "max_unit_price": "270",
                "seller": {"kind": "external", "asking_price": "320"},
            },
        ).json()
        negotiation_id = response["negotiation"]["id"]
        assert response["negotiation"]["to_move"] == "seller", response["negotiation"]
        seller = {"Authorization": f"Bearer {response['seller_token']}"}
        wait_for(lambda: client.get("/api/training").json()["negotiations_trained"] == 2)
        newest = client.get("/api/models").json()[0]["version"]
        wait_for(lambda: client.get("/api/training").json()["model_version"] == newest)
        status = client.get("/api/training").json()
    with TestClient(create_app(settings), headers=OPERATOR) as client:
        again = client.get("/api/training").json()
        assert again["replay_buffer_size"] == sum(p["result"]["rounds"] for p in finished)
        assert again["model_version"] == status["model_version"]
        view = client.get(f"/api/negotiations/{negotiation_id}").json()
        assert view["status"] == "open" and view["to_move"] == "seller"
        moved = client.post(
            f"/api/negotiations/{negotiation_id}/moves", json={"move": "walk_away"}, headers=seller
        )
        assert moved.status_code == 200
        assert moved.json()["outcome"] == "seller_walked"
        assert client.get("/api/negotiations").json()["total"] == 3
