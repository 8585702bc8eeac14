"""Held-out evaluation: confidence intervals, the best baseline, the type oracle, paired tests."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from conftest import played_at
from haggler.core.negotiation import Action, NegotiationState
from haggler.core.play import Buyer
from haggler.core.scenarios import play, scenario_suite
from haggler.core.sellers import TRAINING_STRATEGIES
from haggler.policy.baselines import BASELINES
from haggler.safety.evaluation import (
    Evaluation,
    evaluate,
    format_evaluation,
    mean_ci,
    paired_test,
    proportion_ci,
    summarise,
)

BY_NAME = {baseline.name: baseline for baseline in BASELINES}
SUITE = scenario_suite(150, 3, TRAINING_STRATEGIES)


@dataclass(frozen=True)
class Renamed:
    """A baseline standing in for the agent, under the agent's name."""

    inner: Buyer
    name: str = "agent"

    def act(self, state: NegotiationState) -> Action:
        return self.inner.act(state)


@pytest.fixture(scope="module")
def weak_agent_evaluation() -> Evaluation:
    """accept_first, which pays whatever is asked, against the other baselines."""
    others = [b for b in BASELINES if b.name != "accept_first"]
    return evaluate(Renamed(BY_NAME["accept_first"]), others, SUITE)


# -- confidence intervals ---------------------------------------------------------------------


def test_mean_ci_matches_the_student_t_interval() -> None:
    estimate = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n), sd = 1
    assert estimate.mean == pytest.approx(2.0)
    assert estimate.ci_low == pytest.approx(2.0 - half)
    assert estimate.ci_high == pytest.approx(2.0 + half)


def test_mean_ci_contains_the_mean_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)
    small, large = mean_ci(rng.normal(size=20)), mean_ci(rng.normal(size=2000))
    for estimate in (small, large):
        assert estimate.ci_low < estimate.mean < estimate.ci_high
    assert large.ci_high - large.ci_low < small.ci_high - small.ci_low
    assert large.ci_low < 0.0 < large.ci_high


def test_mean_ci_of_constant_and_empty_samples() -> None:
    constant = mean_ci([0.5, 0.5, 0.5])
    assert (constant.mean, constant.ci_low, constant.ci_high) == (0.5, 0.5, 0.5)
    single = mean_ci([0.7])
    assert single.mean == 0.7
    assert math.isnan(single.ci_low) and math.isnan(single.ci_high), "one value has no interval"
    empty = mean_ci([])
    assert math.isnan(empty.mean)


def test_proportion_ci_is_the_wilson_interval() -> None:
    estimate = proportion_ci(5, 10)
    assert estimate.mean == 0.5
    assert estimate.ci_low == pytest.approx(0.2366, abs=1e-4)
    assert estimate.ci_high == pytest.approx(0.7634, abs=1e-4)


@pytest.mark.parametrize("trials", [1, 2, 7, 30, 500])
def test_proportion_ci_stays_within_zero_and_one_and_contains_the_share(trials: int) -> None:
    for successes in range(trials + 1):
        estimate = proportion_ci(successes, trials)
        assert 0.0 <= estimate.ci_low <= estimate.mean <= estimate.ci_high <= 1.0
        assert estimate.mean == successes / trials
    assert proportion_ci(0, trials).ci_low == 0.0
    assert proportion_ci(0, trials).ci_high > 0.0  # never sure of a zero rate
    assert proportion_ci(trials, trials).ci_high == pytest.approx(1.0)
    assert proportion_ci(trials, trials).ci_low < 1.0


def test_proportion_ci_without_trials_is_undefined() -> None:
    assert math.isnan(proportion_ci(0, 0).mean)


# -- summaries --------------------------------------------------------------------------------


def test_surplus_and_agreement_are_measured_on_feasible_negotiations_only() -> None:
    runs = [
        played_at(80.0),  # surplus 0.5
        played_at(70.0),  # surplus 0.75
        played_at(None),  # feasible, no deal: surplus 0
        played_at(None, reserve=150.0),  # infeasible: ignored
    ]
    report = summarise("buyer", runs)
    assert (report.negotiations, report.feasible) == (4, 3)
    assert report.normalised_surplus.mean == pytest.approx((0.5 + 0.75 + 0.0) / 3)
    assert report.agreement_rate_feasible.mean == pytest.approx(2 / 3)
    assert report.savings_pct.mean == pytest.approx((20.0 + 30.0) / 2)  # over deals
    assert report.rounds.mean == 1.0


# -- paired tests -----------------------------------------------------------------------------


def test_a_paired_test_of_a_buyer_against_itself_finds_no_difference() -> None:
    runs = [play(scenario, BY_NAME["linear"]) for scenario in SUITE]
    test = paired_test("a", runs, "b", runs)
    assert test.surplus_diff.mean == 0.0
    assert test.p_value == 1.0
    assert test.n == sum(run.feasible for run in runs)


def test_a_paired_test_finds_a_consistently_better_buyer() -> None:
    better = [
        played_at(70.0),
        played_at(75.0),
        played_at(72.0),
    ]
    worse = [
        played_at(90.0),
        played_at(99.0),
        played_at(91.0),
    ]
    forward = paired_test("better", better, "worse", worse)
    backward = paired_test("worse", worse, "better", better)
    assert forward.surplus_diff.mean > 0 > backward.surplus_diff.mean
    assert forward.surplus_diff.mean == pytest.approx(-backward.surplus_diff.mean)
    assert forward.p_value == pytest.approx(backward.p_value)
    assert forward.p_value < 0.05
    surplus = [[p.normalised_surplus for p in side] for side in (better, worse)]
    assert forward.p_value == pytest.approx(stats.ttest_rel(*surplus).pvalue)
    assert "better - worse" in str(forward)


def test_a_paired_test_on_one_negotiation_claims_nothing() -> None:
    test = paired_test("a", [played_at(70.0)], "b", [played_at(90.0)])
    assert test.n == 1
    assert math.isnan(test.p_value)
    assert math.isnan(test.surplus_diff.ci_low) and math.isnan(test.surplus_diff.ci_high)


def test_a_paired_test_skips_infeasible_negotiations() -> None:
    a = [
        played_at(70.0),
        played_at(None, reserve=150.0),
        played_at(80.0),
    ]
    b = [
        played_at(80.0),
        played_at(None, reserve=150.0),
        played_at(90.0),
    ]
    assert paired_test("a", a, "b", b).n == 2


# -- evaluate ---------------------------------------------------------------------------------


def test_every_buyer_plays_the_same_negotiations(weak_agent_evaluation: Evaluation) -> None:
    reports = weak_agent_evaluation.reports
    assert next(iter(reports)) == "agent"
    assert set(reports) == {"agent", "type_oracle"} | {
        b.name for b in BASELINES if b.name != "accept_first"
    }
    assert {report.negotiations for report in reports.values()} == {len(SUITE)}
    assert len({report.feasible for report in reports.values()}) == 1


def test_the_best_baseline_has_the_highest_surplus(weak_agent_evaluation: Evaluation) -> None:
    reports = weak_agent_evaluation.reports
    baselines = [name for name in reports if name not in ("agent", "type_oracle")]
    best = max(reports[name].normalised_surplus.mean for name in baselines)
    assert reports[weak_agent_evaluation.best_baseline].normalised_surplus.mean == best
    assert weak_agent_evaluation.best_baseline in baselines


def test_the_type_oracle_takes_the_best_baseline_per_strategy(
    weak_agent_evaluation: Evaluation,
) -> None:
    evaluation = weak_agent_evaluation
    assert set(evaluation.strategies) == set(TRAINING_STRATEGIES)
    for strategy, reports in evaluation.per_strategy.items():
        baselines = [name for name in reports if name not in ("agent", "type_oracle")]
        assert evaluation.oracle_choice[strategy] in baselines
        if reports["agent"].feasible == 0:
            continue
        best = max(reports[name].normalised_surplus.mean for name in baselines)
        assert reports["type_oracle"].normalised_surplus.mean == pytest.approx(best)
    oracle = evaluation.reports["type_oracle"].normalised_surplus.mean
    assert oracle >= evaluation.reports[evaluation.best_baseline].normalised_surplus.mean


def test_paying_the_ask_loses_to_the_best_baseline(weak_agent_evaluation: Evaluation) -> None:
    test = weak_agent_evaluation.agent_vs_best_baseline
    assert (test.a, test.b) == ("agent", weak_agent_evaluation.best_baseline)
    assert test.surplus_diff.mean < 0
    assert test.surplus_diff.ci_high < 0
    assert test.p_value < 0.01
    assert test.n == weak_agent_evaluation.reports["agent"].feasible
    oracle_test = weak_agent_evaluation.agent_vs_type_oracle
    assert oracle_test.surplus_diff.mean <= test.surplus_diff.mean


def test_an_agent_that_plays_like_the_only_baseline_ties_with_it() -> None:
    evaluation = evaluate(Renamed(BY_NAME["linear"]), [BY_NAME["linear"]], SUITE[:60])
    for test in (evaluation.agent_vs_best_baseline, evaluation.agent_vs_type_oracle):
        assert test.surplus_diff.mean == 0.0
        assert test.p_value == 1.0


def test_a_stronger_agent_shows_a_positive_difference() -> None:
    evaluation = evaluate(Renamed(BY_NAME["linear"]), [BY_NAME["accept_first"]], SUITE)
    assert evaluation.best_baseline == "accept_first"
    assert evaluation.agent_vs_best_baseline.surplus_diff.mean > 0
    assert evaluation.agent_vs_best_baseline.p_value < 0.01


def test_as_dict_has_the_documented_keys(weak_agent_evaluation: Evaluation) -> None:
    data = weak_agent_evaluation.as_dict()
    for key in ("agent", "best_baseline", "type_oracle"):
        for metric in ("normalised_surplus", "agreement_rate_feasible"):
            assert set(data[key][metric]) == {"mean", "ci_low", "ci_high"}
            assert all(isinstance(value, float) for value in data[key][metric].values())
    assert data["best_baseline"]["name"] == weak_agent_evaluation.best_baseline
    assert data["agent"]["normalised_surplus"]["mean"] == pytest.approx(
        weak_agent_evaluation.reports["agent"].normalised_surplus.mean
    )
    assert set(data["paired_test"]["surplus_diff"]) == {"mean", "ci_low", "ci_high"}
    assert 0.0 <= data["paired_test"]["p_value"] <= 1.0
    assert set(data["oracle_choice"]) == set(TRAINING_STRATEGIES)
    json.dumps(data)  # serialisable as it is


def test_the_text_report_names_every_buyer_and_the_paired_tests(
    weak_agent_evaluation: Evaluation,
) -> None:
    text = format_evaluation(weak_agent_evaluation, "Suite title")
    assert text.splitlines()[0] == "Suite title"
    for name in weak_agent_evaluation.reports:
        assert name in text
    assert str(weak_agent_evaluation.agent_vs_best_baseline) in text
    assert str(weak_agent_evaluation.agent_vs_type_oracle) in text


def test_an_empty_suite_or_no_baselines_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        evaluate(Renamed(BY_NAME["linear"]), BASELINES, [])
    with pytest.raises(ValueError, match="baseline"):
        evaluate(Renamed(BY_NAME["linear"]), [], SUITE[:5])
