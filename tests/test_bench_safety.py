"""The safety benchmarks on tiny settings: the online harness in both modes, the gate against a
poisoned candidate, the poisoning sellers, and the reports and files a user gets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from haggler import bench_safety as bs
from haggler.catalogue import SEED_CATALOGUE
from haggler.config import DQNConfig
from haggler.negotiation import (
    Action,
    Move,
    Outcome,
    Party,
    Terms,
    apply_move,
    open_negotiation,
)
from haggler.promotion import GateConfig
from haggler.sellers import (
    ALL_STRATEGIES,
    HELD_OUT_STRATEGIES,
    TRAINING_STRATEGIES,
    make_seller,
)
from haggler.training import PretrainConfig

TINY = DQNConfig(hidden_sizes=(32,), batch_size=32, buffer_size=5_000, target_update_interval=50)
TINY_PRETRAIN = PretrainConfig(
    seconds=None, n_envs=8, learning_starts=500, gradient_steps_per_batch=2
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def start_model(models: Path) -> Path:
    """A tiny model pretrained briefly on the training sellers."""
    return bs.pretrained_model(
        TRAINING_STRATEGIES,
        seed=0,
        env_steps=4_000,
        cache_dir=models,
        dqn=TINY,
        pretrain_config=TINY_PRETRAIN,
        name="tiny",
    )


# -- the poisoning sellers ----------------------------------------------------------------------


def test_take_it_or_leave_it_is_benchmark_only() -> None:
    for strategies in (ALL_STRATEGIES, TRAINING_STRATEGIES, HELD_OUT_STRATEGIES):
        assert "take_it_or_leave_it" not in strategies
    assert make_seller("take_it_or_leave_it", 100.0, np.random.default_rng(0)).strategy == (
        "take_it_or_leave_it"
    )
    with pytest.raises(ValueError, match="unknown seller strategy"):
        make_seller("no_such_seller", 100.0, np.random.default_rng(0))


@pytest.mark.parametrize("seed", range(20))
def test_take_it_or_leave_it_asks_near_its_reserve_sells_at_the_ask_and_walks_from_counters(
    seed: int,
) -> None:
    product = SEED_CATALOGUE[seed % len(SEED_CATALOGUE)]
    seller = make_seller("take_it_or_leave_it", product.list_price, np.random.default_rng(seed))
    ask = seller.opening_ask()
    assert 0.9 * product.list_price <= ask <= product.list_price + 0.01  # a high ask
    assert 0.97 * ask - 0.01 <= seller.reserve <= ask  # little room below it
    terms = Terms(list_price=product.list_price, buyer_limit=product.list_price * 1.1)

    accepted = apply_move(open_negotiation(terms, ask), Party.BUYER, Action.accept())
    assert accepted.outcome is Outcome.DEAL and accepted.deal_price == ask

    # Any counter-offer, even one within a cent of the ask, makes it leave.
    for bid in (round(ask * 0.5, 2), round(ask - 0.01, 2)):
        state = apply_move(open_negotiation(terms, ask), Party.BUYER, Action.counter(bid))
        assert seller.respond(state).move is Move.WALK_AWAY


# -- the online harness -------------------------------------------------------------------------


def test_immediate_mode_serves_every_update_and_reports_every_interval(start_model: Path) -> None:
    stream = bs.stream_of(bs.POPULATION_B, 24, seed=0)
    held_out = bs.suite_of(bs.POPULATION_B, 150, key=0)
    config = bs.online_config("immediate+epsilon", learning_rate=1e-3)
    lines: list[str] = []
    run = bs.run_stream(
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
    stream = bs.stream_of(bs.POPULATION_B, 6, seed=3)
    held_out = bs.suite_of(bs.POPULATION_B, 40, key=0)
    config = bs.online_config("immediate+safe")
    runs = [
        bs.run_stream(start_model, stream, held_out, config, seed=3, measure_every=6)
        for _ in range(2)
    ]
    assert np.array_equal(runs[0].live, runs[1].live)
    assert runs[0].final.mean == runs[1].final.mean
    assert bs.stream_of(bs.POPULATION_B, 6, seed=4) != stream


def test_gated_mode_judges_a_candidate_every_save_interval(start_model: Path) -> None:
    stream = bs.stream_of(bs.POPULATION_B, 20, seed=1)
    held_out = bs.suite_of(bs.POPULATION_B, 100, key=0)
    config = bs.online_config("gated+safe", save_interval=5, gate=_small_gate(), learning_rate=1e-3)
    run = bs.run_stream(start_model, stream, held_out, config, seed=1, measure_every=10)

    last = run.points[-1]
    assert last.promotions + last.rejections == 4  # one candidate each 5 negotiations
    # Only the champion serves: versions move only when a candidate passed.
    if last.promotions == 0:
        assert {p.served_version for p in run.points} == {run.points[0].served_version}
    assert sum(run.rejection_reasons.values()) == last.rejections


def test_the_gate_rejects_a_poisoned_candidate_and_the_served_version_stays(
    start_model: Path,
) -> None:
    online = bs.OnlineStream(
        start_model,
        bs.online_config("gated+epsilon", gate=_small_gate(), save_interval=1_000),
        seed=0,
    )
    for scenario in bs.stream_of(TRAINING_STRATEGIES, 40, seed=0):
        online.negotiate(scenario)  # logs for the gate to read
    served = online.champion

    # A learner trained hard on sellers that only ever take their first ask.
    poisoned = bs.OnlineStream(
        start_model,
        bs.online_config("immediate+epsilon", learning_rate=3e-3, train_steps=40),
        seed=0,
    )
    for scenario in bs.stream_of(bs.POISONERS, 150, seed=0):
        poisoned.negotiate(scenario)
    candidate = poisoned.champion
    suite = bs.suite_of(ALL_STRATEGIES, 300, key=1)
    assert bs.measure(candidate, suite).mean < bs.measure(served, suite).mean - 0.05

    assert online.judge(candidate) is False
    assert online.champion is served and online.rejections == 1 and online.promotions == 0


def _small_gate() -> GateConfig:
    return GateConfig(suite_episodes=120, resamples=200, min_effective_sample_size=5.0)


# -- the benchmarks' reports and files ----------------------------------------------------------


def test_shift_benchmark_reports_gap_recovery_and_writes_its_files(tmp_path: Path) -> None:
    report = bs.shift_benchmark(
        seeds=(0,),
        modes=("immediate+epsilon",),
        negotiations=10,
        measure_every=5,
        recovery_at=10,
        pretrain_env_steps=3_000,
        held_out_size=80,
        dqn=TINY,
        cache_dir=tmp_path / "cache",
        json_path=tmp_path / "shift.json",
        plot_path=tmp_path / "shift.html",
    )
    assert "Lost surplus" in report.text and "recovered by 10" in report.text
    figures = json.loads((tmp_path / "shift.json").read_text())
    assert figures["modes"]["immediate+epsilon"]["checkpoints"] == [0, 5, 10]
    assert set(figures["gap"]["0"]) >= {"frozen", "pretrained_on_b", "gap"}
    html = (tmp_path / "shift.html").read_text()
    # Self-contained: plotly.js is inside the file (~4 MB), not loaded from the internet.
    assert len(html) > 1_000_000 and '<script src="http' not in html


def test_poisoning_benchmark_reports_both_modes_and_the_paired_test(tmp_path: Path) -> None:
    report = bs.poisoning_benchmark(
        seeds=(0,),
        modes=("immediate+epsilon", "gated+epsilon"),
        negotiations=10,
        measure_every=5,
        pretrain_env_steps=3_000,
        held_out_size=80,
        dqn=TINY,
        gate=_small_gate(),
        save_interval=5,
        cache_dir=tmp_path / "cache",
        json_path=tmp_path / "poisoning.json",
        plot_path=tmp_path / "poisoning.html",
    )
    assert "gated+epsilon - immediate+epsilon" in report.text
    figures = json.loads((tmp_path / "poisoning.json").read_text())
    assert figures["modes"]["gated+epsilon"]["checkpoints"] == [0, 5, 10]
    assert "p_value" in figures["gated_vs_immediate"]
    assert (tmp_path / "poisoning.html").stat().st_size > 100_000
