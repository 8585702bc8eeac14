"""Rule-based buyers to beat. Each opens at a share of min(ask, limit) and is stateless."""

from __future__ import annotations

from dataclasses import dataclass

from haggler.core.negotiation import Action, NegotiationState

OPEN_SHARE = 0.7
"""Rule-based buyers open at 70% of the lower of the opening ask and their limit."""


def _opening(state: NegotiationState) -> float:
    return OPEN_SHARE * min(state.asks[0], state.terms.buyer_limit)


def _offer_or_accept(state: NegotiationState, offer: float) -> Action:
    """Accept when the ask is within `offer` (or it is the last move and within the limit)."""
    ask, limit = state.last_ask, state.terms.buyer_limit
    last_move = state.rounds_left == 1
    if ask <= limit and (ask <= offer or last_move):
        return Action.accept()
    price = round(min(offer, limit, ask - 0.01), 2)
    if price <= 0:
        return Action.walk_away()
    return Action.counter(price)


@dataclass(frozen=True)
class TimeBasedBuyer:
    """Concedes from its opening to its limit over its rounds along t^(1/beta)."""

    name: str
    beta: float

    def act(self, state: NegotiationState) -> Action:
        rounds = state.terms.max_rounds
        move = len(state.bids)
        progress = (move / (rounds - 1)) ** (1.0 / self.beta) if rounds > 1 else 1.0
        start = _opening(state)
        return _offer_or_accept(state, start + (state.terms.buyer_limit - start) * progress)


@dataclass(frozen=True)
class TitForTatBuyer:
    """Concedes exactly as much as the seller did in its last move."""

    name: str = "tit_for_tat"

    def act(self, state: NegotiationState) -> Action:
        if not state.bids:
            return _offer_or_accept(state, _opening(state))
        seller_concession = state.asks[-2] - state.asks[-1]
        return _offer_or_accept(state, state.bids[-1] + max(0.0, seller_concession))


@dataclass(frozen=True)
class SplitTheDifferenceBuyer:
    """Offers halfway between its last offer and the seller's ask."""

    name: str = "split_difference"

    def act(self, state: NegotiationState) -> Action:
        if not state.bids:
            return _offer_or_accept(state, _opening(state))
        return _offer_or_accept(state, (state.bids[-1] + state.last_ask) / 2)


@dataclass(frozen=True)
class AcceptFirstBuyer:
    """Takes any ask within its limit; otherwise offers its limit."""

    name: str = "accept_first"

    def act(self, state: NegotiationState) -> Action:
        return _offer_or_accept(state, state.terms.buyer_limit)


BASELINES = (
    TimeBasedBuyer("boulware", beta=0.2),
    TimeBasedBuyer("linear", beta=1.0),
    TimeBasedBuyer("conceder", beta=3.0),
    TitForTatBuyer(),
    SplitTheDifferenceBuyer(),
    AcceptFirstBuyer(),
)
"""Every baseline buyer, by name order of the README."""
