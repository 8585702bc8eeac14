"""Safe online learning in the service: the gate turns a worse candidate away, a passing one
starts an A/B test whose arms are recorded, an operator decides a test, and a degraded model is
rolled back to the last known good one, which every serving process then plays."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from conftest import fixed_preferences
from haggler.api.app import create_app
from haggler.config import Settings
from haggler.core.features import OBSERVATION_SIZE, BuyerMove
from haggler.policy.snapshot import PolicySnapshot
from haggler.safety.safe_learning import SafeLearning
from haggler.store import experiments, versions
from haggler.store import snapshots as snapshot_store
from haggler.store.database import make_engine, session_factory
from test_api_operations import OPERATOR, wait_for

STRATEGIES = ("linear", "conceder", "boulware", "tit_for_tat")


@pytest.fixture
def external(settings: Settings) -> Settings:
    """The service with no learner of its own: the test drives the safety checks by hand."""
    return settings.model_copy(
        update={"learner": "external", "promotion": "gated", "rollback_window": 40}
    )


@pytest.fixture
def sessions(external: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(external.database_url)
    yield session_factory(engine)
    engine.dispose()


def fixed_policy(like: PolicySnapshot, move: BuyerMove, version: int) -> PolicySnapshot:
    """A network whose best legal move is always `move` (then `fixed_preferences`' order)."""
    weights = tuple(np.zeros_like(w) for w in like.weights)
    biases = (*(np.zeros_like(b) for b in like.biases[:-1]), fixed_preferences(move))
    return PolicySnapshot(weights, biases, version)


def serve(sessions: sessionmaker[Session], snapshot: PolicySnapshot) -> None:
    """Publish `snapshot` as the serving version, as a learner in immediate mode would."""
    with sessions() as session:
        versions.publish(
            session,
            snapshot,
            expected_serving=snapshot_store.serving_version(session=session),
            source="training",
            negotiations=0,
        )
        session.commit()


def served_version(client: TestClient) -> int:
    return int(client.app.state.runtime.service.snapshot.version)  # type: ignore[attr-defined]


def play(client: TestClient, n: int, first_seed: int = 0) -> list[dict[str, Any]]:
    played = []
    for seed in range(first_seed, first_seed + n):
        response = client.post(
            "/api/negotiations",
            json={
                "product_id": 3,
                "max_unit_price": "330.00",
                "seller": {
                    "kind": "simulated",
                    "strategy": STRATEGIES[seed % len(STRATEGIES)],
                    "seed": seed,
                },
            },
        )
        assert response.status_code == 201, response.text
        played.append(response.json())
    return played


def champion_and_app(
    external: Settings, sessions: sessionmaker[Session], client: TestClient
) -> PolicySnapshot:
    """Serve a model that haggles in small steps (the champion of these tests)."""
    with sessions() as session:
        starter = versions.serving_snapshot(session)
    assert starter is not None
    champion = fixed_policy(starter, BuyerMove.CONCEDE_25, starter.version + 1)
    serve(sessions, champion)
    wait_for(lambda: served_version(client) == champion.version)
    return champion


def test_the_gate_turns_a_model_that_accepts_any_ask_away_and_serving_stays(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    with TestClient(create_app(external), headers=OPERATOR) as client:
        champion = champion_and_app(external, sessions, client)
        play(client, 30)
        guard = SafeLearning(external, sessions, seed=1)
        pushover = fixed_policy(champion, BuyerMove.ACCEPT, champion.version + 1)
        status = guard.judge_candidate(
            pushover, negotiations=30, checkpoint=None, trained_from=None
        )
        assert status == "rejected"
        [candidate] = client.get("/api/models", params={"status": "rejected"}).json()
        assert candidate["version"] == pushover.version
        assert "surplus" in candidate["reason"] or "reward" in candidate["reason"]
        assert candidate["evaluation"] is not None
        assert client.get("/api/safety").json()["serving_version"] == champion.version
        assert client.get("/api/safety").json()["rejections"] == 1
        assert 'haggler_model_versions{status="rejected"} 1.0' in client.get("/metrics").text


def test_a_candidate_that_passes_starts_an_ab_test_whose_arms_are_recorded(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    with TestClient(
        create_app(external.model_copy(update={"ab_split": 0.5})), headers=OPERATOR
    ) as client:
        champion = champion_and_app(external, sessions, client)
        play(client, 20)
        guard = SafeLearning(external.model_copy(update={"ab_split": 0.5}), sessions, seed=2)
        twin = PolicySnapshot(champion.weights, champion.biases, champion.version + 1)
        assert guard.judge_candidate(twin, negotiations=20, checkpoint=None, trained_from=None) == (
            "candidate"
        )
        test = client.get("/api/safety").json()["running_test"]
        assert test["champion_version"] == champion.version
        assert test["challenger_version"] == twin.version
        service = client.app.state.runtime.service  # type: ignore[attr-defined]
        wait_for(lambda: service.ab_test is not None)

        played = play(client, 60, first_seed=100)
        versions = [p["model_version"] for p in played]
        assert 15 <= versions.count(twin.version) <= 45  # about half, chosen by id
        assert set(versions) == {champion.version, twin.version}

        verdict = guard.look_at_ab_test()
        assert verdict is not None and verdict.decision == "continue"  # too few to decide
        stored = client.get(f"/api/ab-tests/{test['id']}").json()
        assert stored["verdict"]["challenger"]["negotiations"] == versions.count(twin.version)

        # The operator decides by hand; the serving processes follow.
        decided = client.post(
            f"/api/ab-tests/{test['id']}/decision",
            json={"decision": "promote", "reason": "looks as good"},
            headers=OPERATOR,
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["status"] == "promoted"
        assert decided.json()["decided_by"] == "operator"
        wait_for(lambda: served_version(client) == twin.version)
        wait_for(lambda: service.ab_test is None)
        again = client.post(
            f"/api/ab-tests/{test['id']}/decision", json={"decision": "reject"}, headers=OPERATOR
        )
        assert again.status_code == 409
        assert "not running" in again.json()["detail"]


def test_a_model_that_loses_its_deals_is_rolled_back_to_the_known_good_one(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    with TestClient(create_app(external), headers=OPERATOR) as client:
        champion = champion_and_app(external, sessions, client)
        guard = SafeLearning(external, sessions, seed=3)
        play(client, 40)
        assert guard.look_at_live_results() is None  # the reference window is set
        with sessions() as session:
            assert experiments.monitor_mark(session=session).known_good == champion.version

        quitter = fixed_policy(champion, BuyerMove.WALK_AWAY, champion.version + 1)
        serve(sessions, quitter)
        wait_for(lambda: served_version(client) == quitter.version)
        play(client, 40, first_seed=1000)
        alarm = guard.look_at_live_results()
        assert alarm is not None
        assert alarm.figure == "deal_rate" and "fell to 0.0%" in alarm.reason

        safety = client.get("/api/safety").json()
        rolled = safety["last_rollback"]
        assert rolled["copy_of"] == champion.version
        assert safety["serving_version"] == rolled["version"] > quitter.version
        assert f"from version {quitter.version} to {champion.version}" in rolled["reason"]
        assert safety["rollbacks"] == 1
        wait_for(lambda: served_version(client) == rolled["version"])
        # The weights served again are the known good ones, bit for bit.
        observation = np.linspace(0, 1, OBSERVATION_SIZE, dtype=np.float32)
        served = client.app.state.runtime.service.snapshot  # type: ignore[attr-defined]
        np.testing.assert_array_equal(served.q_values(observation), champion.q_values(observation))
        metrics = client.get("/metrics").text
        assert "haggler_rollbacks_total 1.0" in metrics

        # The monitor does not fire again on the negotiations that caused the rollback.
        play(client, 10, first_seed=2000)
        assert guard.look_at_live_results() is None


def test_the_sellers_changing_under_the_known_good_model_rolls_nothing_back(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    with TestClient(create_app(external), headers=OPERATOR) as client:
        champion_and_app(external, sessions, client)
        guard = SafeLearning(external, sessions, seed=4)
        play(client, 40)
        guard.look_at_live_results()
        for seed in range(40):  # sellers who never come down: no deals for anyone
            client.post(
                "/api/negotiations",
                json={
                    "product_id": 3,
                    "max_unit_price": "120.00",
                    "seller": {"kind": "simulated", "strategy": "hardliner", "seed": seed},
                },
            )
        guard.look_at_live_results()
        assert client.get("/api/safety").json()["rollbacks"] == 0


def test_an_ab_test_whose_champion_is_replaced_is_stopped(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    with TestClient(create_app(external), headers=OPERATOR) as client:
        champion = champion_and_app(external, sessions, client)
        twin = PolicySnapshot(champion.weights, champion.biases, champion.version + 1)
        with sessions() as session:
            experiments.add_candidate(
                twin.to_bytes(),
                session=session,
                version=twin.version,
                negotiations=0,
                status="candidate",
                reason="passed",
                evaluation=None,
            )
            test = experiments.start_ab_test(champion.version, twin.version, 0.5, session=session)
            session.commit()
        serve(sessions, fixed_policy(champion, BuyerMove.HOLD, twin.version + 1))  # a restore
        guard = SafeLearning(external, sessions, seed=5)
        assert guard.look_at_ab_test() is None
        stopped = client.get(f"/api/ab-tests/{test.id}").json()
        assert stopped["status"] == "stopped"
        assert "replaced the champion" in stopped["reason"]
        [rejected] = client.get("/api/models", params={"status": "rejected"}).json()
        assert rejected["version"] == twin.version
        assert client.get("/api/safety").json()["running_test"] is None
