"""Offline pretraining against simulated sellers, on tiny budgets."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from haggler.config import DQNConfig
from haggler.core.features import OBSERVATION_SIZE
from haggler.core.scenarios import EVALUATION_STREAM, TRAINING_STREAM, scenario_rng
from haggler.core.sellers import HELD_OUT_STRATEGIES, TRAINING_STRATEGIES
from haggler.learning.dqn import BuyerAgent
from haggler.learning.pretraining import (
    STARTER_ENV_STEPS,
    PretrainConfig,
    PretrainProgress,
    pretrain,
)

TINY = PretrainConfig(seconds=None, env_steps=3000, n_envs=8, learning_starts=500)
OBSERVATIONS = np.linspace(0.0, 1.0, OBSERVATION_SIZE * 4, dtype=np.float32).reshape(
    4, OBSERVATION_SIZE
)


@pytest.fixture
def small_config() -> DQNConfig:
    return DQNConfig(hidden_sizes=(64, 64), batch_size=64, buffer_size=10_000, seed=0)


def test_pretrain_fills_the_buffer_takes_gradient_steps_and_reports(
    small_config: DQNConfig,
) -> None:
    agent = BuyerAgent(small_config)
    untrained = agent.q_values(OBSERVATIONS).copy()
    reports: list[PretrainProgress] = []
    progress = pretrain(agent, TINY, lambda p: reports.append(dataclasses.replace(p)))

    assert progress.env_steps == 3000
    assert agent.buffer_size == 3000
    # gradient steps after every batch of 8 moves, from the batch that reaches 500 transitions on
    expected_steps = ((3000 - 504) // 8 + 1) * TINY.gradient_steps_per_batch
    assert progress.gradient_steps == agent.gradient_steps == expected_steps
    assert np.isfinite(progress.loss)
    assert progress.episodes > 3000 / 15  # negotiations last at most ~15 moves
    assert np.isfinite(progress.mean_return)
    assert -1.2 <= progress.mean_return <= 1.0
    assert progress.epsilon == pytest.approx(TINY.epsilon_end)
    assert progress.seconds > 0
    assert reports, "progress is reported at least once"
    assert reports[-1].env_steps == progress.env_steps
    steps = [report.env_steps for report in reports]
    assert steps == sorted(steps)
    assert not np.allclose(agent.q_values(OBSERVATIONS), untrained), "the served model changed"


def test_no_gradient_step_before_learning_starts(small_config: DQNConfig) -> None:
    agent = BuyerAgent(small_config)
    config = dataclasses.replace(TINY, env_steps=400, learning_starts=1000)
    progress = pretrain(agent, config)
    assert progress.gradient_steps == agent.gradient_steps == 0
    assert np.isnan(progress.loss)
    assert agent.buffer_size == 400


def test_pretraining_is_reproducible_with_the_same_seeds(small_config: DQNConfig) -> None:
    """The same seed and budget in steps give the same weights, bit for bit, on any machine."""
    config = dataclasses.replace(TINY, env_steps=1200)
    first, second = BuyerAgent(small_config), BuyerAgent(small_config)
    first_progress = pretrain(first, config)
    second_progress = pretrain(second, config)
    assert first_progress.env_steps == second_progress.env_steps == 1200
    assert first_progress.gradient_steps == second_progress.gradient_steps > 0
    weights, again = first.q_network.state_dict(), second.q_network.state_dict()
    assert weights.keys() == again.keys()
    for name, tensor in weights.items():
        assert torch.equal(tensor, again[name]), name
    np.testing.assert_array_equal(first.q_values(OBSERVATIONS), second.q_values(OBSERVATIONS))
    # Another scenario seed trains other weights: the seed is what makes the run repeatable.
    other = BuyerAgent(small_config)
    pretrain(other, dataclasses.replace(config, seed=1))
    assert not all(torch.equal(t, other.q_network.state_dict()[n]) for n, t in weights.items())


def test_the_default_budget_is_the_starter_models_in_steps_not_seconds() -> None:
    assert PretrainConfig().env_steps == STARTER_ENV_STEPS == 400_000
    assert PretrainConfig().seconds is None


def test_a_wall_clock_budget_stops_training(small_config: DQNConfig) -> None:
    agent = BuyerAgent(small_config)
    started = time.perf_counter()
    progress = pretrain(agent, PretrainConfig(seconds=0.5, n_envs=8, learning_starts=500))
    assert progress.seconds >= 0.5
    assert time.perf_counter() - started < 5.0
    assert progress.env_steps > 0


def test_pretraining_needs_a_budget(small_config: DQNConfig) -> None:
    with pytest.raises(ValueError, match="budget"):
        pretrain(BuyerAgent(small_config), PretrainConfig(seconds=None, env_steps=None))


def test_pretraining_never_uses_the_held_out_sellers() -> None:
    assert PretrainConfig().strategies == TRAINING_STRATEGIES
    assert not set(PretrainConfig().strategies) & set(HELD_OUT_STRATEGIES)


def test_training_and_evaluation_scenario_streams_differ() -> None:
    training = scenario_rng(TRAINING_STREAM, 1).integers(2**62, size=8)
    evaluation = scenario_rng(EVALUATION_STREAM, 1).integers(2**62, size=8)
    assert not set(training.tolist()) & set(evaluation.tolist())
    again = scenario_rng(TRAINING_STREAM, 1).integers(2**62, size=8)
    np.testing.assert_array_equal(training, again)


def _train_recording_iterates(
    agent: BuyerAgent, config: PretrainConfig
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """Pretrain `agent`, recording the online network after every batch of gradient steps:
    (all iterates, those taken once `config.average_from` of the budget was spent)."""
    assert config.env_steps is not None
    every: list[dict[str, torch.Tensor]] = []
    late: list[dict[str, torch.Tensor]] = []
    train_steps = agent.train_steps

    def recording(steps: int, **kwargs: int | None) -> float:
        loss = train_steps(steps, **kwargs)  # type: ignore[arg-type]
        weights = {k: v.clone() for k, v in agent.q_network.state_dict().items()}
        every.append(weights)
        # The buffer holds every move so far; this batch's were added just before training.
        spent = (agent.buffer_size - config.n_envs) / config.env_steps  # type: ignore[operator]
        if config.average_from is not None and spent >= config.average_from:
            late.append(weights)
        return loss

    agent.train_steps = recording  # type: ignore[method-assign]
    pretrain(agent, config)
    return every, late


def test_the_trained_model_is_the_average_of_the_late_iterates(small_config: DQNConfig) -> None:
    """Stochastic weight averaging: the model is the mean of the online network over the second
    half of the budget, not the last iterate, whose luck varied from seed to seed."""
    config = dataclasses.replace(TINY, average_from=0.5)
    agent = BuyerAgent(small_config)
    every, late = _train_recording_iterates(agent, config)
    assert 0 < len(late) < len(every)
    for name, tensor in agent.q_network.state_dict().items():
        mean = torch.stack([weights[name] for weights in late]).mean(dim=0)
        torch.testing.assert_close(tensor, mean)
        assert not torch.equal(tensor, every[-1][name])
        torch.testing.assert_close(agent.target_network.state_dict()[name], mean)
    # What serves is the average too.
    with torch.no_grad():
        served = agent.q_network(torch.as_tensor(OBSERVATIONS)).numpy()
    np.testing.assert_allclose(agent.q_values(OBSERVATIONS), served, rtol=1e-5, atol=1e-6)


def test_without_averaging_the_model_is_the_last_iterate(small_config: DQNConfig) -> None:
    agent = BuyerAgent(small_config)
    every, late = _train_recording_iterates(agent, dataclasses.replace(TINY, average_from=None))
    assert not late
    for name, tensor in agent.q_network.state_dict().items():
        assert torch.equal(tensor, every[-1][name])
    assert PretrainConfig().average_from == 0.5


@pytest.mark.parametrize("share", [-0.1, 1.0, 2.0])
def test_averaging_starts_within_the_budget(share: float) -> None:
    with pytest.raises(ValueError, match="average_from"):
        PretrainConfig(average_from=share)
