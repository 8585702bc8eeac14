"""Observations and the money behind each discrete move."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import opened, states
from haggler.core.env import NegotiationEnv
from haggler.core.features import (
    ANCHOR_SHARE,
    CONCESSION_SHARE,
    N_MOVES,
    OBSERVATION_NAMES,
    OBSERVATION_SIZE,
    BuyerMove,
    counter_price,
    legal_moves,
    observe,
    to_action,
)
from haggler.core.negotiation import Action, NegotiationState, Party, ProtocolError, apply_move

COUNTER_MOVES = sorted(CONCESSION_SHARE, key=CONCESSION_SHARE.__getitem__)
OBSERVATION_SPACE = NegotiationEnv().observation_space


def test_the_observation_layout_is_named() -> None:
    assert len(OBSERVATION_NAMES) == OBSERVATION_SIZE
    assert len(set(OBSERVATION_NAMES)) == OBSERVATION_SIZE
    assert OBSERVATION_SPACE.shape == (OBSERVATION_SIZE,)


@given(states(finished=True))
def test_observations_are_finite_float32_inside_the_observation_space(
    state: NegotiationState,
) -> None:
    observation = observe(state)
    assert observation.shape == (OBSERVATION_SIZE,)
    assert observation.dtype == np.float32
    assert np.isfinite(observation).all()
    assert OBSERVATION_SPACE.contains(observation), dict(
        zip(OBSERVATION_NAMES, observation.tolist(), strict=True)
    )


@given(states())
def test_counter_prices_stay_within_the_limit_and_below_the_ask(state: NegotiationState) -> None:
    legal = legal_moves(state)
    for move in COUNTER_MOVES:
        if not legal[move]:
            continue
        price = counter_price(state, move)
        assert 0.01 <= price <= state.terms.buyer_limit
        assert price < state.last_ask
        assert round(price, 2) == price


@given(states())
def test_bigger_concessions_never_offer_less(state: NegotiationState) -> None:
    if not legal_moves(state)[BuyerMove.HOLD]:
        return
    prices = [counter_price(state, move) for move in COUNTER_MOVES]
    assert prices == sorted(prices)


@given(states())
def test_every_legal_move_is_a_move_the_protocol_accepts(state: NegotiationState) -> None:
    legal = legal_moves(state)
    assert legal.shape == (N_MOVES,)
    assert legal.dtype == bool
    assert legal[BuyerMove.WALK_AWAY]
    assert legal[BuyerMove.ACCEPT] == (state.last_ask <= state.terms.buyer_limit)
    for move in BuyerMove:
        if legal[move]:
            after = apply_move(state, Party.BUYER, to_action(state, move))
            assert after.buyer_moves == state.buyer_moves + 1
        else:
            with pytest.raises(ProtocolError):
                to_action(state, move)


def test_accept_is_illegal_when_the_ask_is_above_the_limit() -> None:
    state = opened(limit=90.0, ask=90.01)
    assert not legal_moves(state)[BuyerMove.ACCEPT]
    with pytest.raises(ProtocolError, match="ACCEPT"):
        to_action(state, BuyerMove.ACCEPT)
    assert legal_moves(opened(limit=90.0, ask=90.0))[BuyerMove.ACCEPT]


def test_moves_map_to_the_protocols_actions() -> None:
    state = opened(limit=150.0, ask=120.0)
    assert to_action(state, BuyerMove.ACCEPT) == Action.accept()
    assert to_action(state, int(BuyerMove.WALK_AWAY)) == Action.walk_away()
    assert to_action(state, BuyerMove.HOLD).price == counter_price(state, BuyerMove.HOLD)


def test_the_first_offer_opens_at_a_low_anchor() -> None:
    # Half of the ask or of the list price, whichever is lower: never of the limit.
    state = opened(list_price=100.0, limit=90.0, ask=120.0)
    assert counter_price(state, BuyerMove.HOLD) == round(ANCHOR_SHARE * 100.0, 2)
    state = opened(list_price=100.0, limit=150.0, ask=80.0)
    assert counter_price(state, BuyerMove.HOLD) == round(ANCHOR_SHARE * 80.0, 2)
    state = opened(list_price=100.0, limit=60.0, ask=120.0)
    assert counter_price(state, BuyerMove.HOLD) == round(ANCHOR_SHARE * 100.0, 2)


def with_limit(state: NegotiationState, limit: float) -> NegotiationState:
    """The same negotiation (transcript, asks, bids) by a buyer with another limit."""
    return dataclasses.replace(state, terms=dataclasses.replace(state.terms, buyer_limit=limit))


@given(states(), st.floats(0.05, 3.0))
def test_the_limit_is_never_an_anchor(state: NegotiationState, limit_share: float) -> None:
    """Counter-offers do not move when only the limit does: a seller that watches the offers
    learns nothing about the limit from them, except that the buyer can pay at least this much."""
    # The bids already made must stay within the other limit, or the transcript is impossible.
    other_limit = max(round(state.terms.list_price * limit_share, 2), *state.bids, 0.01)
    other = with_limit(state, other_limit)
    legal = legal_moves(other)
    for move in COUNTER_MOVES:
        price = counter_price(state, move)
        assert counter_price(other, move) == price
        # A counter is legal exactly when its price is positive and within the limit.
        assert legal[move] == (0 < price <= other_limit)
        assert legal_moves(state)[move] == (0 < price <= state.terms.buyer_limit)


def test_a_counter_above_the_limit_is_not_a_legal_move() -> None:
    # Anchor 50 against an ask of 120: CONCEDE_25 offers 67.50, above a limit of 60.
    state = opened(list_price=100.0, limit=60.0, ask=120.0)
    assert counter_price(state, BuyerMove.CONCEDE_25) == 67.5
    legal = legal_moves(state)
    assert legal[BuyerMove.HOLD] and legal[BuyerMove.CONCEDE_10]  # 50.00 and 57.00
    assert not legal[BuyerMove.CONCEDE_25]
    with pytest.raises(ProtocolError, match="CONCEDE_25"):
        to_action(state, BuyerMove.CONCEDE_25)
    # At a limit of 67.50 the same move is legal, at the same price.
    assert legal_moves(with_limit(state, 67.5))[BuyerMove.CONCEDE_25]
    assert to_action(with_limit(state, 67.5), BuyerMove.CONCEDE_25) == Action.counter(67.5)


def test_later_offers_concede_a_share_of_the_gap_from_the_last_offer() -> None:
    state = apply_move(opened(limit=80.0, ask=120.0), Party.BUYER, Action.counter(60.0))
    state = apply_move(state, Party.SELLER, Action.counter(100.0))
    assert counter_price(state, BuyerMove.HOLD) == 60.0
    legal = legal_moves(state)
    for move, share in CONCESSION_SHARE.items():
        # Not capped at the limit: CONCEDE_75 offers 90, above 80, and is not legal.
        assert counter_price(state, move) == pytest.approx(60.0 + share * 40.0, abs=0.01)
        assert legal[move] == (60.0 + share * 40.0 <= 80.0)


def scaled_state(scale: float) -> NegotiationState:
    state = opened(list_price=100.0 * scale, limit=90.0 * scale, ask=120.0 * scale)
    for bid, ask in ((50.0, 115.0), (60.0, 108.0)):
        state = apply_move(state, Party.BUYER, Action.counter(bid * scale))
        state = apply_move(state, Party.SELLER, Action.counter(ask * scale))
    return state


def test_observations_do_not_depend_on_the_currency_scale() -> None:
    # One network serves a 20-euro box of gloves and a 2,000-euro espresso machine alike.
    small, large = observe(scaled_state(1.0)), observe(scaled_state(100.0))
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-6)


def test_observations_track_time_left() -> None:
    names = list(OBSERVATION_NAMES)
    state = opened(max_rounds=2)
    first = observe(state)
    state = apply_move(state, Party.BUYER, Action.counter(50.0))
    state = apply_move(state, Party.SELLER, Action.counter(110.0))
    second = observe(state)
    assert second[names.index("rounds_left_share")] < first[names.index("rounds_left_share")]
    assert first[names.index("is_last_move")] == 0.0
    assert second[names.index("is_last_move")] == 1.0


def test_every_legal_counter_is_accepted_by_the_protocol_even_for_an_unrounded_limit() -> None:
    from haggler.core.negotiation import Party, Terms, apply_move, open_negotiation

    terms = Terms(100.0, 100.006)
    assert terms.buyer_limit == 100.01  # the limit is stored in cents
    state = open_negotiation(terms, 150.0)
    for move in BuyerMove:
        if legal_moves(state)[move]:
            apply_move(state, Party.BUYER, to_action(state, move))
