"""Shared fixtures and helpers (imported as `conftest`) for the haggler test suite."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import settings
from hypothesis import strategies as st

from haggler.config import DQNConfig
from haggler.core.catalogue import SEED_CATALOGUE
from haggler.core.features import N_MOVES, BuyerMove
from haggler.core.negotiation import (
    Action,
    NegotiationState,
    Party,
    Terms,
    apply_move,
    open_negotiation,
)
from haggler.core.scenarios import Played, Scenario

# The API tests' fixtures live in their own module, registered here for the whole suite.
pytest_plugins = ["api_fixtures", "store_fixtures"]

# The first example of a test may import torch or build a network; a per-example deadline would
# turn that one-off cost into a flaky failure, and the suite's total time is watched anyway.
settings.register_profile("haggler", deadline=None, print_blob=True)
settings.load_profile("haggler")

# The networks under test are tiny; with one intra-op thread per process (as the CLI uses) a
# gradient step takes ~1 ms, while two OpenMP threads on a busy 2-core machine took ~90 ms.
torch.set_num_threads(1)


@pytest.fixture
def tiny_config() -> DQNConfig:
    """A small, fast network: enough to learn toy problems in a few hundred steps."""
    return DQNConfig(
        hidden_sizes=(32,),
        learning_rate=1e-2,
        batch_size=32,
        buffer_size=2_000,
        target_update_interval=20,
        seed=0,
    )


def opened(
    *,
    list_price: float = 100.0,
    limit: float = 90.0,
    ask: float = 120.0,
    max_rounds: int = 10,
    quantity: int = 1,
) -> NegotiationState:
    """A negotiation just opened by the seller's ask; the buyer moves next."""
    terms = Terms(
        list_price=list_price, buyer_limit=limit, max_rounds=max_rounds, quantity=quantity
    )
    return open_negotiation(terms, ask)


def played_at(price: float | None, *, limit: float = 100.0, reserve: float = 60.0) -> Played:
    """A finished negotiation: the buyer offered `price` and the seller took it (None: walked)."""
    terms = Terms(list_price=100.0, buyer_limit=limit, max_rounds=10)
    state = open_negotiation(terms, 120.0)
    if price is None:
        state = apply_move(state, Party.BUYER, Action.walk_away())
    else:
        state = apply_move(state, Party.BUYER, Action.counter(price))
        state = apply_move(state, Party.SELLER, Action.accept())
    return Played(Scenario(SEED_CATALOGUE[0], terms, "linear", 0), state, reserve)


FALLBACK_ORDER = (
    BuyerMove.ACCEPT,
    BuyerMove.CONCEDE_75,
    BuyerMove.CONCEDE_50,
    BuyerMove.CONCEDE_25,
    BuyerMove.CONCEDE_10,
    BuyerMove.CONCEDE_3,
    BuyerMove.HOLD,
    BuyerMove.WALK_AWAY,
)


def fixed_preferences(move: BuyerMove) -> np.ndarray:
    """Q-values (N_MOVES,) whose best legal move is always `move`, then accepting, then the
    biggest counter-offer within the limit, walking away last.

    Counter-offers above the limit are not legal moves, so a network that prefers CONCEDE_25
    meets states where it cannot play it; it then takes the ask or haggles in smaller steps
    instead of walking away (with walking away second, it lost most deals by the limit alone).
    """
    order = [move, *(other for other in FALLBACK_ORDER if other is not move)]
    preferences = np.zeros(N_MOVES, dtype=np.float32)
    preferences[order] = np.linspace(1.0, 0.0, N_MOVES, dtype=np.float32)
    return preferences


def cents(value: float) -> float:
    return max(0.01, math.floor(value * 100) / 100)


@st.composite
def states(draw: st.DrawFn, finished: bool = False) -> NegotiationState:
    """A negotiation in progress with the buyer to move (or, if `finished`, possibly over)."""
    list_price = round(draw(st.floats(0.5, 50_000)), 2)
    limit = cents(list_price * draw(st.floats(0.05, 3.0)))
    max_rounds = draw(st.integers(1, 20))
    ask = cents(list_price * draw(st.floats(0.0, 3.0)))
    state = open_negotiation(Terms(list_price, limit, max_rounds), ask)
    for _ in range(draw(st.integers(0, max_rounds - 1))):
        ceiling = min(limit, state.last_ask - 0.01)
        if ceiling < 0.01:
            break
        bid = min(ceiling, cents(ceiling * draw(st.floats(0.0, 1.0))))
        state = apply_move(state, Party.BUYER, Action.counter(bid))
        # Sellers usually come down, but may also raise their ask.
        new_ask = max(bid + 0.01, bid + draw(st.floats(0.0, 1.5)) * (state.last_ask - bid))
        state = apply_move(state, Party.SELLER, Action.counter(round(new_ask + 0.004, 2)))
    if finished:
        ending = draw(st.sampled_from(["none", "accept", "walk", "seller_accept", "seller_walk"]))
        bid = cents(min(limit, state.last_ask - 0.01))
        if ending == "accept" and state.last_ask <= limit:
            state = apply_move(state, Party.BUYER, Action.accept())
        elif ending == "walk":
            state = apply_move(state, Party.BUYER, Action.walk_away())
        elif ending != "none" and bid < state.last_ask:
            state = apply_move(state, Party.BUYER, Action.counter(bid))
            # On the buyer's last round a seller counter is the deadline.
            reply = {
                "seller_accept": Action.accept(),
                "seller_walk": Action.walk_away(),
            }.get(ending, Action.counter(state.last_ask))
            state = apply_move(state, Party.SELLER, reply)
    return state
