"""The protocol: turn order, the buyer's limit and deadline, money, outcome and reward."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import opened
from haggler.core.negotiation import (
    MAX_PRICE,
    Action,
    Move,
    NegotiationState,
    Outcome,
    Party,
    ProtocolError,
    RewardConfig,
    Terms,
    apply_move,
    episode_return,
    money,
    open_negotiation,
    result,
    step_reward,
)


def buyer(state: NegotiationState, action: Action) -> NegotiationState:
    return apply_move(state, Party.BUYER, action)


def seller(state: NegotiationState, action: Action) -> NegotiationState:
    return apply_move(state, Party.SELLER, action)


# -- money ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10, 10.0), (19.999, 20.0), (3.14159, 3.14), (0.01, 0.01), (MAX_PRICE, MAX_PRICE)],
)
def test_money_rounds_to_cents(value: float, expected: float) -> None:
    assert money(value) == expected
    assert isinstance(money(value), float)


@pytest.mark.parametrize(
    "value",
    [
        0,
        0.0,
        -0.0,
        -1,
        -0.01,
        0.004,  # rounds to 0.00: not a price
        math.nan,
        math.inf,
        -math.inf,
        MAX_PRICE + 0.01,
        1e308,
        "12.50",
        None,
        True,
        [12.5],
    ],
)
def test_money_refuses_anything_that_is_not_a_positive_finite_price(value: object) -> None:
    with pytest.raises(ProtocolError):
        money(value)  # type: ignore[arg-type]


def test_money_refuses_an_integer_too_large_for_a_float_with_a_protocol_error() -> None:
    # A JSON body like {"price": 1e400-as-integer} arrives as a Python int; it must be a clear
    # protocol error (a 4xx), not an OverflowError from the float conversion (a 500).
    with pytest.raises(ProtocolError):
        money(10**400)


def test_a_counter_offer_too_large_for_a_float_is_refused_and_changes_nothing() -> None:
    state = opened()
    before = copy.deepcopy(state)
    with pytest.raises(ProtocolError):
        buyer(state, Action.counter(10**400))
    assert state == before


# -- terms and opening ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"list_price": 0.0},
        {"buyer_limit": -5.0},
        {"buyer_limit": math.nan},
        {"max_rounds": 0},
        {"max_rounds": 101},
        {"quantity": 0},
    ],
)
def test_terms_refuse_invalid_values(kwargs: dict[str, float]) -> None:
    values = {"list_price": 100.0, "buyer_limit": 90.0, "max_rounds": 10, "quantity": 1} | kwargs
    with pytest.raises(ProtocolError):
        Terms(**values)  # type: ignore[arg-type]


def test_default_max_rounds_is_ten() -> None:
    assert Terms(list_price=100.0, buyer_limit=90.0).max_rounds == 10


def test_the_seller_opens_and_the_buyer_moves_next() -> None:
    state = opened(ask=120.004)
    assert state.to_move is Party.BUYER
    assert state.last_ask == 120.0
    assert state.asks == (120.0,)
    assert state.bids == ()
    assert state.transcript[0].party is Party.SELLER
    assert state.transcript[0].round == 0
    assert state.rounds_left == 10
    assert not state.is_over


@pytest.mark.parametrize("ask", [0, -10, math.nan, math.inf])
def test_an_opening_ask_that_is_not_a_price_is_refused(ask: float) -> None:
    with pytest.raises(ProtocolError):
        open_negotiation(Terms(100.0, 90.0), ask)


# -- turn order and the buyer's rules ---------------------------------------------------------


def test_the_seller_cannot_move_out_of_turn() -> None:
    state = opened()
    for action in (Action.accept(), Action.walk_away(), Action.counter(110.0)):
        with pytest.raises(ProtocolError, match="seller's turn"):
            seller(state, action)


def test_the_buyer_cannot_move_twice_in_a_row() -> None:
    state = buyer(opened(), Action.counter(60.0))
    assert state.to_move is Party.SELLER
    with pytest.raises(ProtocolError, match="buyer's turn"):
        buyer(state, Action.counter(61.0))


def test_turns_alternate_and_count_the_buyers_rounds() -> None:
    state = opened()
    state = buyer(state, Action.counter(60.0))
    state = seller(state, Action.counter(115.0))
    state = buyer(state, Action.counter(70.0))
    assert [turn.party for turn in state.transcript] == [
        Party.SELLER,
        Party.BUYER,
        Party.SELLER,
        Party.BUYER,
    ]
    assert [turn.round for turn in state.transcript] == [0, 1, 1, 2]
    assert state.buyer_moves == 2
    assert state.rounds_left == 8
    assert state.asks == (120.0, 115.0)
    assert state.bids == (60.0, 70.0)


def test_the_buyer_cannot_accept_above_its_limit() -> None:
    state = opened(limit=90.0, ask=90.01)
    with pytest.raises(ProtocolError, match="limit"):
        buyer(state, Action.accept())


def test_the_buyer_can_accept_exactly_at_its_limit() -> None:
    state = buyer(opened(limit=90.0, ask=90.0), Action.accept())
    assert state.outcome is Outcome.DEAL
    assert state.deal_price == 90.0


def test_the_buyer_cannot_offer_above_its_limit() -> None:
    with pytest.raises(ProtocolError, match="limit"):
        buyer(opened(limit=90.0, ask=120.0), Action.counter(90.01))


def test_a_buyer_counter_at_or_above_the_ask_is_refused() -> None:
    state = opened(limit=200.0, ask=120.0)
    for price in (120.0, 130.0):
        with pytest.raises(ProtocolError, match="ask"):
            buyer(state, Action.counter(price))


def test_a_counter_offer_needs_a_price() -> None:
    with pytest.raises(ProtocolError, match="price"):
        buyer(opened(), Action(Move.COUNTER))


def test_a_seller_counter_at_or_below_the_buyers_offer_is_refused() -> None:
    state = buyer(opened(), Action.counter(80.0))
    for price in (80.0, 79.0):
        with pytest.raises(ProtocolError):
            seller(state, Action.counter(price))


def test_counter_prices_are_rounded_to_cents() -> None:
    state = buyer(opened(), Action.counter(61.234))
    assert state.bids == (61.23,)
    state = seller(state, Action.counter(110.005))
    assert state.last_ask == pytest.approx(110.0, abs=0.011)
    assert round(state.last_ask, 2) == state.last_ask


# -- endings ----------------------------------------------------------------------------------


def test_buyer_accept_closes_the_deal_at_the_ask() -> None:
    state = opened(limit=130.0, ask=120.0)
    state = buyer(state, Action.accept())
    assert (state.outcome, state.deal_price) == (Outcome.DEAL, 120.0)
    assert state.to_move is None


def test_seller_accept_closes_the_deal_at_the_buyers_offer() -> None:
    state = buyer(opened(), Action.counter(85.0))
    state = seller(state, Action.accept())
    assert (state.outcome, state.deal_price) == (Outcome.DEAL, 85.0)


def test_walking_away_ends_without_a_deal() -> None:
    assert buyer(opened(), Action.walk_away()).outcome is Outcome.BUYER_WALKED
    state = seller(buyer(opened(), Action.counter(50.0)), Action.walk_away())
    assert state.outcome is Outcome.SELLER_WALKED
    assert state.deal_price is None


def test_a_seller_counter_after_the_buyers_last_move_is_the_deadline() -> None:
    state = opened(max_rounds=2)
    state = seller(buyer(state, Action.counter(60.0)), Action.counter(115.0))
    assert not state.is_over
    assert state.rounds_left == 1
    state = buyer(state, Action.counter(70.0))
    assert state.rounds_left == 0
    state = seller(state, Action.counter(110.0))
    assert state.outcome is Outcome.DEADLINE
    assert state.deal_price is None
    assert state.buyer_moves == 2
    with pytest.raises(ProtocolError, match="over"):
        buyer(state, Action.counter(80.0))


def test_the_seller_can_still_accept_the_buyers_last_offer() -> None:
    state = opened(max_rounds=1)
    state = seller(buyer(state, Action.counter(85.0)), Action.accept())
    assert (state.outcome, state.deal_price) == (Outcome.DEAL, 85.0)


def test_a_one_round_negotiation_ends_at_the_first_seller_counter() -> None:
    state = opened(max_rounds=1)
    state = seller(buyer(state, Action.counter(60.0)), Action.counter(119.0))
    assert state.outcome is Outcome.DEADLINE


def ended_states() -> dict[str, NegotiationState]:
    start = opened(limit=130.0)
    countered = buyer(start, Action.counter(60.0))
    one_round = buyer(opened(max_rounds=1), Action.counter(60.0))
    return {
        "buyer accepted": buyer(start, Action.accept()),
        "buyer walked": buyer(start, Action.walk_away()),
        "seller accepted": seller(countered, Action.accept()),
        "seller walked": seller(countered, Action.walk_away()),
        "deadline": seller(one_round, Action.counter(110.0)),
    }


ENDED = ended_states()


@pytest.mark.parametrize("state", ENDED.values(), ids=ENDED.keys())
def test_no_move_is_accepted_after_the_end(state: NegotiationState) -> None:
    assert state.is_over
    before = copy.deepcopy(state)
    for party in Party:
        for action in (Action.accept(), Action.walk_away(), Action.counter(50.0)):
            with pytest.raises(ProtocolError, match="over"):
                apply_move(state, party, action)
    assert state == before


def test_states_are_immutable() -> None:
    state = opened()
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.outcome = Outcome.DEAL  # type: ignore[misc]
    after = buyer(state, Action.counter(60.0))
    assert after is not state
    assert state.bids == ()
    assert state.to_move is Party.BUYER


def test_a_rejected_move_leaves_the_state_unchanged() -> None:
    state = buyer(opened(), Action.counter(60.0))
    state = seller(state, Action.counter(110.0))
    before = copy.deepcopy(state)
    for action in (Action.accept(), Action.counter(95.0), Action.counter(-1.0)):
        with pytest.raises(ProtocolError):
            buyer(state, action)
    with pytest.raises(ProtocolError):
        seller(state, Action.accept())
    assert state == before
    # and the same state still accepts a legal move
    assert buyer(state, Action.counter(70.0)).bids == (60.0, 70.0)


# -- random sequences of moves cannot break the rules -----------------------------------------

ODD_PRICES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    # integers beyond the float range have a test of their own, above
    st.integers(min_value=-(10**15), max_value=10**15),
    st.sampled_from(
        [0, 0.0, -0.0, 0.004, 0.005, 0.01, MAX_PRICE, MAX_PRICE + 0.01, 1e308, -1e308, math.nan]
    ),
    st.sampled_from([math.inf, -math.inf]),
    st.text(max_size=4),
    st.none(),
    st.booleans(),
)
RELATIVE_PRICES = st.tuples(st.sampled_from(["limit", "ask", "bid"]), st.floats(0.0, 2.0))
# "open": a point of the range the rules allow the mover; 0 and 1 are its ends, legal or not.
OPEN_PRICES = st.tuples(
    st.just("open"), st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))
)
MOVES = st.tuples(
    # mostly whoever is to move, so that negotiations get somewhere; sometimes out of turn
    st.sampled_from(["to_move"] * 4 + [Party.BUYER, Party.SELLER]),
    st.sampled_from([Move.COUNTER] * 28 + [Move.ACCEPT, Move.WALK_AWAY]),
    st.one_of(OPEN_PRICES, OPEN_PRICES, RELATIVE_PRICES, ODD_PRICES),
)
POSITIVE = st.floats(min_value=0.01, max_value=1e6)


def resolve(price: object, state: NegotiationState, party: Party) -> object:
    """Turn a relative price spec into a price in the current state; anything else is as drawn."""
    if not isinstance(price, tuple):
        return price
    base, factor = price
    ask, bid, limit = state.last_ask, state.last_bid, state.terms.buyer_limit
    if base == "open":  # factors 0 and 1 are the boundaries, legal or not
        if party is Party.BUYER:
            return factor * min(limit, ask)
        low = bid if bid is not None else ask
        return low + factor * low
    reference = {"limit": limit, "ask": ask, "bid": bid if bid is not None else ask}[base]
    return reference * factor


def assert_rules_hold(state: NegotiationState) -> None:
    terms = state.terms
    for turn in state.transcript:
        if turn.price is not None:
            assert math.isfinite(turn.price)
            assert 0 < turn.price <= MAX_PRICE
            assert round(turn.price, 2) == turn.price
    assert all(bid <= terms.buyer_limit for bid in state.bids)
    for previous, turn in itertools.pairwise(state.transcript):
        if turn.move is Move.COUNTER and previous.move is Move.COUNTER:
            assert turn.price is not None and previous.price is not None
            if turn.party is Party.BUYER:
                assert turn.price < previous.price, "a buyer counter at or above the ask"
            else:
                assert turn.price > previous.price, "a seller counter at or below the offer"
    parties = [turn.party for turn in state.transcript]
    assert parties[0] is Party.SELLER
    assert all(a is not b for a, b in itertools.pairwise(parties))
    assert state.buyer_moves <= terms.max_rounds
    assert (state.outcome is Outcome.DEAL) == (state.deal_price is not None)
    if state.deal_price is not None:
        assert math.isfinite(state.deal_price)
        assert 0 < state.deal_price <= terms.buyer_limit
        assert state.deal_price in (*state.asks, *state.bids)
    if state.outcome is Outcome.DEADLINE:
        assert state.buyer_moves == terms.max_rounds
    assert -1.0 <= step_reward(state) <= 1.0


@settings(max_examples=200)
@given(
    list_price=POSITIVE,
    limit=POSITIVE,
    ask_over_limit=st.one_of(st.floats(0.2, 3.0), st.floats(1e-6, 1e6)),
    max_rounds=st.integers(1, 12),
    moves=st.lists(MOVES, min_size=20, max_size=60),
    penalty=st.floats(0.0, 5.0),
    round_cost=st.floats(-5.0, 5.0),
)
def test_no_sequence_of_moves_breaks_the_rules(
    list_price: float,
    limit: float,
    ask_over_limit: float,
    max_rounds: int,
    moves: list[tuple[Party | str, Move, object]],
    penalty: float,
    round_cost: float,
) -> None:
    config = RewardConfig(no_deal_penalty=penalty, round_cost=round_cost)
    terms = Terms(list_price, limit, max_rounds)
    state = open_negotiation(terms, min(1e6, max(0.01, terms.buyer_limit * ask_over_limit)))
    for who, move, price in moves:
        party = who if isinstance(who, Party) else (state.to_move or Party.BUYER)
        action = Action(move, resolve(price, state, party))  # type: ignore[arg-type]
        before = copy.deepcopy(state)
        try:
            after = apply_move(state, party, action)
        except ProtocolError:
            assert state == before
            continue
        assert not state.is_over, "a move was accepted after the end"
        assert party is state.to_move, "a move was accepted out of turn"
        assert len(after.transcript) == len(state.transcript) + 1
        state = after
        assert_rules_hold(state)
        assert -1.0 <= step_reward(state, config) <= 1.0


# -- result -----------------------------------------------------------------------------------


def test_result_reports_savings_against_list_price() -> None:
    state = opened(list_price=100.0, limit=95.0, ask=120.0, quantity=4)
    state = seller(buyer(state, Action.counter(80.0)), Action.accept())
    summary = result(state)
    assert summary.outcome is Outcome.DEAL
    assert summary.deal_price == 80.0
    assert summary.savings_per_unit == 20.0
    assert summary.savings_total == 80.0
    assert summary.savings_pct == pytest.approx(20.0)
    assert summary.rounds == 1
    assert summary.ended_by is Party.SELLER


def test_a_deal_above_list_price_is_a_negative_saving() -> None:
    state = buyer(opened(list_price=100.0, limit=110.0, ask=105.0), Action.accept())
    summary = result(state)
    assert summary.savings_per_unit == -5.0
    assert summary.savings_pct == pytest.approx(-5.0)
    assert summary.ended_by is Party.BUYER


def test_no_deal_saves_nothing() -> None:
    summary = result(buyer(opened(quantity=3), Action.walk_away()))
    assert summary.deal_price is None
    assert (summary.savings_per_unit, summary.savings_total, summary.savings_pct) == (0, 0, 0)


def test_result_of_an_unfinished_negotiation_is_refused() -> None:
    with pytest.raises(ProtocolError, match="not over"):
        result(opened())


# -- reward -----------------------------------------------------------------------------------


DEFAULT = RewardConfig()


def test_deal_reward_is_the_saving_against_the_limit_minus_the_round_cost() -> None:
    state = seller(buyer(opened(limit=100.0), Action.counter(80.0)), Action.accept())
    assert step_reward(state) == pytest.approx((100.0 - 80.0) / 100.0 - DEFAULT.round_cost)
    config = RewardConfig(no_deal_penalty=0.3, round_cost=0.05)
    assert step_reward(state, config) == pytest.approx(0.2 - 0.05)


def test_a_deal_at_the_limit_earns_only_the_round_cost() -> None:
    state = buyer(opened(limit=100.0, ask=100.0), Action.accept())
    assert step_reward(state) == pytest.approx(-DEFAULT.round_cost)


def test_an_ongoing_negotiation_costs_one_round() -> None:
    state = seller(buyer(opened(), Action.counter(60.0)), Action.counter(110.0))
    assert not state.is_over
    assert step_reward(state) == pytest.approx(-DEFAULT.round_cost)
    config = RewardConfig(no_deal_penalty=0.3, round_cost=0.01)
    assert step_reward(state, config) == pytest.approx(-0.01)


@pytest.mark.parametrize(
    ("ask", "ending"),
    [
        (95.0, "buyer_walked"),
        (120.0, "buyer_walked"),
        (95.0, "seller_walked"),
        (120.0, "seller_walked"),
        (95.0, "deadline"),
        (120.0, "deadline"),
    ],
)
def test_every_no_deal_is_penalised_whatever_the_seller_asked(ask: float, ending: str) -> None:
    """The service cannot see the seller's floor: a no-deal costs the same whether or not an ask
    ever came within the limit (free walk-aways from sellers still coming down were learned)."""
    config = RewardConfig(no_deal_penalty=0.3, round_cost=0.01)
    state = opened(limit=100.0, ask=ask, max_rounds=1 if ending == "deadline" else 10)
    state = buyer(state, Action.counter(60.0))
    if ending == "buyer_walked":
        state = buyer(seller(state, Action.counter(ask)), Action.walk_away())
    elif ending == "seller_walked":
        state = seller(state, Action.walk_away())
    else:
        state = seller(state, Action.counter(ask))
    assert state.outcome is Outcome(ending)
    assert state.deal_was_available is (ask <= 100.0)
    assert step_reward(state, config) == pytest.approx(-0.01 - 0.3)


def test_walking_away_at_once_is_penalised_even_when_no_ask_was_within_the_limit() -> None:
    config = RewardConfig(no_deal_penalty=0.3, round_cost=0.01)
    never_asked = buyer(opened(limit=100.0, ask=500.0), Action.walk_away())
    assert not never_asked.deal_was_available
    assert step_reward(never_asked, config) == pytest.approx(-0.31)
    assert episode_return(never_asked, config) == pytest.approx(-0.31)


def test_missing_the_deadline_with_a_deal_on_the_table_is_penalised() -> None:
    state = opened(limit=100.0, ask=120.0, max_rounds=1)
    state = seller(buyer(state, Action.counter(60.0)), Action.counter(99.0))
    assert state.outcome is Outcome.DEADLINE
    assert step_reward(state) == pytest.approx(-DEFAULT.round_cost - DEFAULT.no_deal_penalty)


def test_step_reward_is_clipped_to_plus_minus_one() -> None:
    walked = buyer(opened(limit=100.0, ask=95.0), Action.walk_away())
    assert step_reward(walked, RewardConfig(no_deal_penalty=5.0)) == -1.0
    deal = buyer(opened(limit=100.0, ask=1.0), Action.accept())
    assert step_reward(deal, RewardConfig(round_cost=-5.0)) == 1.0


def test_episode_return_is_the_sum_of_the_step_rewards() -> None:
    state = opened(limit=100.0, ask=120.0)
    rewards = []
    state = seller(buyer(state, Action.counter(60.0)), Action.counter(110.0))
    rewards.append(step_reward(state))
    state = seller(buyer(state, Action.counter(70.0)), Action.counter(100.0))
    rewards.append(step_reward(state))
    state = seller(buyer(state, Action.counter(80.0)), Action.accept())
    rewards.append(step_reward(state))
    assert episode_return(state) == pytest.approx(sum(rewards))
    assert episode_return(state) == pytest.approx(0.2 - 3 * DEFAULT.round_cost)


def test_episode_return_of_a_lost_deal_includes_the_penalty_once() -> None:
    state = opened(limit=100.0, ask=120.0)
    state = seller(buyer(state, Action.counter(60.0)), Action.counter(99.0))
    state = buyer(state, Action.walk_away())
    expected = -2 * DEFAULT.round_cost - DEFAULT.no_deal_penalty
    assert episode_return(state) == pytest.approx(expected)
    # The seller's last ask (99) was within the limit; it makes no difference to the penalty.
    state = opened(limit=100.0, ask=120.0)
    state = seller(buyer(state, Action.counter(60.0)), Action.counter(110.0))
    state = buyer(state, Action.walk_away())
    assert not state.deal_was_available
    assert episode_return(state) == pytest.approx(expected)
