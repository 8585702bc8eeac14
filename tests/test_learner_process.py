"""The service's learner: takes finished negotiations from the store, trains, publishes versions
that serving follows; follows a restore; one learner at a time."""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from api_fixtures import OPERATOR
from haggler.api.app import create_app
from haggler.config import LEARNER_NICE, Settings
from haggler.core.features import OBSERVATION_SIZE
from haggler.learning import checkpoints
from haggler.learning.checkpoints import list_checkpoints
from haggler.learning.store_learner import StoreLearner
from haggler.serving.learner_supervisor import LearnerProcess
from haggler.store import counters, maintenance, versions
from haggler.store import experiences as experience_store
from haggler.store import metrics as metric_store
from haggler.store import snapshots as snapshot_store
from haggler.store.database import make_engine, session_factory
from haggler.store.tables import DecisionRow, NegotiationRow
from test_api_operations import play, wait_for


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


def learned_counter(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return counters.get_counter(counters.NEGOTIATIONS_LEARNED, session=session)


def queued(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return len(experience_store.negotiations_to_learn(session=session, limit=1000))


STARTING = re.compile(r"\[Training\] Starting online training from negotiation (\d+)")


def trainings_started(caplog: pytest.LogCaptureFixture) -> Counter[int]:
    """How many times the learner logged starting to train on each negotiation."""
    found = (STARTING.fullmatch(r.getMessage()) for r in caplog.records)
    return Counter(int(match[1]) for match in found if match is not None)


def fail_next_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next commit of any session fails as a full or failing disk makes it (rolled back)."""
    commit = Session.commit

    def failing_once(session: Session) -> None:
        monkeypatch.setattr(Session, "commit", commit)
        raise OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(Session, "commit", failing_once)


def test_a_failed_write_is_retried_without_taking_the_negotiations_in_twice(
    external: Settings,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The spec's counter and replay buffer hold each negotiation once, whatever fails."""
    with TestClient(create_app(external), headers=OPERATOR) as client:
        client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
        learner = StoreLearner(external, sessions)
        learner.start()
        first = serving(sessions)
        played = play(client, 2)
        rounds = sum(p["result"]["rounds"] for p in played)
        caplog.set_level(logging.INFO, logger="haggler.training")
        fail_next_commit(monkeypatch)
        with pytest.raises(OperationalError):
            learner.step()
        # Trained on in memory; nothing of it in the store: still queued, not counted, no version.
        assert learner.learner.status.negotiations == 2
        assert learner.agent.buffer_size == rounds
        assert (queued(sessions), learned_counter(sessions), serving(sessions)) == (2, 0, first)
        steps = learner.agent.gradient_steps
        assert learner.step() == 2  # the retry writes what the failed step took in
        assert queued(sessions) == 0
        assert learned_counter(sessions) == learner.learner.status.negotiations == 2
        assert learner.agent.buffer_size == rounds
        assert learner.agent.gradient_steps == steps  # not trained on again
        assert list(trainings_started(caplog).values()) == [1, 1]
        second = serving(sessions)
        assert second is not None and first is not None and second > first  # published
        with sessions() as session:
            [*_, point] = metric_store.training_history(session=session, limit=10)
        assert point.negotiations == 2 and point.loss is not None
        # A third negotiation is taken in and counted as usual after it.
        play(client, 1)
        assert learner.step() == 1
        assert learned_counter(sessions) == 3
        assert sorted(trainings_started(caplog).values()) == [1, 1, 1]


def test_a_learner_that_dies_before_its_write_leaves_the_negotiations_to_its_successor(
    external: Settings,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kill between training and marking: the store took nothing in, the next learner takes
    each negotiation in once (its replay buffer holds only what the store says was learned)."""
    with TestClient(create_app(external), headers=OPERATOR) as client:
        client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
        dying = StoreLearner(external, sessions)
        dying.start()
        played = play(client, 2)
        rounds = sum(p["result"]["rounds"] for p in played)
        fail_next_commit(monkeypatch)
        with pytest.raises(OperationalError):
            dying.step()
        dying.release()  # as the lease running out would, six seconds later
        successor = StoreLearner(external, sessions)
        successor.start()
        assert successor.agent.buffer_size == 0 and successor.learner.status.negotiations == 0
        assert successor.step() == 2
        assert learned_counter(sessions) == successor.learner.status.negotiations == 2
        assert successor.agent.buffer_size == rounds
        restarted = StoreLearner(external, sessions)
        restarted.start()  # rebuilt from the store: each experience once
        assert restarted.agent.buffer_size == rounds
        assert restarted.learner.status.negotiations == 2


def learned_with_experiences(sessions: sessionmaker[Session]) -> int:
    """Negotiations off the learner's queue that have experiences (the ones it counts)."""
    with sessions() as session:
        return session.execute(
            select(func.count(func.distinct(DecisionRow.negotiation_id)))
            .join(NegotiationRow, NegotiationRow.id == DecisionRow.negotiation_id)
            .where(NegotiationRow.learned_at.is_not(None))
        ).scalar_one()


def test_a_learner_process_killed_while_it_learns_counts_each_negotiation_once(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    """`kill -9` wherever the learner is (training, writing, checkpointing): what the store
    counts is exactly what it took off the queue, and the next learner counts the rest once."""
    with TestClient(create_app(external), headers=OPERATOR) as client:
        client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
        play(client, 36)
    with sessions() as session:
        finished = session.execute(
            select(func.count(func.distinct(DecisionRow.negotiation_id)))
        ).scalar_one()
    process = LearnerProcess(external)
    try:
        wait_for(lambda: learned_counter(sessions) > 0, timeout=120)
        assert process._process is not None
        process._process.kill()
        process._process.wait()
    finally:
        process.stop()
    killed_at = learned_counter(sessions)
    assert killed_at == learned_with_experiences(sessions)
    assert killed_at < finished, "the learner had finished before it was killed"
    with sessions() as session:  # its lease runs out (it would in 6 s)
        counters.set_counter(maintenance.LEARNER_LEASE, 0, session=session)
        session.commit()
    successor = StoreLearner(external, sessions)
    successor.start()
    while successor.step():
        pass
    assert learned_counter(sessions) == learned_with_experiences(sessions) == finished
    assert successor.learner.status.negotiations == finished


def test_with_training_off_experiences_are_kept_but_no_version_is_published(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    with TestClient(create_app(external), headers=OPERATOR) as client:
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
    with TestClient(create_app(external), headers=OPERATOR) as client:
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
    with TestClient(create_app(external), headers=OPERATOR) as client:
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
    with TestClient(create_app(external), headers=OPERATOR) as client:
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
        assert queued(sessions) == 1  # the negotiation waits for the next step, not lost
        trained = learner.learner.status.negotiations
        buffered = learner.agent.buffer_size
        assert learner.step() == 1  # written now, without taking it in again
        assert queued(sessions) == 0
        assert learned_counter(sessions) == learner.learner.status.negotiations == trained
        assert learner.agent.buffer_size == buffered


def test_one_learner_at_a_time_and_a_standby_takes_over_when_it_stops(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    with TestClient(create_app(external), headers=OPERATOR) as client:
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
    with TestClient(create_app(external), headers=OPERATOR) as client:
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


def test_the_learner_process_yields_to_serving_without_being_idle(external: Settings) -> None:
    """Nice +10 under the normal policy: a busy core goes to serving first, and the learner
    still gets its share of it (at SCHED_IDLE it made no update in 150 s on a busy machine)."""
    serving_nice = os.getpriority(os.PRIO_PROCESS, 0)
    process = LearnerProcess(external)
    try:
        assert process._process is not None
        pid = process._process.pid
        wait_for(
            lambda: os.getpriority(os.PRIO_PROCESS, pid) == min(serving_nice + LEARNER_NICE, 19)
        )
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    finally:
        process.stop()


WRITE_PRIORITY = """
import os
from haggler.cli.service import _background_cpu_priority
nice = lambda: os.getpriority(os.PRIO_PROCESS, 0)
start = nice()
write_priority = _background_cpu_priority(10)
background = nice()
with write_priority():
    writing = nice()
print(start, background, writing, nice(), os.sched_getscheduler(0) == os.SCHED_OTHER)
"""


def may_raise_priority() -> bool:
    """Whether a process here may lower its nice value again (CAP_SYS_NICE or RLIMIT_NICE)."""
    code = "import os; os.nice(1); os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(0, 0) - 1)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_the_learner_writes_at_the_services_priority_where_it_may() -> None:
    """The store's write lock is held at the service's priority where the process may take it
    back (on SQLite every serving process waits for the lock), else at the learner's own."""
    ran = subprocess.run(
        [sys.executable, "-c", WRITE_PRIORITY], capture_output=True, text=True, check=True
    )
    start, background, writing, after, normal_policy = ran.stdout.split()
    assert int(background) == min(int(start) + LEARNER_NICE, 19) == int(after)
    assert int(writing) == (int(start) if may_raise_priority() else int(background))
    assert normal_policy == "True"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="drops CAP_SYS_NICE with setpriv, as root",
)
def test_without_cap_sys_nice_the_learner_writes_at_its_own_priority() -> None:
    """Where the service's priority cannot be taken back, the learner still writes (the
    SCHED_IDLE learner failed at its first write there: EPERM leaving SCHED_IDLE)."""
    ran = subprocess.run(
        [
            *("setpriv", "--bounding-set=-sys_nice", "--inh-caps=-sys_nice"),
            *(sys.executable, "-c", WRITE_PRIORITY),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    start, background, writing, after, normal_policy = ran.stdout.split()
    assert int(background) == int(writing) == int(after) == min(int(start) + LEARNER_NICE, 19)
    assert normal_policy == "True"


def test_a_promotion_warmup_publishes_no_version_before_enough_negotiations_were_learned(
    external: Settings, sessions: sessionmaker[Session]
) -> None:
    warming = external.model_copy(update={"promotion_warmup": 3})
    with TestClient(create_app(warming), headers=OPERATOR) as client:
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


def test_a_learner_that_falls_behind_merges_what_waits_and_keeps_every_negotiation(
    external: Settings, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """Past its pace the learner takes every waiting negotiation in at once, in larger
    minibatches, and says so: none is lost, counted twice or left waiting."""
    pressed = external.model_copy(update={"learner_max_delay": 1.0})
    with TestClient(create_app(pressed), headers=OPERATOR) as client:
        client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
        learner = StoreLearner(pressed, sessions)
        learner.start()
        play(client, 2)
        assert learner.step() == 2  # one by one: this step measures the pace
        assert learner.pace.seconds_per_step is not None
        played = play(client, 12)
        buffered = learner.agent.buffer_size
        first = serving(sessions)
        # A pace at which 12 negotiations take longer than half of LEARNER_MAX_DELAY:
        learner.pace.seconds_per_step = 0.1
        caplog.set_level(logging.INFO, logger="haggler.training")
        assert learner.step() == 12
        messages = [r.getMessage() for r in caplog.records]
        assert not trainings_started(caplog)  # not one by one
        assert any(m.startswith("[Training] Behind: merging 12 negotiations") for m in messages)
        assert any(m.startswith("[Training] Completed ") for m in messages)
        assert queued(sessions) == 0
        assert learned_counter(sessions) == learner.learner.status.negotiations == 14
        assert learner.agent.buffer_size == buffered + sum(p["result"]["rounds"] for p in played)
        published = serving(sessions)
        assert published is not None and first is not None and published > first
        with sessions() as session:
            merged = counters.get_counter(counters.NEGOTIATIONS_MERGED, session=session)
            [*_, point] = metric_store.training_history(session=session, limit=10)
        assert merged == 12
        assert (point.merged, point.pending, point.negotiations) == (12, 0, 14)
        assert point.samples_per_negotiation is not None and point.samples_per_negotiation > 0
        assert point.delay_s is not None and point.delay_s >= 0
        # SAVE_INTERVAL 3: the merge went past 12 and 15 is not reached; a checkpoint at 14.
        assert point.checkpoint is not None and "_n14_" in point.checkpoint
        # Caught up, it trains one by one again.
        learner.pace.seconds_per_step = 1e-6
        play(client, 1)
        caplog.clear()
        assert learner.step() == 1
        assert len(trainings_started(caplog)) == 1


def test_a_learner_that_keeps_up_trains_on_each_negotiation_as_the_spec_says(
    external: Settings, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    keeping_up = external.model_copy(update={"learner_max_delay": 1.0, "save_interval": 100})
    with TestClient(create_app(keeping_up), headers=OPERATOR) as client:
        client.put("/api/training", json={"enabled": True}, headers=OPERATOR)
        learner = StoreLearner(keeping_up, sessions)
        learner.start()
        play(client, 1)
        learner.step()
        learner.pace.seconds_per_step = 1e-6  # a pace at which 3 negotiations fit easily
        caplog.set_level(logging.INFO, logger="haggler.training")
        played = play(client, 3)
        assert learner.step() == 3
        assert sorted(trainings_started(caplog).values()) == [1, 1, 1]
        assert sum(m.getMessage().startswith("[Training] Processing") for m in caplog.records) == 3
        with sessions() as session:
            [*_, point] = metric_store.training_history(session=session, limit=10)
            assert counters.get_counter(counters.NEGOTIATIONS_MERGED, session=session) == 0
        assert (point.merged, point.pending) == (0, 0)
        steps = sum(min(p["result"]["rounds"], 5) for p in played)
        assert point.samples_per_negotiation == steps * learner.agent.config.batch_size / 3
