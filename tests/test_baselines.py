"""Rule-based buyers: within the limit, deterministic, and each doing what its name says."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import opened, states
from haggler.core.negotiation import Action, Move, NegotiationState, Outcome, Party, apply_move
from haggler.core.play import Buyer
from haggler.core.scenarios import play, scenario_suite
from haggler.core.sellers import ALL_STRATEGIES
from haggler.policy.baselines import (
    BASELINES,
    TIME_DEPENDENT_EXPONENTS,
    AcceptFirstBuyer,
    TimeBasedBuyer,
)

BY_NAME = {baseline.name: baseline for baseline in BASELINES}
SUITE = scenario_suite(120, seed=11, strategies=ALL_STRATEGIES)


def test_baselines_have_unique_names() -> None:
    assert len(BY_NAME) == len(BASELINES)
    assert {"accept_first", "tit_for_tat", "split_difference"} <= set(BY_NAME)


@settings(max_examples=200)
@given(baseline=st.sampled_from(BASELINES), state=states())
def test_a_baseline_never_offers_or_accepts_above_its_limit(
    baseline: Buyer, state: NegotiationState
) -> None:
    action = baseline.act(state)
    if action.move is Move.COUNTER:
        assert action.price is not None
        assert action.price <= state.terms.buyer_limit
    if action.move is Move.ACCEPT:
        assert state.last_ask <= state.terms.buyer_limit
    # and the protocol takes the move as it is
    apply_move(state, Party.BUYER, action)


@pytest.mark.parametrize("baseline", BASELINES, ids=lambda b: b.name)
def test_a_baseline_plays_whole_negotiations_within_its_limit(baseline: Buyer) -> None:
    for scenario in SUITE:
        state = play(scenario, baseline).state
        limit = scenario.terms.buyer_limit
        assert all(bid <= limit for bid in state.bids)
        assert state.deal_price is None or state.deal_price <= limit


@pytest.mark.parametrize("baseline", BASELINES, ids=lambda b: b.name)
def test_baselines_are_deterministic(baseline: Buyer) -> None:
    for scenario in SUITE[:30]:
        assert play(scenario, baseline).state == play(scenario, baseline).state


def test_accept_first_takes_an_ask_within_its_limit_at_once() -> None:
    buyer = AcceptFirstBuyer()
    assert buyer.act(opened(limit=90.0, ask=89.99)) == Action.accept()
    assert buyer.act(opened(limit=90.0, ask=90.0)) == Action.accept()


def test_accept_first_offers_its_limit_when_the_ask_is_above_it() -> None:
    assert AcceptFirstBuyer().act(opened(limit=90.0, ask=120.0)) == Action.counter(90.0)


@pytest.mark.parametrize("baseline", BASELINES, ids=lambda b: b.name)
def test_a_baseline_takes_an_ask_within_its_limit_on_its_last_move(baseline: Buyer) -> None:
    state = opened(limit=100.0, ask=99.0, max_rounds=1)
    assert state.rounds_left == 1
    assert baseline.act(state) == Action.accept()
    if baseline.name != "accept_first":
        # with rounds to spare, the same ask is haggled over
        assert baseline.act(opened(limit=100.0, ask=99.0, max_rounds=5)).move is Move.COUNTER


@pytest.mark.parametrize("baseline", BASELINES, ids=lambda b: b.name)
def test_a_baseline_walks_away_rather_than_offer_nothing(baseline: Buyer) -> None:
    state = opened(list_price=0.5, limit=0.5, ask=0.01)
    # 0.01 is within the limit: every baseline either accepts it or walks, never offers 0.
    assert baseline.act(state).move in (Move.ACCEPT, Move.WALK_AWAY)


def offers_over_time(buyer: TimeBasedBuyer) -> list[float]:
    state = opened(limit=100.0, ask=150.0, max_rounds=10)
    offers = []
    for ask in (149.0, 148.0, 147.0, 146.0, 145.0):
        action = buyer.act(state)
        assert action.price is not None
        offers.append(action.price)
        state = apply_move(state, Party.BUYER, action)
        state = apply_move(state, Party.SELLER, Action.counter(ask))
    return offers


def test_time_based_baselines_concede_at_their_pace() -> None:
    boulware = offers_over_time(BY_NAME["boulware"])  # type: ignore[arg-type]
    linear = offers_over_time(BY_NAME["linear"])  # type: ignore[arg-type]
    conceder = offers_over_time(BY_NAME["conceder"])  # type: ignore[arg-type]
    for offers in (boulware, linear, conceder):
        assert offers == sorted(offers), "a time-based buyer never lowers its offer"
    assert boulware[0] == linear[0] == conceder[0]
    assert boulware[-1] < linear[-1] < conceder[-1] <= 100.0


def test_the_time_dependent_buyers_cover_the_exponent_grid() -> None:
    time_based = [b for b in BASELINES if isinstance(b, TimeBasedBuyer)]
    assert [b.beta for b in time_based] == list(TIME_DEPENDENT_EXPONENTS)
    assert {b.name: b.beta for b in time_based} == {
        "boulware": 0.2,
        "time_0.5": 0.5,
        "linear": 1.0,
        "time_2": 2.0,
        "conceder": 3.0,
        "time_5": 5.0,
        "time_10": 10.0,
    }
    # The higher the exponent, the faster the buyer concedes.
    at_half_time = [offers_over_time(buyer)[-1] for buyer in time_based]
    assert at_half_time == sorted(at_half_time) and len(set(at_half_time)) == len(at_half_time)
    assert {"tit_for_tat", "relative_tit_for_tat", "split_difference", "deadline_taker"} <= set(
        BY_NAME
    )


def test_relative_tit_for_tat_raises_its_offer_by_the_share_the_seller_came_down() -> None:
    buyer = BY_NAME["relative_tit_for_tat"]
    state = apply_move(opened(limit=100.0, ask=120.0), Party.BUYER, Action.counter(60.0))
    state = apply_move(state, Party.SELLER, Action.counter(108.0))  # 10% off its ask
    assert buyer.act(state) == Action.counter(66.0)  # 10% onto its offer


def test_the_deadline_taker_holds_its_opening_then_takes_the_last_ask_within_its_limit() -> None:
    buyer = BY_NAME["deadline_taker"]
    state = opened(limit=100.0, ask=150.0, max_rounds=3)
    assert buyer.act(state) == Action.counter(70.0)  # 70% of min(ask, limit)
    state = apply_move(state, Party.BUYER, Action.counter(70.0))
    state = apply_move(state, Party.SELLER, Action.counter(99.0))
    assert buyer.act(state) == Action.counter(70.0)  # holds while it has moves to spare
    state = apply_move(state, Party.BUYER, Action.counter(70.0))
    state = apply_move(state, Party.SELLER, Action.counter(98.0))
    assert state.rounds_left == 1
    assert buyer.act(state) == Action.accept()


def test_split_the_difference_offers_halfway() -> None:
    buyer = BY_NAME["split_difference"]
    state = apply_move(opened(limit=100.0, ask=120.0), Party.BUYER, Action.counter(60.0))
    state = apply_move(state, Party.SELLER, Action.counter(110.0))
    assert buyer.act(state) == Action.counter(85.0)


def test_tit_for_tat_concedes_as_much_as_the_seller() -> None:
    buyer = BY_NAME["tit_for_tat"]
    state = apply_move(opened(limit=100.0, ask=120.0), Party.BUYER, Action.counter(60.0))
    state = apply_move(state, Party.SELLER, Action.counter(113.0))
    assert buyer.act(state) == Action.counter(67.0)


def test_every_baseline_closes_deals_against_conceding_sellers() -> None:
    conceders = scenario_suite(30, seed=5, strategies=("conceder",))
    for baseline in BASELINES:
        outcomes = {play(scenario, baseline).state.outcome for scenario in conceders}
        assert Outcome.DEAL in outcomes, baseline.name
