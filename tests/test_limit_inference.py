"""The limit-inference benchmark on rule buyers: a buyer whose offers are a share of its limit is
read like a book and exploited, one whose offers ignore its limit tells the attacker nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from haggler.bench.limit_inference import (
    ExploitingSeller,
    LimitAttacker,
    LimitInferenceConfig,
    format_limit_inference,
    limit_inference,
)
from haggler.core.negotiation import Action, NegotiationState, Terms, open_negotiation
from haggler.core.play import buyer_round
from haggler.core.sellers import TimeBasedSeller
from haggler.policy.baselines import SplitTheDifferenceBuyer, TimeBasedBuyer

CONFIG = LimitInferenceConfig(episodes=400, seed=0)


@dataclass(frozen=True)
class HalfLimitBuyer:
    """Leaks its limit: opens at half of it and concedes linearly to it over its rounds."""

    name: str = "half_limit"

    def act(self, state: NegotiationState) -> Action:
        limit, ask = state.terms.buyer_limit, state.last_ask
        offer = limit * (0.5 + 0.5 * len(state.bids) / (state.terms.max_rounds - 1))
        if ask <= limit and (ask <= offer or state.rounds_left == 1):
            return Action.accept()
        return Action.counter(round(min(offer, ask - 0.01), 2))


@dataclass(frozen=True)
class ShareOfAskBuyer:
    """Offers 30% of the seller's ask (capped at its limit, but asks stay under 1.5 x list and
    limits over 0.45 x list, so the cap never binds); takes an ask within its limit at the end."""

    name: str = "share_of_ask"

    def act(self, state: NegotiationState) -> Action:
        limit, ask = state.terms.buyer_limit, state.last_ask
        if ask <= limit and state.rounds_left == 1:
            return Action.accept()
        return Action.counter(round(min(0.3 * ask, limit), 2))


@dataclass(frozen=True)
class WalkAwayBuyer:
    name: str = "walk_away"

    def act(self, state: NegotiationState) -> Action:
        return Action.walk_away()


def test_a_buyer_whose_offers_are_a_share_of_its_limit_gives_it_away() -> None:
    result = limit_inference(HalfLimitBuyer(), TimeBasedBuyer("linear", 1.0), CONFIG)

    assert result.buyer.limit_inference_ratio < 0.02
    assert result.buyer.first_offer_ratio < 0.02
    assert result.buyer.excluded < 10  # nearly every negotiation had two offers to read
    # The textbook rule buyers open at 70% of min(ask, limit): the limit, most of the time.
    assert result.baseline.limit_inference_ratio < 0.2


def test_offers_that_ignore_the_limit_tell_the_attacker_nothing() -> None:
    result = limit_inference(ShareOfAskBuyer(), SplitTheDifferenceBuyer(), CONFIG)

    assert result.buyer.excluded == 0
    assert 0.9 < result.buyer.limit_inference_ratio < 1.15
    assert 0.9 < result.buyer.first_offer_ratio < 1.15


def test_the_exploiting_seller_takes_much_of_a_leaky_buyers_surplus() -> None:
    leaky = limit_inference(HalfLimitBuyer(), ShareOfAskBuyer(), CONFIG).buyer

    assert leaky.surplus_exploited.mean < 0.75 * leaky.surplus_plain.mean
    assert leaky.leak_cost.ci_low > 0.05


def _seller(reserve: float) -> TimeBasedSeller:
    rng = np.random.default_rng(0)
    return TimeBasedSeller(list_price=100.0, reserve=reserve, opening=150.0, deadline=10, rng=rng)


def _attacker_reading_twice_the_first_offer() -> LimitAttacker:
    """An attacker fitted on a buyer that always opened at half its limit."""
    rng = np.random.default_rng(0)
    limit_shares = rng.uniform(0.45, 1.2, size=50)
    moves = np.column_stack(
        [0.5 * limit_shares, 0.7 * limit_shares, rng.uniform(1.0, 1.5, size=50)]
    )
    return LimitAttacker.fit(moves, limit_shares)


def test_the_exploiting_seller_holds_just_under_the_inferred_limit() -> None:
    seller = ExploitingSeller(_seller(reserve=50.0), _attacker_reading_twice_the_first_offer())
    state = open_negotiation(Terms(list_price=100.0, buyer_limit=90.0), seller.opening_ask())

    state = buyer_round(state, Action.counter(45.0), seller)  # half the limit: the giveaway
    assert state.last_ask > 100.0  # the plain seller's first concession, still far above
    state = buyer_round(state, Action.counter(63.0), seller)
    assert state.last_ask == pytest.approx(89.10)  # 0.99 x the limit of 90
    state = buyer_round(state, Action.counter(80.0), seller)
    assert state.last_ask == pytest.approx(89.10)  # and it holds there
    state = buyer_round(state, Action.counter(89.10 - 0.01), seller)
    assert not state.is_over and state.last_ask == pytest.approx(89.10)


def test_the_exploiting_seller_never_asks_below_its_reserve() -> None:
    seller = ExploitingSeller(_seller(reserve=50.0), _attacker_reading_twice_the_first_offer())
    state = open_negotiation(Terms(list_price=100.0, buyer_limit=40.0), seller.opening_ask())

    state = buyer_round(state, Action.counter(20.0), seller)  # reads as a limit of 40
    state = buyer_round(state, Action.counter(28.0), seller)
    assert state.last_ask == 50.0


def test_the_same_seed_gives_the_same_result_and_another_seed_another() -> None:
    buyers = (HalfLimitBuyer(), ShareOfAskBuyer())
    config = LimitInferenceConfig(episodes=100, seed=3)
    first = limit_inference(*buyers, config)

    assert limit_inference(*buyers, config).as_dict() == first.as_dict()
    other = limit_inference(*buyers, LimitInferenceConfig(episodes=100, seed=4))
    assert other.buyer.as_dict() != first.buyer.as_dict()  # other scenarios, other figures


def test_a_buyer_that_never_makes_two_offers_has_no_ratio_and_the_report_says_so() -> None:
    config = LimitInferenceConfig(episodes=50, seed=0)
    result = limit_inference(WalkAwayBuyer(), TimeBasedBuyer("linear", 1.0), config)

    assert result.buyer.excluded == 50
    report = json.loads(json.dumps(result.as_dict(), allow_nan=False))  # JSON has no NaN
    assert report["buyer"]["limit_inference_ratio"] is None
    assert report["baseline"]["limit_inference_ratio"] < 0.5
    text = format_limit_inference(result)
    assert "walk_away" in text and "linear" in text and "target >= 0.70" in text


def test_the_config_refuses_fewer_episodes_than_folds() -> None:
    with pytest.raises(ValueError, match="fold"):
        LimitInferenceConfig(episodes=3, seed=0, folds=5)
    with pytest.raises(ValueError, match="fold"):
        LimitInferenceConfig(episodes=100, seed=0, folds=1)
