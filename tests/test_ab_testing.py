"""A/B tests: arm assignment, arm summaries, the mSPRT stopping rule and its simulations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from haggler.core.negotiation import RewardConfig, episode_return
from haggler.core.scenarios import play, scenario_suite
from haggler.core.sellers import TRAINING_STRATEGIES
from haggler.policy.baselines import BASELINES
from haggler.safety.ab_simulation import (
    _first_stop,
    aa_simulation,
    format_ab_simulation,
    outcome_of,
    outcomes_of,
    simulate_tests,
)
from haggler.safety.ab_testing import (
    ArmOutcome,
    Stop,
    StoppingRule,
    assign_arm,
    judge,
    summarise_arm,
)

LINEAR = next(b for b in BASELINES if b.name == "linear")


@pytest.fixture(scope="module")
def pool() -> list[ArmOutcome]:
    """Outcomes of one model (the linear baseline) on simulated sellers: reward sd ~0.13."""
    return outcomes_of(LINEAR, scenario_suite(1500, 5, TRAINING_STRATEGIES))


def synthetic(
    rng: np.random.Generator, n: int, reward: float, deal_rate: float, sd: float = 0.12
) -> list[ArmOutcome]:
    deals = rng.random(n) < deal_rate
    rewards = rng.normal(reward, sd, n)
    return [
        ArmOutcome(float(r), bool(d), 20.0 if d else None, None)
        for r, d in zip(rewards, deals, strict=True)
    ]


# -- arm assignment ---------------------------------------------------------------------------


def test_assignment_is_deterministic() -> None:
    arms = [assign_arm(i, 7, 0.5) for i in range(500)]
    assert arms == [assign_arm(i, 7, 0.5) for i in range(500)]


@pytest.mark.parametrize("split", [0.1, 0.3, 0.5, 0.8])
def test_assignment_follows_the_split(split: float) -> None:
    share = np.mean([assign_arm(i, 3, split) == "challenger" for i in range(10_000)])
    assert abs(share - split) < 0.02


def test_different_tests_split_the_same_ids_differently() -> None:
    a = np.array([assign_arm(i, 1, 0.5) == "challenger" for i in range(10_000)])
    b = np.array([assign_arm(i, 2, 0.5) == "challenger" for i in range(10_000)])
    assert 0.45 < np.mean(a != b) < 0.55  # independent halves disagree half the time


def test_split_zero_and_one() -> None:
    assert {assign_arm(i, 9, 0.0) for i in range(1000)} == {"champion"}
    assert {assign_arm(i, 9, 1.0) for i in range(1000)} == {"challenger"}


@pytest.mark.parametrize("split", [-0.1, 1.01, math.nan])
def test_a_bad_split_is_refused(split: float) -> None:
    with pytest.raises(ValueError, match="split"):
        assign_arm(1, 1, split)


# -- outcomes and summaries -------------------------------------------------------------------


def test_outcome_of_a_played_negotiation() -> None:
    config = RewardConfig()
    no_deals = set()
    for scenario in scenario_suite(60, 2, TRAINING_STRATEGIES):
        played = play(scenario, LINEAR)
        outcome = outcome_of(played)
        assert outcome.reward == episode_return(played.state)
        if not outcome.deal:
            # Every no-deal pays the penalty, whether or not the seller's floor was within reach.
            moves = played.state.buyer_moves
            expected = -moves * config.round_cost - config.no_deal_penalty
            assert outcome.reward == pytest.approx(expected)
            no_deals.add(played.feasible)
        assert outcome.deal == (played.state.deal_price is not None)
        assert (outcome.savings_pct is None) == (not outcome.deal)
        assert (outcome.surplus is None) == (not played.feasible)
    assert no_deals == {True, False}


def test_summarise_arm(pool: list[ArmOutcome]) -> None:
    summary = summarise_arm(pool)
    deals = [o for o in pool if o.deal]
    assert summary.negotiations == len(pool)
    assert summary.deal_rate.mean == pytest.approx(len(deals) / len(pool))
    assert summary.deal_rate.ci_low < summary.deal_rate.mean < summary.deal_rate.ci_high
    assert summary.reward.mean == pytest.approx(np.mean([o.reward for o in pool]))
    assert summary.savings_pct.mean == pytest.approx(np.mean([o.savings_pct for o in deals]))
    json.dumps(summary.as_dict(), allow_nan=False)


def test_summary_of_people_has_no_surplus() -> None:
    summary = summarise_arm(
        [ArmOutcome(0.1, True, 10.0, None), ArmOutcome(-0.15, False, None, None)]
    )
    assert math.isnan(summary.surplus.mean)
    assert json.loads(json.dumps(summary.as_dict(), allow_nan=False))["surplus"]["mean"] is None


# -- the stopping rule ------------------------------------------------------------------------


def test_no_decision_before_min_per_arm() -> None:
    rng = np.random.default_rng(0)
    rule = StoppingRule(min_per_arm=100)
    verdict = judge(synthetic(rng, 99, 0.0, 0.6), synthetic(rng, 300, 0.5, 0.6), rule)
    assert verdict.decision == "continue"
    assert "100" in verdict.reason
    json.dumps(verdict.as_dict(), allow_nan=False)
    empty = judge([], [], rule)
    assert empty.decision == "continue"
    assert json.loads(json.dumps(empty.as_dict(), allow_nan=False))["always_valid_p"] is None


def test_a_clearly_better_challenger_is_promoted() -> None:
    rng = np.random.default_rng(1)
    verdict = judge(synthetic(rng, 400, 0.0, 0.6), synthetic(rng, 400, 0.08, 0.6), StoppingRule())
    assert verdict.decision == "promote"
    assert verdict.lift.ci_low > 0 and verdict.always_valid_p < 0.05
    assert verdict.reason.startswith("Challenger promoted") and "p = " in verdict.reason


def test_a_clearly_worse_challenger_is_rejected() -> None:
    rng = np.random.default_rng(2)
    verdict = judge(synthetic(rng, 400, 0.0, 0.6), synthetic(rng, 400, -0.08, 0.6), StoppingRule())
    assert verdict.decision == "reject"
    assert verdict.lift.ci_high < 0 and verdict.always_valid_p < 0.05
    assert "worse" in verdict.reason


def test_a_higher_reward_with_far_fewer_deals_is_rejected_by_the_guard() -> None:
    rng = np.random.default_rng(3)
    verdict = judge(synthetic(rng, 400, 0.0, 0.7), synthetic(rng, 400, 0.08, 0.45), StoppingRule())
    assert verdict.decision == "reject"
    assert verdict.lift.mean > 0
    assert "deal rate" in verdict.reason and "guard" in verdict.reason


def test_no_evidence_at_max_per_arm_keeps_the_champion() -> None:
    rng = np.random.default_rng(4)
    rule = StoppingRule(min_per_arm=50, max_per_arm=200)
    verdict = judge(synthetic(rng, 200, 0.0, 0.6), synthetic(rng, 200, 0.0, 0.6), rule)
    assert verdict.decision == "reject"
    assert "lack of evidence" in verdict.reason and "champion stays" in verdict.reason
    assert verdict.lift.ci_low < 0 < verdict.lift.ci_high


def test_the_lift_interval_is_the_always_valid_one() -> None:
    """0 is outside the interval exactly when the p-value is below alpha."""
    rule = StoppingRule(min_per_arm=20)
    for seed in range(30):
        rng = np.random.default_rng(seed)
        verdict = judge(synthetic(rng, 150, 0.0, 0.6), synthetic(rng, 150, 0.03, 0.6), rule)
        excludes_zero = verdict.lift.ci_low > 0 or verdict.lift.ci_high < 0
        assert excludes_zero == (verdict.always_valid_p < rule.alpha)


def test_the_vectorised_rule_decides_as_judge_does(pool: list[ArmOutcome]) -> None:
    """The simulations' fast path stops where calling judge after every negotiation would."""
    rule = StoppingRule(min_per_arm=30, max_per_arm=300)
    for seed, shift in [(0, 0.0), (1, 0.06), (2, -0.06)]:
        rng = np.random.default_rng(seed)
        index = rng.integers(len(pool), size=1000)
        is_challenger = rng.random(1000) < 0.4
        outcomes = [
            ArmOutcome(pool[i].reward + shift * c, pool[i].deal, None, None)
            for i, c in zip(index, is_challenger, strict=True)
        ]
        rewards = np.array([o.reward for o in outcomes])
        deals = np.array([o.deal for o in outcomes], dtype=float)
        stopped = _first_stop(rewards, deals, is_challenger, rule)
        assert stopped is not None
        stop, n = stopped
        arms: tuple[list[ArmOutcome], list[ArmOutcome]] = ([], [])
        for t, (outcome, on_challenger) in enumerate(
            zip(outcomes[:n], is_challenger[:n], strict=True), 1
        ):
            arms[int(on_challenger)].append(outcome)
            if t >= n - 100 or t % 10 == 0:  # judge is slow; every look near the stop
                decision = judge(*arms, rule).decision
                assert decision == "continue" or t == n, (seed, t)
        assert decision == ("promote" if stop is Stop.PROMOTE else "reject")


def test_a_bad_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        StoppingRule(alpha=0.0)
    with pytest.raises(ValueError, match="min_per_arm"):
        StoppingRule(min_per_arm=500, max_per_arm=100)
    with pytest.raises(ValueError, match="mixture"):
        StoppingRule(mixture_sd=0.0)


# -- simulations ------------------------------------------------------------------------------


def test_aa_false_promotion_rate_is_at_most_five_percent(pool: list[ArmOutcome]) -> None:
    report = aa_simulation(pool, 200, StoppingRule(), 0.5, rng=np.random.default_rng(20), shifts=())
    assert report.aa.trials == 200
    assert report.aa.promoted.mean <= 0.05
    assert report.aa.stopped_at_max.mean > 0.8  # most A/A tests end for lack of evidence
    assert report.aa.median_negotiations >= 2 * StoppingRule().max_per_arm
    text = format_ab_simulation(report)
    assert "False-promotion rate (A/A)" in text
    json.dumps(report.as_dict(), allow_nan=False)


def test_a_real_lift_is_promoted_and_fast(pool: list[ArmOutcome]) -> None:
    result = simulate_tests(pool, 60, StoppingRule(), 0.5, 0.05, rng=np.random.default_rng(21))
    assert result.promoted.mean >= 0.85
    assert result.median_negotiations_to_promotion < 1000
    assert result.stopped_at_max.mean == 0.0


def test_simulation_from_a_sampler_with_uneven_split(pool: list[ArmOutcome]) -> None:
    def sampler(rng: np.random.Generator, size: int) -> list[ArmOutcome]:
        return [pool[i] for i in rng.integers(len(pool), size=size)]

    rule = StoppingRule(min_per_arm=50, max_per_arm=300)
    report = aa_simulation(
        sampler, 30, rule, 0.2, rng=np.random.default_rng(22), shifts=(0.1,), look_every=10
    )
    assert report.power[0].shift == 0.1
    assert report.power[0].promoted.mean > 0.8
    # The smaller arm (the challenger, 20%) reaches max_per_arm: ~1,500 negotiations in all.
    assert report.aa.median_negotiations > rule.max_per_arm / 0.2 * 0.8


def test_a_simulation_needs_both_arms(pool: list[ArmOutcome]) -> None:
    with pytest.raises(ValueError, match="split"):
        simulate_tests(pool, 10, StoppingRule(), 0.0, rng=np.random.default_rng(0))
