"""Rule-based buyers to beat: the textbook ones (Faratin et al. 1998's time-dependent tactics over a
grid of concession exponents, tit-for-tat in two variants, split the difference, a deadline
taker). Each opens at a share of min(ask, limit) and is stateless."""

from __future__ import annotations

from dataclasses import dataclass

from haggler.core.negotiation import Action, NegotiationState
from haggler.core.play import Buyer

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
class RelativeTitForTatBuyer:
    """Raises its offer by the same share of its offer as the seller lowered its ask."""

    name: str = "relative_tit_for_tat"

    def act(self, state: NegotiationState) -> Action:
        if not state.bids:
            return _offer_or_accept(state, _opening(state))
        share = max(0.0, (state.asks[-2] - state.asks[-1]) / state.asks[-2])
        return _offer_or_accept(state, state.bids[-1] * (1.0 + share))


@dataclass(frozen=True)
class DeadlineTakerBuyer:
    """Holds its low opening offer and takes the last ask within its limit at its deadline."""

    name: str = "deadline_taker"

    def act(self, state: NegotiationState) -> Action:
        return _offer_or_accept(state, _opening(state))


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


TIME_DEPENDENT_EXPONENTS = (0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
"""The grid of time-dependent buyers: Boulware (below 1) to conceder (above 1)."""

_NAMED_EXPONENTS = {0.2: "boulware", 1.0: "linear", 3.0: "conceder"}

BASELINES: tuple[Buyer, ...] = (
    *(
        TimeBasedBuyer(_NAMED_EXPONENTS.get(beta, f"time_{beta:g}"), beta=beta)
        for beta in TIME_DEPENDENT_EXPONENTS
    ),
    TitForTatBuyer(),
    RelativeTitForTatBuyer(),
    SplitTheDifferenceBuyer(),
    DeadlineTakerBuyer(),
    AcceptFirstBuyer(),
)
"""Every baseline buyer."""
