"""Prometheus metrics: negotiations by outcome and version, turn latency, training figures."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api_fixtures import StartExternal
from test_api_operations import OPERATOR, play, wait_for


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_negotiations_by_outcome_and_version_and_time_turns(
    client: TestClient, start_external: StartExternal
) -> None:
    played = play(client, 4)
    negotiation_id, seller, _ = start_external()
    client.post(
        f"/api/negotiations/{negotiation_id}/moves", json={"move": "walk_away"}, headers=seller
    )
    version = str(played[0]["model_version"])
    found = samples(client)
    outcomes = [p["result"]["outcome"] for p in played] + ["seller_walked"]
    for outcome in set(outcomes):
        key = ("haggler_negotiations_total", (("model_version", version), ("outcome", outcome)))
        assert found[key] == outcomes.count(outcome)
    # The external start and the walk-away are two turns of this process.
    assert found[("haggler_turn_latency_seconds_count", ())] == 2
    assert found[("haggler_model_version", ())] == float(version)
    assert found[("haggler_exploration_rate", ())] == 0.0


def test_metrics_follow_training(client: TestClient) -> None:
    client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
    played = play(client, 2)
    wait_for(lambda: client.get("/api/training").json()["negotiations_trained"] == 2)
    found = samples(client)
    assert found[("haggler_negotiations_trained_total", ())] == 2
    assert found[("haggler_replay_buffer_size", ())] == sum(p["result"]["rounds"] for p in played)
    assert found[("haggler_training_loss", ())] >= 0
    assert found[("haggler_exploration_rate", ())] == 0.1
    assert found[("haggler_model_changes_total", (("source", "training"),))] >= 1
    # The learner's lag: nothing waits, no merge, and each negotiation sampled its minibatches.
    assert found[("haggler_learner_pending_negotiations", ())] == 0
    assert found[("haggler_negotiations_merged_total", ())] == 0
    assert found[("haggler_learner_samples_per_negotiation", ())] > 0
    assert found[("haggler_learner_delay_seconds", ())] >= 0
    training = client.get("/api/training").json()
    assert (training["learner_pending"], training["negotiations_merged"]) == (0, 0)
    assert training["samples_per_negotiation"] > 0 and training["learner_delay_s"] >= 0
