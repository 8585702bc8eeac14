"""What `haggler evaluate` plays and sums up: its suites, drawn apart from training, and the
figures of several models side by side."""

from __future__ import annotations

import pytest

from haggler.core.sellers import HELD_OUT_STRATEGIES, TRAINING_STRATEGIES
from haggler.policy.baselines import BASELINES
from haggler.safety.evaluation import Evaluation, across_models, evaluate, evaluation_suites
from test_evaluation import BY_NAME, Renamed


def test_without_strategies_there_is_a_held_out_suite_of_the_untrained_family() -> None:
    suites = evaluation_suites(30, seed=1)
    assert set(suites) == {"main", "held_out"}
    assert {s.strategy for s in suites["main"]} <= set(TRAINING_STRATEGIES)
    assert {s.strategy for s in suites["held_out"]} == set(HELD_OUT_STRATEGIES)
    assert evaluation_suites(30, seed=1) == suites
    assert evaluation_suites(30, seed=2)["main"] != suites["main"]


def test_with_strategies_there_is_one_suite_with_the_rounds_fixed() -> None:
    suites = evaluation_suites(20, seed=1, strategies=("linear",), max_rounds=7)
    assert list(suites) == ["main"]
    assert {s.strategy for s in suites["main"]} == {"linear"}
    assert {s.terms.max_rounds for s in suites["main"]} == {7}


@pytest.fixture(scope="module")
def two_models() -> list[Evaluation]:
    """Two stand-ins for trained models (two baselines under the agent's name), one suite."""
    suite = evaluation_suites(60, seed=4, strategies=TRAINING_STRATEGIES)["main"]
    others = [b for b in BASELINES if b.name not in ("accept_first", "tit_for_tat")]
    return [
        evaluate(Renamed(BY_NAME[name]), others, suite) for name in ("accept_first", "tit_for_tat")
    ]


def test_across_models_is_the_mean_and_spread_of_the_headline_figures(
    two_models: list[Evaluation],
) -> None:
    summary = across_models(two_models)
    surplus = [e.reports["agent"].normalised_surplus.mean for e in two_models]
    assert summary["agent surplus"]["mean"] == pytest.approx(sum(surplus) / 2)
    assert summary["agent surplus"]["sd"] == pytest.approx(abs(surplus[0] - surplus[1]) / 2**0.5)
    assert set(summary) == {
        "agent surplus",
        "agent agreement",
        "best baseline surplus",
        "type oracle surplus",
        "agent - best baseline",
        "agent - type oracle",
        "agreement: agent - best baseline",
    }


def test_one_model_has_no_spread(two_models: list[Evaluation]) -> None:
    summary = across_models(two_models[:1])
    assert all(figure["sd"] == 0.0 for figure in summary.values())
