"""THE game loop: one negotiation between a buyer and a seller.

The mechanism (`negotiation.apply_move`) owns the rules and the state; negotiators only choose an
`Action`. This module owns the order of play: the seller opens with an ask, then the buyer moves
and, while the negotiation goes on, the seller answers (`buyer_round`). Every negotiation haggler
plays in process goes through it: pretraining's environment, held-out evaluation, the logged
play of off-policy evaluation and the gate, the service's simulated sellers and the benchmarks.
Only an external seller, whose moves arrive one request at a time, is played by
`serving.turns` (a seller's move, then the agent's answer).
"""

from __future__ import annotations

from typing import Protocol

from haggler.core.negotiation import (
    Action,
    NegotiationState,
    Party,
    Terms,
    apply_move,
    open_negotiation,
)


class Buyer(Protocol):
    """Anything that can play the buyer: the agent, a baseline rule."""

    @property
    def name(self) -> str: ...

    def act(self, state: NegotiationState) -> Action: ...


class Seller(Protocol):
    """Anything that can play the seller: the simulated personas, a test's scripted seller."""

    def opening_ask(self) -> float: ...

    def respond(self, state: NegotiationState) -> Action: ...


def open_with(terms: Terms, seller: Seller) -> NegotiationState:
    """A negotiation opened by `seller`'s asking price; the buyer moves next."""
    return open_negotiation(terms, seller.opening_ask())


def buyer_round(state: NegotiationState, action: Action, seller: Seller) -> NegotiationState:
    """The buyer's `action` and, unless it ended the negotiation, `seller`'s answer."""
    state = apply_move(state, Party.BUYER, action)
    if not state.is_over:
        state = apply_move(state, Party.SELLER, seller.respond(state))
    return state


def play(terms: Terms, buyer: Buyer, seller: Seller) -> NegotiationState:
    """Play `buyer` against `seller` from the opening ask to the end."""
    state = open_with(terms, seller)
    while not state.is_over:
        state = buyer_round(state, buyer.act(state), seller)
    return state
