"""Scenarios, suites, playing a negotiation to its end, and the surplus it leaves the buyer."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import played_at
from haggler.core.catalogue import SEED_CATALOGUE
from haggler.core.scenarios import (
    LIMIT_RANGE,
    MAX_ROUNDS_RANGE,
    draw_scenario,
    play,
    scenario_suite,
)
from haggler.core.sellers import ALL_STRATEGIES, TRAINING_STRATEGIES
from haggler.policy.baselines import BASELINES

CHAIR = SEED_CATALOGUE[0]


def test_a_suite_is_the_same_for_the_same_seed() -> None:
    assert scenario_suite(40, 3, TRAINING_STRATEGIES) == scenario_suite(40, 3, TRAINING_STRATEGIES)


def test_suites_differ_across_seeds() -> None:
    first = scenario_suite(40, 3, TRAINING_STRATEGIES)
    second = scenario_suite(40, 4, TRAINING_STRATEGIES)
    assert sum(a == b for a, b in zip(first, second, strict=True)) == 0


def test_a_suite_mixes_products_strategies_and_rounds() -> None:
    suite = scenario_suite(300, 0, TRAINING_STRATEGIES)
    assert len(suite) == 300
    assert {s.strategy for s in suite} == set(TRAINING_STRATEGIES)
    assert len({s.product for s in suite}) == len(SEED_CATALOGUE)
    assert {s.terms.max_rounds for s in suite} == set(
        range(MAX_ROUNDS_RANGE[0], MAX_ROUNDS_RANGE[1] + 1)
    )
    low, high = LIMIT_RANGE
    shares = []
    for s in suite:
        assert s.product in SEED_CATALOGUE
        assert s.terms.list_price == s.product.list_price
        # the purchaser's limit: from below most sellers' floors to above list price
        assert low * s.product.list_price - 0.01 <= s.terms.buyer_limit
        assert s.terms.buyer_limit <= high * s.product.list_price + 0.01
        shares.append(s.terms.buyer_limit / s.product.list_price)
    assert min(shares) < low + 0.05 and max(shares) > high - 0.05


def test_some_scenarios_cannot_end_in_a_deal() -> None:
    """Limits from 45% of list price, floors up to 97%: a buyer must also learn to walk away."""
    suite = scenario_suite(300, 0, TRAINING_STRATEGIES)
    feasible = [s.seller().reserve <= s.terms.buyer_limit for s in suite]
    assert 0.05 < np.mean(feasible) < 0.95


def test_a_suite_uses_only_the_strategies_and_rounds_it_is_given() -> None:
    suite = scenario_suite(50, 1, ("hardliner",), max_rounds=4)
    assert {s.strategy for s in suite} == {"hardliner"}
    assert {s.terms.max_rounds for s in suite} == {4}


def test_draw_scenario_uses_the_catalogue_it_is_given() -> None:
    catalogue = (SEED_CATALOGUE[3],)
    scenario = draw_scenario(np.random.default_rng(0), ["linear"], catalogue=catalogue)
    assert scenario.product == SEED_CATALOGUE[3]


def test_a_scenario_always_brings_the_same_seller() -> None:
    for scenario in scenario_suite(20, 9, ALL_STRATEGIES):
        first, second = scenario.seller(), scenario.seller()
        assert first.strategy == second.strategy == scenario.strategy
        assert (first.reserve, first.opening, first.deadline) == (
            second.reserve,
            second.opening,
            second.deadline,
        )


@pytest.mark.parametrize("baseline", BASELINES, ids=lambda b: b.name)
def test_play_runs_a_negotiation_to_its_end(baseline: object) -> None:
    for scenario in scenario_suite(60, 2, ALL_STRATEGIES):
        played = play(scenario, baseline)  # type: ignore[arg-type]
        assert played.state.is_over
        assert played.scenario is scenario
        assert played.reserve == scenario.seller().reserve
        assert played.state.buyer_moves <= scenario.terms.max_rounds
        assert 0.0 <= played.normalised_surplus <= 1.0
        if played.state.deal_price is None:
            assert played.normalised_surplus == 0.0


@pytest.mark.parametrize(
    ("price", "expected"), [(100.0, 0.0), (80.0, 0.5), (60.0, 1.0), (70.0, 0.75)]
)
def test_normalised_surplus_is_the_share_of_the_bargaining_zone_kept(
    price: float, expected: float
) -> None:
    # limit 100, reserve 60: the zone is 40 wide
    assert played_at(price).normalised_surplus == pytest.approx(expected)


def test_no_deal_leaves_no_surplus() -> None:
    played = played_at(None)
    assert played.feasible
    assert played.normalised_surplus == 0.0


def test_a_scenario_is_feasible_only_if_the_sellers_floor_is_within_the_limit() -> None:
    assert not played_at(None, limit=100.0, reserve=100.5).feasible
    no_zone = played_at(100.0, limit=100.0, reserve=100.0)
    assert no_zone.feasible
    assert no_zone.normalised_surplus == 0.0  # and no division by zero
