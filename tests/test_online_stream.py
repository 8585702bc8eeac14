"""The online harness on tiny settings: both promotion modes over a stream, replay from a seed,
and the gate against a poisoned candidate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from haggler.bench import online_stream
from haggler.bench.safety import POISONERS, POPULATION_B
from haggler.config import DQNConfig
from haggler.core.sellers import ALL_STRATEGIES, TRAINING_STRATEGIES
from haggler.learning.pretraining import PretrainConfig
from haggler.safety.promotion import GateConfig

TINY = DQNConfig(hidden_sizes=(32,), batch_size=32, buffer_size=5_000, target_update_interval=50)
# The last iterate, not an average: in 4,000 steps the network still changes fast, and the
# average of its second half is a weaker start than the poisoning test below needs.
TINY_PRETRAIN = PretrainConfig(
    seconds=None, n_envs=8, learning_starts=500, gradient_steps_per_batch=2, average_from=None
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def start_model(models: Path) -> Path:
    """A tiny model pretrained briefly on the training sellers."""
    return online_stream.pretrained_model(
        TRAINING_STRATEGIES,
        seed=0,
        env_steps=4_000,
        cache_dir=models,
        dqn=TINY,
        pretrain_config=TINY_PRETRAIN,
        name="tiny",
    )


def test_immediate_mode_serves_every_update_and_reports_every_interval(start_model: Path) -> None:
    stream = online_stream.stream_of(POPULATION_B, 24, seed=0)
    held_out = online_stream.suite_of(POPULATION_B, 150, key=0)
    config = online_stream.online_config("immediate+epsilon", learning_rate=1e-3)
    lines: list[str] = []
    run = online_stream.run_stream(
        start_model, stream, held_out, config, seed=0, measure_every=8, log=lines.append
    )

    assert [p.negotiations for p in run.points] == [0, 8, 16, 24]
    assert len(lines) == 4 and "held-out" in lines[-1]
    # Every negotiation's update served at once: 24 new versions, none rejected.
    assert run.points[-1].promotions == 24 and run.points[-1].rejections == 0
    versions = [p.served_version for p in run.points]
    assert versions == sorted(set(versions))  # a new version at every checkpoint
    assert run.points[0].vs_start.mean == 0.0
    assert run.points[-1].held_out.mean != run.points[0].held_out.mean  # it learned
    assert run.live.shape == run.frozen_live.shape == (24,)
    assert np.all((run.live >= 0.0) & (run.live <= 1.0))


def test_the_same_seed_replays_the_same_stream(start_model: Path) -> None:
    stream = online_stream.stream_of(POPULATION_B, 6, seed=3)
    held_out = online_stream.suite_of(POPULATION_B, 40, key=0)
    config = online_stream.online_config("immediate+safe")
    runs = [
        online_stream.run_stream(start_model, stream, held_out, config, seed=3, measure_every=6)
        for _ in range(2)
    ]
    assert np.array_equal(runs[0].live, runs[1].live)
    assert runs[0].final.mean == runs[1].final.mean
    assert online_stream.stream_of(POPULATION_B, 6, seed=4) != stream


def test_gated_mode_judges_a_candidate_every_save_interval(start_model: Path) -> None:
    stream = online_stream.stream_of(POPULATION_B, 20, seed=1)
    held_out = online_stream.suite_of(POPULATION_B, 100, key=0)
    config = online_stream.online_config(
        "gated+safe", save_interval=5, gate=small_gate(), learning_rate=1e-3
    )
    run = online_stream.run_stream(start_model, stream, held_out, config, seed=1, measure_every=10)

    last = run.points[-1]
    assert last.promotions + last.rejections == 4  # one candidate each 5 negotiations
    # Only the champion serves: versions move only when a candidate passed.
    if last.promotions == 0:
        assert {p.served_version for p in run.points} == {run.points[0].served_version}
    assert sum(run.rejection_reasons.values()) == last.rejections


def test_the_gate_rejects_a_poisoned_candidate_and_the_served_version_stays(
    start_model: Path,
) -> None:
    online = online_stream.OnlineStream(
        start_model,
        online_stream.online_config("gated+epsilon", gate=small_gate(), save_interval=1_000),
        seed=0,
    )
    for scenario in online_stream.stream_of(TRAINING_STRATEGIES, 40, seed=0):
        online.negotiate(scenario)  # logs for the gate to read
    served = online.champion

    # A learner trained hard on sellers that only ever take their first ask.
    poisoned = online_stream.OnlineStream(
        start_model,
        online_stream.online_config("immediate+epsilon", learning_rate=3e-3, train_steps=40),
        seed=0,
    )
    for scenario in online_stream.stream_of(POISONERS, 150, seed=0):
        poisoned.negotiate(scenario)
    candidate = poisoned.champion
    suite = online_stream.suite_of(ALL_STRATEGIES, 300, key=1)
    assert (
        online_stream.measure(candidate, suite).mean
        < online_stream.measure(served, suite).mean - 0.05
    )

    assert online.judge(candidate) is False
    assert online.champion is served and online.rejections == 1 and online.promotions == 0


def small_gate() -> GateConfig:
    return GateConfig(suite_episodes=120, resamples=200, min_effective_sample_size=5.0)


def test_a_warmup_keeps_the_start_serving_until_enough_negotiations_were_learned(
    start_model: Path,
) -> None:
    online = online_stream.OnlineStream(
        start_model,
        online_stream.online_config("immediate+epsilon", warmup=3, learning_rate=1e-3),
        seed=0,
    )
    stream = online_stream.stream_of(TRAINING_STRATEGIES, 4, seed=0)
    for scenario in stream[:2]:
        online.negotiate(scenario)
        assert online.champion is online.start and online.promotions == 0
    assert online.learner.gradient_steps > 0  # learning all along
    online.negotiate(stream[2])  # the third: warm, its update serves at once
    assert online.promotions == 1 and online.champion.version > online.start.version
    online.negotiate(stream[3])
    assert online.promotions == 2
