"""From the buyer's view of a negotiation to the network's input, and from a move to a price.

The only module that knows the observation layout and what each discrete move means in money.
Prices are normalised by the buyer's limit and the list price, so one network serves a 20-euro
box of gloves and a 2,000-euro espresso machine alike.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from haggler.core.negotiation import Action, NegotiationState, ProtocolError

ANCHOR_SHARE = 0.5
"""Before its first offer, the buyer's reference point is this share of min(ask, limit)."""

OBSERVATION_NAMES: tuple[str, ...] = (
    "ask_over_limit",
    "ask_over_list",
    "limit_over_list",
    "last_bid_over_limit",
    "has_bid",
    "first_ask_over_limit",
    "rounds_left_share",
    "rounds_left_over_20",
    "is_last_move",
    "seller_concession_1",
    "seller_concession_2",
    "buyer_concession_1",
    "buyer_concession_2",
    "seller_total_concession",
    "gap_over_limit",
    "deal_available",
    "reciprocity",
)
OBSERVATION_SIZE = len(OBSERVATION_NAMES)


class BuyerMove(IntEnum):
    """The agent's discrete moves. Counters concede a share of the gap to the seller's ask.

    Before the first offer the gap is measured from a low anchor (half of min(ask, limit)), so the
    same moves also open low (HOLD: at the anchor) or moderately (CONCEDE_50: three quarters).
    """

    ACCEPT = 0
    WALK_AWAY = 1
    HOLD = 2
    CONCEDE_3 = 3
    CONCEDE_10 = 4
    CONCEDE_25 = 5
    CONCEDE_50 = 6
    CONCEDE_75 = 7


N_MOVES = len(BuyerMove)

CONCESSION_SHARE: dict[BuyerMove, float] = {
    BuyerMove.HOLD: 0.0,
    BuyerMove.CONCEDE_3: 0.03,
    BuyerMove.CONCEDE_10: 0.10,
    BuyerMove.CONCEDE_25: 0.25,
    BuyerMove.CONCEDE_50: 0.50,
    BuyerMove.CONCEDE_75: 0.75,
}


def _clip(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


def reference_bid(state: NegotiationState) -> float:
    """The buyer's last offer, or the low anchor before it has made one."""
    last = state.last_bid
    if last is not None:
        return last
    return ANCHOR_SHARE * min(state.last_ask, state.terms.buyer_limit)


def observe(state: NegotiationState) -> np.ndarray:
    """The buyer's observation of `state`, shape (OBSERVATION_SIZE,), float32."""
    terms = state.terms
    limit, list_price = terms.buyer_limit, terms.list_price
    asks, bids = state.asks, state.bids
    ask = asks[-1]
    seller_1 = (asks[-2] - asks[-1]) / limit if len(asks) >= 2 else 0.0
    seller_2 = (asks[-3] - asks[-2]) / limit if len(asks) >= 3 else 0.0
    buyer_1 = (bids[-1] - bids[-2]) / limit if len(bids) >= 2 else 0.0
    buyer_2 = (bids[-2] - bids[-3]) / limit if len(bids) >= 3 else 0.0
    if buyer_1 > 0:
        reciprocity = _clip(seller_1 / buyer_1, -1.0, 3.0)
    else:
        reciprocity = 3.0 if seller_1 > 0 else 0.0
    rounds_left = terms.max_rounds - len(bids)
    return np.array(
        (
            _clip(ask / limit, 0.0, 4.0),
            _clip(ask / list_price, 0.0, 4.0),
            _clip(limit / list_price, 0.0, 4.0),
            bids[-1] / limit if bids else 0.0,
            1.0 if bids else 0.0,
            _clip(asks[0] / limit, 0.0, 4.0),
            rounds_left / terms.max_rounds,
            min(rounds_left, 20) / 20.0,
            1.0 if rounds_left == 1 else 0.0,
            _clip(seller_1, -1.0, 1.0),
            _clip(seller_2, -1.0, 1.0),
            _clip(buyer_1, -1.0, 1.0),
            _clip(buyer_2, -1.0, 1.0),
            _clip((asks[0] - ask) / asks[0], -1.0, 1.0),
            _clip((ask - reference_bid(state)) / limit, -1.0, 4.0),
            1.0 if min(asks) <= limit else 0.0,
            reciprocity,
        ),
        dtype=np.float32,
    )


def counter_price(state: NegotiationState, move: BuyerMove) -> float:
    """The price of counter-move `move`: never above the limit, always below the ask."""
    ask, limit = state.last_ask, state.terms.buyer_limit
    base = reference_bid(state)
    price = base + CONCESSION_SHARE[move] * (ask - base)
    return round(min(price, limit, ask - 0.01), 2)


def legal_moves(state: NegotiationState) -> np.ndarray:
    """Boolean mask over BuyerMove: accepting above the limit is never allowed (a service rule)."""
    mask = np.ones(N_MOVES, dtype=bool)
    mask[BuyerMove.ACCEPT] = state.last_ask <= state.terms.buyer_limit
    if round(min(state.last_ask - 0.01, reference_bid(state)), 2) <= 0:
        mask[list(CONCESSION_SHARE)] = False
    return mask


def to_action(state: NegotiationState, move: BuyerMove | int) -> Action:
    """The protocol action for a discrete move; ProtocolError if the move is not legal here."""
    move = BuyerMove(move)
    if not legal_moves(state)[move]:
        raise ProtocolError(f"move {move.name} is not allowed in this state")
    if move is BuyerMove.ACCEPT:
        return Action.accept()
    if move is BuyerMove.WALK_AWAY:
        return Action.walk_away()
    return Action.counter(counter_price(state, move))
