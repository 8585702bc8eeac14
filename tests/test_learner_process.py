"""The service's learner: takes finished negotiations from the store, trains, publishes versions
that serving follows; follows a restore; one learner at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from haggler.api.app import create_app
from haggler.config import Settings
from haggler.core.features import OBSERVATION_SIZE
from haggler.learning import checkpoints
from haggler.learning.checkpoints import list_checkpoints
from haggler.learning.store_learner import StoreLearner
from haggler.serving.learner_supervisor import LearnerProcess
from haggler.store import experiences as experience_store
from haggler.store import snapshots as snapshot_store
from haggler.store import versions
from haggler.store.database import make_engine, session_factory
from test_api_operations import OPERATOR, play, wait_for


@pytest.fixture
def external(settings: Settings) -> Settings:
    """The service with no learner of its own: the test steps one by hand."""
    return settings.model_copy(update={"learner": "external", "save_interval": 3})


@pytest.fixture
def sessions(external: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(external.database_url)
    yield session_factory(engine)
    engine.dispose()


def serving(sessions: sessionmaker[Session]) -> int | None:
    with sessions() as session:
        return snapshot_store.serving_version(session=session)


def test_with_training_off_experiences_are_kept_but_no_version_is_published(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    with TestClient(create_app(external)) as client:
        played = play(client, 3)
        learner = StoreLearner(external, sessions)
        learner.start()
        before = serving(sessions)
        assert learner.step() == 3
        assert learner.step() == 0  # taken in once
        assert learner.agent.buffer_size == sum(p["result"]["rounds"] for p in played)
        assert learner.agent.anchor_buffer is None  # played only once training is on
        assert serving(sessions) == before
        assert client.get("/api/training").json()["negotiations_trained"] == 0


def test_with_training_on_each_step_publishes_a_version_that_serving_follows(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    with TestClient(create_app(external)) as client:
        client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
        learner = StoreLearner(external, sessions)
        learner.start()
        first = serving(sessions)
        assert first is not None
        play(client, 2)
        assert learner.agent.anchor_buffer is None
        assert learner.step() == 2
        # Simulated experience, replayed as REPLAY_ANCHOR_SHARE of every minibatch from now on.
        anchor = learner.agent.anchor_buffer
        assert anchor is not None and len(anchor) >= external.replay_anchor_negotiations
        assert learner.agent.anchor_share == external.replay_anchor_share == 0.5
        second = serving(sessions)
        assert second is not None and second > first
        wait_for(lambda: client.get("/api/training").json()["model_version"] == second)
        # The served weights are the learner's, bit for bit.
        observation = np.linspace(0, 1, OBSERVATION_SIZE, dtype=np.float32)
        served = client.app.state.runtime.service.snapshot
        np.testing.assert_array_equal(
            served.q_values(observation), learner.agent.snapshot.q_values(observation)
        )
        # SAVE_INTERVAL=3: the step that reaches 3 stops there, so the checkpoint holds exactly 3.
        play(client, 3)
        assert learner.step() == 1
        [checkpoint] = list_checkpoints(external.checkpoint_dir)
        assert checkpoint.negotiations == 3
        assert learner.step() == 2
        history = client.get("/api/training/history").json()["points"]
        assert [p["negotiations"] for p in history] == [0, 2, 3, 5]
        assert history[2]["checkpoint"] == checkpoint.path.name
        assert all(p["loss"] is not None for p in history[1:])


def trained_to_a_checkpoint(
    client: TestClient, external: Settings, sessions: sessionmaker[Session]
) -> tuple[StoreLearner, Path]:
    """Training on, a learner that has taken in SAVE_INTERVAL (3) negotiations: its checkpoint."""
    client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
    learner = StoreLearner(external, sessions)
    learner.start()
    play(client, 3)
    learner.step()
    [checkpoint] = list_checkpoints(external.checkpoint_dir)
    return learner, checkpoint.path


def test_after_a_restore_the_learner_learns_on_from_the_restored_checkpoint(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    with TestClient(create_app(external)) as client:
        learner, checkpoint = trained_to_a_checkpoint(client, external, sessions)
        checkpointed = learner.agent.snapshot
        play(client, 2)
        learner.step()
        restored = client.post(
            "/api/checkpoints/restore", json={"checkpoint": checkpoint.name}, headers=OPERATOR
        ).json()["model_version"]
        client.put("/api/training", json={"enabled": False}, headers=OPERATOR)
        play(client, 1)
        learner.step()  # follows the restore; with training off it changes nothing else
        assert learner.version == restored
        observation = np.linspace(0, 1, OBSERVATION_SIZE, dtype=np.float32)
        np.testing.assert_array_equal(
            learner.agent.snapshot.q_values(observation), checkpointed.q_values(observation)
        )
        client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
        play(client, 1)
        learner.step()
        assert learner.version is not None and learner.version > restored
        with sessions() as session:
            log = snapshot_store.model_log(session=session, limit=3)
        assert [m.source for m in log] == ["training", "restore", "training"]


def test_a_learner_that_lost_the_race_to_a_restore_publishes_nothing(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    with TestClient(create_app(external)) as client:
        learner, checkpoint = trained_to_a_checkpoint(client, external, sessions)
        play(client, 1)
        learner.version = serving(sessions)
        # The operator restores after the learner read the store but before it published:
        checkpoints.restore(checkpoint, external.checkpoint_dir, sessions)
        restored = serving(sessions)
        stale = learner.version
        learner._follow = lambda session, serving: None  # type: ignore[method-assign]
        assert learner.step() == 0
        assert serving(sessions) == restored and learner.version == stale
        with sessions() as session:  # the negotiation waits for the next step, not lost
            assert len(experience_store.negotiations_to_learn(session=session, limit=10)) == 1


def test_one_learner_at_a_time_and_a_standby_takes_over_when_it_stops(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    with TestClient(create_app(external)) as client:
        client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
        assert client.get("/api/training").json()["learner_ready"] is False
        first, second = StoreLearner(external, sessions), StoreLearner(external, sessions)
        first.start()
        assert client.get("/api/training").json()["learner_ready"] is True
        second.start()
        play(client, 2)
        assert second.step() == 0  # standing by: the first holds the store
        assert first.step() == 2
        first.release()
        assert client.get("/api/training").json()["learner_ready"] is False
        play(client, 1)
        assert second.step() == 1
        assert client.get("/api/training").json()["learner_ready"] is True
        assert first.step() == 0


def test_old_weights_are_dropped_by_the_tidy_step_not_while_publishing(
    external: Settings, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(versions, "KEEP_WEIGHTS", 2)
    with TestClient(create_app(external)) as client:
        client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
        learner = StoreLearner(external, sessions)
        learner.start()
        for _ in range(4):  # four updates, each published as a version of its own
            play(client, 1)
            assert learner.step() == 1

        def with_weights() -> int:
            with sessions() as session:
                return sum(
                    snapshot_store.get_snapshot(m.version, session=session).weights is not None
                    for m in snapshot_store.model_log(session=session, limit=100)
                )

        assert with_weights() == 5  # the starter and four updates: nothing dropped yet
        learner._tidy_store()
        assert with_weights() == 2
        assert serving(sessions) == learner.version  # the serving weights are kept


def test_a_learner_process_that_dies_is_started_again(
    external: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LearnerProcess, "RESTART_AFTER", 0.0)
    process = LearnerProcess(external)
    try:
        assert process.alive()
        assert process._process is not None
        process._process.kill()
        process._process.wait()
        assert not process.alive()
        process.keep_alive()
        assert process.alive() and process.restarts == 1
    finally:
        process.stop()
    assert not process.alive()


def test_a_promotion_warmup_publishes_no_version_before_enough_negotiations_were_learned(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    warming = external.model_copy(update={"promotion_warmup": 3})
    with TestClient(create_app(warming)) as client:
        client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
        learner = StoreLearner(warming, sessions)
        learner.start()
        first = serving(sessions)
        assert first is not None
        play(client, 2)
        assert learner.step() == 2
        assert learner.learner.status.negotiations == 2
        assert learner.agent.gradient_steps > 0  # it learns, but nothing it learned serves
        assert serving(sessions) == first
        assert {p["model_version"] for p in play(client, 1)} == {first}
        assert learner.step() == 1
        second = serving(sessions)
        assert second is not None and second > first
        wait_for(lambda: client.get("/api/training").json()["model_version"] == second)
        assert {p["model_version"] for p in play(client, 1)} == {second}
