"""The safety benchmarks on tiny settings: the poisoning sellers, and the reports and files a user
gets."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from haggler.bench import safety as bs
from haggler.bench.safety import jobs
from haggler.core.catalogue import SEED_CATALOGUE
from haggler.core.negotiation import (
    Action,
    Move,
    Outcome,
    Party,
    Terms,
    apply_move,
    open_negotiation,
)
from haggler.core.sellers import (
    ALL_STRATEGIES,
    HELD_OUT_STRATEGIES,
    TRAINING_STRATEGIES,
    make_seller,
)
from test_online_stream import TINY, small_gate

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


# -- the benchmarks' reports and files ----------------------------------------------------------


def test_shift_benchmark_reports_gap_recovery_and_writes_its_files(tmp_path: Path) -> None:
    config = bs.ShiftConfig(
        seeds=(0,),
        modes=("immediate+epsilon",),
        negotiations=10,
        measure_every=5,
        recovery_at=10,
        pretrain_env_steps=3_000,
        held_out_size=80,
        dqn=TINY,
        cache_dir=tmp_path / "cache",
    )
    report = bs.shift_benchmark(
        config,
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
    config = bs.PoisoningConfig(
        seeds=(0,),
        modes=("immediate+epsilon", "gated+epsilon"),
        negotiations=10,
        measure_every=5,
        pretrain_env_steps=3_000,
        held_out_size=80,
        dqn=TINY,
        gate=small_gate(),
        save_interval=5,
        cache_dir=tmp_path / "cache",
    )
    report = bs.poisoning_benchmark(
        config,
        json_path=tmp_path / "poisoning.json",
        plot_path=tmp_path / "poisoning.html",
    )
    assert "gated+epsilon - immediate+epsilon" in report.text
    figures = json.loads((tmp_path / "poisoning.json").read_text())
    assert figures["modes"]["gated+epsilon"]["checkpoints"] == [0, 5, 10]
    assert "p_value" in figures["gated_vs_immediate"]
    assert (tmp_path / "poisoning.html").stat().st_size > 100_000


def test_what_spawned_workers_run_pickles_by_reference() -> None:
    # Workers are spawned: they import what they run by its module-level name.
    for function in (jobs.run_stream_job, jobs.pretrain_job):
        assert pickle.loads(pickle.dumps(function)) is function
