"""Online training in the background: the spec's log lines, steps, checkpoints, restore."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from haggler.config import DQNConfig, Settings
from haggler.core.features import N_MOVES, OBSERVATION_SIZE
from haggler.core.transitions import Transitions
from haggler.learning.checkpoints import list_checkpoints
from haggler.learning.dqn import BuyerAgent
from haggler.learning.learner import LearnerConfig, OnlineLearner, anchor_experience


def experiences(count: int, seed: int = 0) -> Transitions:
    rng = np.random.default_rng(seed)
    terminated = np.zeros(count, dtype=bool)
    terminated[-1] = True
    return Transitions(
        observation=rng.random((count, OBSERVATION_SIZE), dtype=np.float32),
        action_mask=np.ones((count, N_MOVES), dtype=bool),
        move=rng.integers(0, N_MOVES, count),
        reward=rng.uniform(-0.1, 0.3, count).astype(np.float32),
        next_observation=rng.random((count, OBSERVATION_SIZE), dtype=np.float32),
        next_action_mask=np.ones((count, N_MOVES), dtype=bool),
        terminated=terminated,
    )


@pytest.fixture
def learner(tiny_config: DQNConfig, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = LearnerConfig(
        train_steps=5,
        save_interval=3,
        keep_checkpoints=2,
        model_path=tmp_path / "models" / "buyer_agent.pth",
        checkpoint_dir=tmp_path / "models" / "checkpoints",
    )
    learner = OnlineLearner(BuyerAgent(tiny_config), config)
    yield learner
    learner.close()


def test_each_negotiation_logs_the_spec_lines(
    learner: OnlineLearner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="haggler.training")
    learner.submit(42, experiences(8))
    assert learner.wait_idle(30)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == "[Training] Starting online training from negotiation 42"
    assert lines[1] == "[Training] Processing 8 experiences"
    assert lines[2].startswith("[Training] Completed 5 training steps, avg loss: ")
    assert lines[3] == "[Training] Replay buffer size: 8"


def test_steps_are_capped_by_the_experiences(learner: OnlineLearner) -> None:
    learner.submit(1, experiences(3))
    assert learner.wait_idle(30)
    assert learner.agent.gradient_steps == 3
    learner.submit(2, experiences(9))
    assert learner.wait_idle(30)
    assert learner.agent.gradient_steps == 8


def test_training_publishes_new_serving_weights(learner: OnlineLearner) -> None:
    before = learner.agent.snapshot
    observation = experiences(1).observation[0]
    learner.submit(1, experiences(6))
    assert learner.wait_idle(30)
    after = learner.agent.snapshot
    assert after.version > before.version
    assert not np.allclose(before.q_values(observation), after.q_values(observation))


def test_a_checkpoint_every_save_interval_negotiations(
    learner: OnlineLearner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="haggler.training")
    for i in range(1, 8):
        learner.submit(i, experiences(4, seed=i))
    assert learner.wait_idle(30)
    saved = list_checkpoints(learner.config.checkpoint_dir)
    assert [info.negotiations for info in saved] == [3, 6]
    assert learner.config.model_path is not None and learner.config.model_path.is_file()
    messages = [r.getMessage() for r in caplog.records]
    assert "[Training] Model saved after 3 negotiations" in messages
    assert "[Training] Model saved after 6 negotiations" in messages
    assert learner.status.negotiations == 7


def test_an_unwritable_checkpoint_folder_is_logged_and_training_goes_on(
    tiny_config: DQNConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "checkpoints"
    blocker.write_text("a file where the folder should be")
    config = LearnerConfig(
        train_steps=2, save_interval=1, model_path=tmp_path / "m.pth", checkpoint_dir=blocker
    )
    learner = OnlineLearner(BuyerAgent(tiny_config), config)
    caplog.set_level(logging.INFO, logger="haggler.training")
    try:
        learner.submit(1, experiences(3))
        learner.submit(2, experiences(3))
        assert learner.wait_idle(30)
    finally:
        learner.close()
    assert learner.status.negotiations == 2
    assert learner.agent.gradient_steps == 4
    assert learner.status.checkpoint_error is not None
    assert "cannot write checkpoint to" in learner.status.checkpoint_error
    assert any("Checkpoint not saved" in r.getMessage() for r in caplog.records)


def test_restore_brings_back_the_saved_weights(learner: OnlineLearner, tmp_path: Path) -> None:
    observation = experiences(1).observation[0]
    saved = learner.agent.save_model(tmp_path / "before.pth")
    before = learner.agent.q_values(observation).copy()
    learner.submit(1, experiences(6))
    assert learner.wait_idle(30)
    assert not np.allclose(learner.agent.q_values(observation), before)
    learner.restore(saved)
    np.testing.assert_allclose(learner.agent.q_values(observation), before)


ANCHOR_LINE = re.compile(
    r"\[Training\] Replaying (\d+) simulated transitions as 50% of every batch \(\d+\.\d s\)"
)


def test_the_anchor_is_played_once_and_logged(
    tiny_config: DQNConfig, caplog: pytest.LogCaptureFixture
) -> None:
    agent = BuyerAgent(tiny_config)
    settings = Settings(_env_file=None, replay_anchor_negotiations=20)
    caplog.set_level(logging.INFO, logger="haggler.training")
    anchor_experience(
        agent, settings.replay_anchor_share, settings.replay_anchor_negotiations, seed=0
    )
    assert agent.anchor_buffer is not None
    assert agent.anchor_share == settings.replay_anchor_share == 0.5
    [line] = [r.getMessage() for r in caplog.records]
    match = ANCHOR_LINE.fullmatch(line)
    assert match is not None, line
    # Every negotiation has at least one buyer move.
    assert int(match[1]) == len(agent.anchor_buffer) >= 20
    anchor = agent.anchor_buffer
    anchor_experience(
        agent, settings.replay_anchor_share, settings.replay_anchor_negotiations, seed=1
    )  # an agent that already has one keeps it
    assert agent.anchor_buffer is anchor
    assert len(caplog.records) == 1


def test_at_share_zero_there_is_no_anchor(
    tiny_config: DQNConfig, caplog: pytest.LogCaptureFixture
) -> None:
    agent = BuyerAgent(tiny_config)
    settings = Settings(_env_file=None, replay_anchor_share=0.0)
    caplog.set_level(logging.INFO, logger="haggler.training")
    anchor_experience(
        agent, settings.replay_anchor_share, settings.replay_anchor_negotiations, seed=0
    )
    assert agent.anchor_buffer is None and agent.anchor_share == 0.0
    assert caplog.records == []


def test_during_a_promotion_warmup_checkpoints_are_written_but_not_the_main_model(
    tiny_config: DQNConfig, tmp_path: Path
) -> None:
    """The main model file keeps what serves until the warm-up ends: a restart in between must
    not serve the learner's weights early."""
    main = tmp_path / "models" / "buyer_agent.pth"
    config = LearnerConfig(
        save_interval=3,
        model_path=main,
        checkpoint_dir=tmp_path / "models" / "checkpoints",
        promotion_warmup=6,
    )
    learner = OnlineLearner(BuyerAgent(tiny_config), config)
    for i in range(1, 6):
        learner.submit(i, experiences(4, seed=i))
    assert learner.wait_idle(30)
    assert [c.negotiations for c in list_checkpoints(config.checkpoint_dir)] == [3]
    assert not main.exists()
    learner.submit(6, experiences(4, seed=6))
    assert learner.wait_idle(30)
    learner.close()
    assert [c.negotiations for c in list_checkpoints(config.checkpoint_dir)] == [3, 6]
    assert main.is_file()


def test_the_warmup_comes_from_the_settings() -> None:
    settings = Settings(_env_file=None, promotion_warmup=250)
    assert LearnerConfig.from_settings(settings).promotion_warmup == 250
