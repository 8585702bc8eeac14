"""The safe-learning endpoints: status, A/B tests started and decided by the operator, candidates
judged on demand; every bad input gets a 4xx with a message and changes nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api_fixtures import NOBODY
from haggler.config import DQNConfig, Settings
from haggler.learning.dqn import BuyerAgent
from test_api_operations import OPERATOR, play, wait_for


def test_the_status_names_the_modes_and_the_serving_version(client: TestClient) -> None:
    status = client.get("/api/safety").json()
    assert status["promotion"] == "immediate"
    assert status["exploration"] == "safe"  # the default: never a random accept or walk-away
    assert status["serving_version"] == 1
    assert status["running_test"] is None
    assert status["rollbacks"] == 0
    assert client.get("/api/ab-tests").json() == []


def test_bad_a_b_requests_get_a_message_and_start_nothing(client: TestClient) -> None:
    assert client.post(
        "/api/ab-tests", json={"challenger_version": 1, "split": 0.2}, headers=NOBODY
    ).status_code == (401)
    wrong = {"Authorization": "Bearer nope"}
    assert (
        client.post(
            "/api/ab-tests", json={"challenger_version": 1, "split": 0.2}, headers=wrong
        ).status_code
        == 401
    )
    for split in (0, 0.01, 0.99, 1, -0.5, "half", None):
        answer = client.post(
            "/api/ab-tests", json={"challenger_version": 1, "split": split}, headers=OPERATOR
        )
        assert answer.status_code == 422, split
    unknown = client.post(
        "/api/ab-tests", json={"challenger_version": 99, "split": 0.2}, headers=OPERATOR
    )
    assert unknown.status_code == 404
    assert "no model version 99" in unknown.json()["detail"]
    serving = client.post(
        "/api/ab-tests", json={"challenger_version": 1, "split": 0.2}, headers=OPERATOR
    )
    assert serving.status_code == 409
    assert "serving" in serving.json()["detail"]
    assert client.get("/api/ab-tests/7").status_code == 404
    decision = client.post(
        "/api/ab-tests/7/decision", json={"decision": "promote"}, headers=OPERATOR
    )
    assert decision.status_code == 404
    bad = client.post("/api/ab-tests/7/decision", json={"decision": "maybe"}, headers=OPERATOR)
    assert bad.status_code == 422
    assert client.get("/api/ab-tests").json() == []


def test_an_operator_starts_a_test_and_rejects_the_challenger(client: TestClient) -> None:
    client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
    play(client, 4)  # the learner (a thread here) publishes newer versions
    wait_for(lambda: client.get("/api/training").json()["negotiations_trained"] == 4)
    client.put("/api/training", json={"enabled": False}, headers=OPERATOR)
    serving = client.get("/api/safety").json()["serving_version"]
    assert serving > 1
    started = client.post(
        "/api/ab-tests", json={"challenger_version": 1, "split": 0.3}, headers=OPERATOR
    )
    assert started.status_code == 201, started.text
    test = started.json()
    assert (test["champion_version"], test["challenger_version"], test["status"]) == (
        serving,
        1,
        "running",
    )
    second = client.post(
        "/api/ab-tests", json={"challenger_version": 1, "split": 0.3}, headers=OPERATOR
    )
    assert second.status_code == 409
    rejected = client.post(
        f"/api/ab-tests/{test['id']}/decision",
        json={"decision": "reject", "reason": "the older model"},
        headers=OPERATOR,
    )
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["reason"] == "the older model"
    assert client.get("/api/safety").json()["serving_version"] == serving


def test_a_stored_version_is_judged_on_demand_without_changing_anything(
    client: TestClient,
) -> None:
    play(client, 10)
    assert client.post("/api/models/1/evaluate", headers=NOBODY).status_code == 401
    assert client.post("/api/models/99/evaluate", headers=OPERATOR).status_code == 404
    judged = client.post("/api/models/1/evaluate", headers=OPERATOR)
    assert judged.status_code == 200, judged.text
    body = judged.json()
    assert body["version"] == body["champion_version"] == 1
    assert body["passed"] is True  # a model is as good as itself
    assert body["figures"]
    assert client.get("/api/safety").json()["serving_version"] == 1


def test_no_ab_test_while_every_update_serves_at_once(client: TestClient) -> None:
    client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
    refused = client.post(
        "/api/ab-tests", json={"challenger_version": 1, "split": 0.2}, headers=OPERATOR
    )
    assert refused.status_code == 409
    assert "PROMOTION=gated" in refused.json()["detail"]
    assert client.get("/api/ab-tests").json() == []


def test_the_charts_events_are_each_restore_promotion_and_ab_test_start_and_end(
    client: TestClient, settings: Settings
) -> None:
    assert client.get("/api/safety/events").json() == []  # the starter model is no event
    name = "buyer_agent_n10_20240101_120000.pth"
    other = BuyerAgent(DQNConfig(hidden_sizes=(32,), batch_size=8, seed=1))
    other.save_model(settings.checkpoint_dir / name, negotiations=10)
    restored = client.post("/api/checkpoints/restore", json={"checkpoint": name})
    assert restored.status_code == 200, restored.text
    version = restored.json()["model_version"]
    play(client, 2)  # served by the restored version: no event
    test = client.post("/api/ab-tests", json={"challenger_version": 1, "split": 0.5}).json()
    decided = client.post(
        f"/api/ab-tests/{test['id']}/decision",
        json={"decision": "promote", "reason": "the starter deals more"},
    )
    assert decided.status_code == 200, decided.text

    events = client.get("/api/safety/events").json()
    kinds = [(e["kind"], e["version"]) for e in events]
    # Newest first; the decision ends the test and promotes its challenger in one transaction.
    assert sorted(kinds[:2]) == [("ab_test_end", 1), ("promotion", 1)]
    assert kinds[2:] == [("ab_test_start", 1), ("restore", version)]
    by_kind = {e["kind"]: e for e in events}
    assert by_kind["restore"]["checkpoint"] == name
    start, end = by_kind["ab_test_start"], by_kind["ab_test_end"]
    assert start["ab_test_id"] == end["ab_test_id"] == test["id"]
    assert start["champion_version"] == end["champion_version"] == version
    assert (end["outcome"], end["reason"]) == ("promoted", "the starter deals more")
    assert "won A/B test" in by_kind["promotion"]["reason"]
    ats = [e["at"] for e in events]
    assert ats == sorted(ats, reverse=True)

    assert len(client.get("/api/safety/events?limit=1").json()) == 1
    for bad in ("0", "1001", "many"):
        assert client.get(f"/api/safety/events?limit={bad}").status_code == 422
    assert client.get("/api/safety/events", headers=NOBODY).status_code == 401
