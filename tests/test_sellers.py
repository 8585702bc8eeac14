"""Simulated sellers: hidden reserve, strategies, determinism."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haggler.core.catalogue import SEED_CATALOGUE
from haggler.core.features import BuyerMove, legal_moves, to_action
from haggler.core.negotiation import (
    Action,
    Move,
    NegotiationState,
    Outcome,
    Party,
    Terms,
    apply_move,
    open_negotiation,
)
from haggler.core.play import buyer_round
from haggler.core.scenarios import draw_scenario
from haggler.core.sellers import (
    ALL_STRATEGIES,
    FAMILIES,
    FAMILY_OF,
    HELD_OUT_FAMILY,
    HELD_OUT_STRATEGIES,
    TRAINING_STRATEGIES,
    LastMinuteSeller,
    ReciprocalSeller,
    SimulatedSeller,
    SwitchingSeller,
    TouchySeller,
    make_seller,
    strategies_without,
)

RECIPROCAL = (
    "tit_for_tat",
    "reciprocal_absolute",
    "reciprocal_relative",
    "reciprocal_averaged",
    "reciprocal_steps",
)
NOISELESS_TIME_BASED = ("boulware", "linear", "conceder", "time_dependent")
TIME_BASED = (*NOISELESS_TIME_BASED, "noisy_boulware", "noisy_linear")


def seller_of(strategy: str, seed: int, list_price: float = 289.0) -> SimulatedSeller:
    return make_seller(strategy, list_price, np.random.default_rng(seed))


def cents_up(value: float) -> float:
    return math.ceil(value * 100 - 1e-9) / 100


def play_script(
    seller: SimulatedSeller, terms: Terms, script: Sequence[tuple[str, float]]
) -> NegotiationState:
    """Play buyer moves from `script` against `seller`; every seller reply must be legal."""
    state = open_negotiation(terms, seller.opening_ask())
    for kind, fraction in script:
        if state.is_over:
            break
        ceiling = min(terms.buyer_limit, state.last_ask - 0.01)
        if kind == "accept" and state.last_ask <= terms.buyer_limit:
            action = Action.accept()
        elif kind == "walk" or ceiling < 0.01:
            action = Action.walk_away()
        elif kind == "hold" and state.last_bid is not None:
            action = Action.counter(state.last_bid)
        else:
            action = Action.counter(max(0.01, math.floor(ceiling * fraction * 100) / 100))
        state = apply_move(state, Party.BUYER, action)
        if not state.is_over:
            state = apply_move(state, Party.SELLER, seller.respond(state))
    return state


def play_fixed_bids(seller: SimulatedSeller, bids: Sequence[float]) -> NegotiationState:
    terms = Terms(seller.list_price, seller.list_price, max_rounds=min(len(bids) + 1, 100))
    state = open_negotiation(terms, seller.opening_ask())
    for bid in bids:
        if state.is_over:
            break
        state = apply_move(state, Party.BUYER, Action.counter(bid))
        if not state.is_over:
            state = apply_move(state, Party.SELLER, seller.respond(state))
    return state


SCRIPTS = st.lists(
    st.tuples(
        st.sampled_from(["counter", "counter", "counter", "hold", "hold", "accept", "walk"]),
        st.floats(0.0, 1.0),
    ),
    min_size=1,
    max_size=30,
)
LIST_PRICES = st.one_of(
    st.sampled_from([product.list_price for product in SEED_CATALOGUE]),
    st.floats(0.5, 100_000).map(lambda price: round(price, 2)),
)


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**32),
    list_price=LIST_PRICES,
    limit_share=st.floats(0.3, 1.5),
    max_rounds=st.integers(1, 30),
    script=SCRIPTS,
)
def test_a_seller_never_asks_or_sells_below_its_reserve(
    strategy: str,
    seed: int,
    list_price: float,
    limit_share: float,
    max_rounds: int,
    script: list[tuple[str, float]],
) -> None:
    seller = seller_of(strategy, seed, list_price)
    assert seller.opening_ask() >= seller.reserve
    limit = max(0.01, round(list_price * limit_share, 2))
    state = play_script(seller, Terms(list_price, limit, max_rounds), script)
    seller_asks = [t.price for t in state.transcript if t.party is Party.SELLER and t.price]
    assert all(ask >= seller.reserve for ask in seller_asks), (seller.reserve, seller_asks)
    if state.deal_price is not None:
        assert state.deal_price >= seller.reserve


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_the_same_seed_gives_the_same_seller(strategy: str) -> None:
    first, second = seller_of(strategy, 42), seller_of(strategy, 42)
    assert (first.reserve, first.opening, first.deadline) == (
        second.reserve,
        second.opening,
        second.deadline,
    )
    script = [("counter", f) for f in (0.3, 0.4, 0.5, 0.55, 0.6, 0.62, 0.64, 0.7, 0.8, 0.9)]
    terms = Terms(289.0, 300.0, max_rounds=12)
    assert play_script(first, terms, script) == play_script(second, terms, script)


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_different_seeds_give_different_sellers(strategy: str) -> None:
    reserves = {seller_of(strategy, seed).reserve for seed in range(10)}
    assert len(reserves) == 10


def test_each_seller_knows_its_strategy_and_hides_a_plausible_reserve() -> None:
    for strategy in ALL_STRATEGIES:
        for seed in range(20):
            seller = seller_of(strategy, seed, list_price=100.0)
            assert seller.strategy == strategy
            assert 0 < seller.reserve < seller.opening_ask()
            assert seller.deadline >= 1


def test_an_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown seller strategy 'haggle_bot'") as error:
        make_seller("haggle_bot", 100.0, np.random.default_rng(0))
    for strategy in ALL_STRATEGIES:
        assert strategy in str(error.value)


def test_held_out_strategies_are_never_trained_on() -> None:
    assert HELD_OUT_STRATEGIES
    assert not set(HELD_OUT_STRATEGIES) & set(TRAINING_STRATEGIES)
    assert set(HELD_OUT_STRATEGIES) | set(TRAINING_STRATEGIES) == set(ALL_STRATEGIES)
    assert len(set(ALL_STRATEGIES)) == len(ALL_STRATEGIES)


# -- families ---------------------------------------------------------------------------------


def test_every_strategy_belongs_to_exactly_one_family() -> None:
    members = [strategy for strategies in FAMILIES.values() for strategy in strategies]
    assert sorted(members) == sorted(ALL_STRATEGIES)
    assert {s: f for f, strategies in FAMILIES.items() for s in strategies} == FAMILY_OF
    assert set(FAMILIES) == {
        "time_dependent",
        "reciprocal",
        "deadline",
        "hardliner",
        "irregular",
        "touchy",
        "switching",
    }


def test_the_held_out_family_is_the_deadline_sellers() -> None:
    assert HELD_OUT_FAMILY == "deadline"
    assert set(HELD_OUT_STRATEGIES) == set(FAMILIES["deadline"])
    assert set(HELD_OUT_STRATEGIES) == {"deadline_reciprocal", "last_minute"}
    assert set(TRAINING_STRATEGIES) == set(strategies_without(HELD_OUT_FAMILY))


@pytest.mark.parametrize("family", FAMILIES)
def test_leaving_a_family_out_removes_exactly_that_family(family: str) -> None:
    kept = strategies_without(family)
    assert set(kept) == set(ALL_STRATEGIES) - set(FAMILIES[family])
    assert all(FAMILY_OF[strategy] != family for strategy in kept)
    assert len(kept) == len(set(kept))
    assert [s for s in ALL_STRATEGIES if s in kept] == list(kept)  # the catalogue's order


def test_leaving_out_an_unknown_family_is_refused_and_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown seller family 'boulware'") as error:
        strategies_without("boulware")  # a strategy, not a family
    for family in FAMILIES:
        assert family in str(error.value)


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_reserves_openings_and_deadlines_span_the_documented_ranges(strategy: str) -> None:
    """Reserves from 40% to 97% of list price; openings from list price to 1.5 times it (the
    hard-liner just above its reserve, the fair-price touchy seller near list price); deadlines
    from 4 to 40 replies (hard-liners 2 to 11)."""
    sellers = [seller_of(strategy, seed, list_price=100.0) for seed in range(300)]
    reserves = [seller.reserve for seller in sellers]
    assert 40.0 <= min(reserves) < 45.0 and 92.0 < max(reserves) <= 97.0
    deadlines = {seller.deadline for seller in sellers}
    if strategy == "hardliner":
        assert deadlines == set(range(2, 12))
        assert all(s.reserve * 1.02 <= s.opening <= s.reserve * 1.1 + 1e-9 for s in sellers)
    else:
        assert deadlines == set(range(4, 41))
    if strategy not in ("hardliner", "touchy"):
        openings = [seller.opening for seller in sellers]
        assert 100.0 <= min(openings) < 105.0 and 145.0 < max(openings) <= 150.0


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
@settings(max_examples=25)
@given(seed=st.integers(0, 2**32), moves=st.integers(0, 2**32))
def test_a_seller_answers_the_agents_moves_legally_and_never_below_its_reserve(
    strategy: str, seed: int, moves: int
) -> None:
    """Long negotiations (up to 40 rounds, the scenarios' limits from 45% to 120% of list) by
    random legal agent moves: every reply is a legal move of the protocol (`apply_move` raises
    on any other), and no ask or sale is below the seller's reserve."""
    scenario = draw_scenario(np.random.default_rng(seed), [strategy])
    seller = scenario.seller()
    rng = np.random.default_rng(moves)
    state = open_negotiation(scenario.terms, seller.opening_ask())
    while not state.is_over:
        legal = np.flatnonzero(legal_moves(state))
        # Mostly counter-offers, so that negotiations run to the sellers' deadlines.
        counters = [m for m in legal if m >= BuyerMove.HOLD]
        pool = counters if counters and rng.random() < 0.95 else legal
        state = buyer_round(state, to_action(state, int(rng.choice(pool))), seller)
    assert state.buyer_moves <= scenario.terms.max_rounds
    seller_asks = [t.price for t in state.transcript if t.party is Party.SELLER and t.price]
    assert all(ask >= seller.reserve for ask in seller_asks), (seller.reserve, seller_asks)
    if state.deal_price is not None:
        assert state.deal_price >= seller.reserve


# -- reciprocal sellers -----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", RECIPROCAL)
@pytest.mark.parametrize("seed", range(5))
def test_a_reciprocal_seller_concedes_nothing_while_the_buyer_holds(
    strategy: str, seed: int
) -> None:
    seller = seller_of(strategy, seed)
    low = round(0.3 * seller.list_price, 2)  # below every reserve: the seller never accepts it
    state = play_fixed_bids(seller, [low] * 40)
    goodwill, *later = state.asks[1:]
    assert goodwill <= state.asks[0]
    assert later, "the seller should have answered more than once"
    assert all(ask == goodwill for ask in later), state.asks
    assert state.outcome is Outcome.SELLER_WALKED
    assert len(state.asks) == seller.deadline + 1


def test_tit_for_tat_matches_the_buyers_concession() -> None:
    seller = seller_of("tit_for_tat", 3)
    state = play_fixed_bids(seller, [100.0, 100.0, 110.0])
    assert not state.is_over
    assert state.asks[-2] - state.asks[-1] == pytest.approx(10.0, abs=0.011)


# -- other strategies -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_a_touchy_seller_concedes_nothing_to_an_insult_and_leaves_a_repeat_offender(
    seed: int,
) -> None:
    seller = seller_of("touchy", seed)
    assert isinstance(seller, TouchySeller)
    ask = seller.opening_ask()
    insult = round(0.5 * seller.insult_ratio * ask, 2)
    state = open_negotiation(Terms(seller.list_price, ask), ask)
    state = apply_move(state, Party.BUYER, Action.counter(insult))
    reply = seller.respond(state)
    assert reply.move is not Move.ACCEPT
    if reply.move is Move.COUNTER:  # a warning: the same ask again, no concession
        assert reply.price == ask
        state = apply_move(state, Party.SELLER, reply)
        state = apply_move(state, Party.BUYER, Action.counter(round(insult + 0.05, 2)))
        reply = seller.respond(state)
    assert reply.move is Move.WALK_AWAY


@pytest.mark.parametrize("seed", range(5))
def test_a_touchy_seller_haggles_over_a_fair_offer(seed: int) -> None:
    seller = seller_of("touchy", seed)
    assert isinstance(seller, TouchySeller)
    ask = seller.opening_ask()
    fair = round(min(0.99, seller.insult_ratio + 0.05) * ask, 2)
    state = open_negotiation(Terms(seller.list_price, ask), ask)
    reply = seller.respond(apply_move(state, Party.BUYER, Action.counter(fair)))
    if reply.move is not Move.ACCEPT:
        assert reply.move is Move.COUNTER
        assert reply.price is not None and reply.price < ask


def touchy(**kwargs: float) -> TouchySeller:
    values = {"list_price": 100.0, "reserve": 80.0, "opening": 120.0, "deadline": 10} | kwargs
    return TouchySeller(**values, rng=np.random.default_rng(0), beta=1.0, insult_ratio=0.45)  # type: ignore[arg-type]


def test_a_touchy_seller_leaves_a_buyer_that_never_moves() -> None:
    stalled = play_fixed_bids(touchy(), [70.0, 70.0, 70.0])
    assert stalled.outcome is Outcome.SELLER_WALKED
    assert len(stalled.bids) == 3
    moving = play_fixed_bids(touchy(), [60.0, 65.0, 70.0])
    assert not moving.is_over


@pytest.mark.parametrize("seed", range(5))
def test_a_hardliner_never_moves_and_leaves_after_its_deadline(seed: int) -> None:
    seller = seller_of("hardliner", seed)
    low = round(0.3 * seller.list_price, 2)
    state = play_fixed_bids(seller, [low] * 40)
    assert set(state.asks) == {seller.opening_ask()}
    assert len(state.asks) == seller.deadline + 1
    assert state.outcome is Outcome.SELLER_WALKED


@pytest.mark.parametrize("seed", range(5))
def test_a_hardliner_takes_its_reserve_once_its_deadline_has_passed(seed: int) -> None:
    seller = seller_of("hardliner", seed)
    low = round(0.3 * seller.list_price, 2)
    state = play_fixed_bids(seller, [low] * seller.deadline + [cents_up(seller.reserve)])
    assert state.outcome is Outcome.DEAL
    assert state.deal_price == cents_up(seller.reserve)


@pytest.mark.parametrize("strategy", NOISELESS_TIME_BASED)
@pytest.mark.parametrize("seed", range(5))
def test_a_time_based_seller_reaches_its_reserve_at_its_deadline(strategy: str, seed: int) -> None:
    seller = seller_of(strategy, seed)
    low = round(0.3 * seller.list_price, 2)
    state = play_fixed_bids(seller, [low] * 40)
    asks = state.asks
    assert all(a >= b for a, b in itertools.pairwise(asks)), asks
    assert asks[seller.deadline] == cents_up(seller.reserve)
    assert state.outcome is Outcome.SELLER_WALKED


@pytest.mark.parametrize("strategy", TIME_BASED)
@pytest.mark.parametrize("seed", range(5))
def test_a_time_based_seller_takes_its_reserve_once_its_deadline_is_reached(
    strategy: str, seed: int
) -> None:
    seller = seller_of(strategy, seed)
    reserve = cents_up(seller.reserve)
    state = play_fixed_bids(seller, [round(0.3 * seller.list_price, 2)] * seller.deadline)
    assert not state.is_over
    if state.last_ask > reserve:
        state = apply_move(state, Party.BUYER, Action.counter(reserve))
        state = apply_move(state, Party.SELLER, seller.respond(state))
    else:
        state = apply_move(state, Party.BUYER, Action.accept())
    assert state.outcome is Outcome.DEAL
    assert state.deal_price == reserve


@pytest.mark.parametrize("seed", range(10))
def test_boulware_holds_firm_and_conceders_give_way_early(seed: int) -> None:
    def conceded_at_half_time(strategy: str) -> float:
        seller = seller_of(strategy, seed)
        state = play_fixed_bids(seller, [round(0.3 * seller.list_price, 2)] * 40)
        half = state.asks[seller.deadline // 2]
        return (state.asks[0] - half) / (state.asks[0] - seller.reserve)

    boulware = conceded_at_half_time("boulware")
    linear = conceded_at_half_time("linear")
    conceder = conceded_at_half_time("conceder")
    assert boulware < 0.25 < linear <= 0.51 < conceder


@pytest.mark.parametrize("seed", range(5))
def test_a_deadline_reciprocal_seller_gives_way_to_its_deadline_even_if_the_buyer_holds(
    seed: int,
) -> None:
    seller = seller_of("deadline_reciprocal", seed)
    low = round(0.3 * seller.list_price, 2)
    state = play_fixed_bids(seller, [low] * 41)
    asks = state.asks
    assert all(a >= b for a, b in itertools.pairwise(asks)), asks
    assert asks[seller.deadline] == cents_up(seller.reserve)
    assert state.outcome is Outcome.SELLER_WALKED


@pytest.mark.parametrize("seed", range(8))
def test_a_last_minute_seller_holds_its_opening_then_concedes_to_its_reserve(seed: int) -> None:
    seller = seller_of("last_minute", seed)
    assert isinstance(seller, LastMinuteSeller)
    low = round(0.3 * seller.list_price, 2)
    state = play_fixed_bids(seller, [low] * 41)
    asks = state.asks
    held = [
        reply
        for reply in range(1, seller.deadline + 1)
        if reply <= seller.hold_share * seller.deadline
    ]
    assert held, "it holds for at least its first reply"
    assert all(asks[reply] == asks[0] for reply in held), asks
    assert asks[seller.deadline] == cents_up(seller.reserve)
    assert all(a >= b for a, b in itertools.pairwise(asks)), asks


def test_an_averaging_reciprocal_seller_answers_the_buyers_mean_raise() -> None:
    """Faratin et al.'s averaged tit-for-tat: a raise of 30 after a held offer is answered with
    `factor` times 15 (the mean over its window of two moves), not 30 as tit-for-tat would."""

    def asks(mode: str) -> tuple[float, ...]:
        seller = ReciprocalSeller(
            list_price=300.0,
            reserve=100.0,
            opening=300.0,
            deadline=20,
            rng=np.random.default_rng(0),
            mode=mode,
            factor=1.0,
            step=5.0,
            window=2,
        )
        return play_fixed_bids(seller, [100.0, 100.0, 130.0]).asks

    averaged_asks, tit_for_tat_asks = asks("averaged"), asks("absolute")
    assert averaged_asks[:3] == tit_for_tat_asks[:3] == (300.0, 295.0, 295.0)  # goodwill, held
    assert averaged_asks[3] == 295.0 - 15.0
    assert tit_for_tat_asks[3] == 295.0 - 30.0


@pytest.mark.parametrize("reciprocal_first", [True, False])
def test_a_switching_seller_changes_behaviour_at_its_switch(reciprocal_first: bool) -> None:
    """Against a buyer that holds its offer, the reciprocal phase concedes nothing (after its
    goodwill step) and the time-dependent phase heads for the reserve: the asks stay flat on
    one side of the switch and come down on the other."""
    seller = SwitchingSeller(
        list_price=100.0,
        reserve=60.0,
        opening=130.0,
        deadline=20,
        rng=np.random.default_rng(0),
        mode="relative",
        factor=1.0,
        step=2.0,
        beta=1.0,
        switch_at=8,
        reciprocal_first=reciprocal_first,
    )
    asks = play_fixed_bids(seller, [30.0] * 21).asks
    before, after = asks[1:8], asks[8:21]  # replies 1-7, then 8-20
    assert all(a >= b for a, b in itertools.pairwise(asks)), asks
    if reciprocal_first:
        assert before == (128.0,) * 7  # the goodwill step, then nothing for a held offer
        assert after[-1] == 60.0 and len(set(after)) == len(after)  # down to the reserve
    else:
        assert len(set(before)) == len(before)  # conceding every reply
        assert set(after) == {before[-1]}  # then reciprocating a held offer: nothing


def test_an_irregular_seller_stalls_at_random_and_still_respects_its_reserve() -> None:
    stalls, moves = 0, 0
    for seed in range(30):
        seller = seller_of("irregular", seed)
        state = play_fixed_bids(seller, [round(0.3 * seller.list_price, 2)] * 41)
        for before, after in itertools.pairwise(state.asks):
            stalls += after == before
            moves += after != before
        assert min(state.asks) >= seller.reserve
    assert stalls > 0 and moves > stalls
