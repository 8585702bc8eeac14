"""From the buyer's view of a negotiation to the network's input, and from a move to a price.

The only module that knows the observation layout and what each discrete move means in money.
Prices are normalised by the buyer's limit and the list price, so one network serves a 20-euro
box of gloves and a 2,000-euro espresso machine alike.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum
from itertools import pairwise

import numpy as np

from haggler.core.negotiation import Action, NegotiationState, ProtocolError

ANCHOR_SHARE = 0.5
"""Before its first offer, the buyer's reference point is this share of min(ask, list price).

Never of the limit: an offer that is a fixed function of the limit tells the seller the limit
(the first version opened at half its limit, and at the limit itself when the ask was far above
it). The limit is only a cap: counter-offers above it are not legal moves."""

OBSERVATION_NAMES: tuple[str, ...] = (
    "ask_over_limit",
    "ask_over_list",
    "limit_over_list",
    "last_bid_over_limit",
    "has_bid",
    "first_ask_over_limit",
    "rounds_left_share",
    "rounds_left_over_40",
    "is_last_move",
    "seller_concession_1",
    "seller_concession_2",
    "seller_concession_3",
    "buyer_concession_1",
    "buyer_concession_2",
    "seller_total_concession",
    "gap_over_limit",
    "deal_available",
    "reciprocity",
    "reciprocity_overall",
    "seller_stall_share",
    "seller_acceleration",
    "projected_ask_over_limit",
)
"""Prices over the buyer's limit and the list price, time left, and the seller's behaviour so far:
its last three concessions, whether it speeds up or slows down (`seller_acceleration`), how often
it has not moved, how its concessions answer the buyer's (last move and overall), and where its
recent pace would take it by the buyer's deadline: enough to tell a time-dependent seller from a
tit-for-tat or a hard-liner within a few rounds.

Model files and stored weights are checked against these names (and the moves'), and every
stored negotiation records their fingerprint (`OBSERVATION_LAYOUT`): a feature whose meaning
changes gets a new name, so weights and logged decisions of the old meaning are refused, not
misread.

The policy sees the limit from its first move. Hiding it for the first two offers was measured
and rejected: a policy that cannot see its limit learns to offer as much as the cap allows, so
its first offers sat at the limit (a seller read it off them with 13% of the prior's error, and
mean surplus fell from 0.33 to 0.11). Hiding it for the first offer alone did the same (2026-12-05,
with a rising ask read as held, five seeds: 20-25% of the prior's error, surplus 0.12-0.18)."""
OBSERVATION_SIZE = len(OBSERVATION_NAMES)


class BuyerMove(IntEnum):
    """The agent's discrete moves. Counters concede a share of the gap to the seller's ask.

    Before the first offer the gap is measured from a low anchor (half of min(ask, list price)), so
    the same moves also open low (HOLD: at the anchor) or moderately (CONCEDE_50: three quarters).
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
MOVE_NAMES: list[str] = [move.name for move in BuyerMove]

OBSERVATION_LAYOUT = hashlib.sha256(
    "\n".join([*OBSERVATION_NAMES, "", *MOVE_NAMES]).encode()
).hexdigest()[:16]
"""Fingerprint of the observation names and moves, stored with every negotiation: its logged
decisions are learned from only by a network of the same layout."""

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
    return ANCHOR_SHARE * min(state.last_ask, state.terms.list_price)


def _ratio(numerator: float, denominator: float, low: float, high: float) -> float:
    if denominator > 0:
        return _clip(numerator / denominator, low, high)
    return high if numerator > 0 else 0.0


def observe(state: NegotiationState) -> np.ndarray:
    """The buyer's observation of `state`, shape (OBSERVATION_SIZE,), float32."""
    terms = state.terms
    limit, list_price = terms.buyer_limit, terms.list_price
    asks, bids = state.asks, state.bids
    ask = asks[-1]
    # concessions[i]: how far the seller came down in its (i+1)-th reply, newest last.
    concessions = [(earlier - later) / limit for earlier, later in pairwise(asks)]
    raises = [(later - earlier) / limit for earlier, later in pairwise(bids)]
    seller = [*reversed(concessions), 0.0, 0.0, 0.0]
    buyer = [*reversed(raises), 0.0, 0.0]
    # A seller's answer to a raise is its concession in the reply that followed the raise.
    answers = concessions[1:]
    rounds_left = terms.max_rounds - len(bids)
    recent_pace = float(np.mean(concessions[-2:])) if concessions else 0.0
    return np.array(
        (
            _clip(ask / limit, 0.0, 4.0),
            _clip(ask / list_price, 0.0, 4.0),
            _clip(limit / list_price, 0.0, 4.0),
            bids[-1] / limit if bids else 0.0,
            1.0 if bids else 0.0,
            _clip(asks[0] / limit, 0.0, 4.0),
            rounds_left / terms.max_rounds,
            min(rounds_left, 40) / 40.0,
            1.0 if rounds_left == 1 else 0.0,
            _clip(seller[0], -1.0, 1.0),
            _clip(seller[1], -1.0, 1.0),
            _clip(seller[2], -1.0, 1.0),
            _clip(buyer[0], -1.0, 1.0),
            _clip(buyer[1], -1.0, 1.0),
            _clip((asks[0] - ask) / asks[0], -1.0, 1.0),
            _clip((ask - reference_bid(state)) / limit, -1.0, 4.0),
            1.0 if state.deal_was_available else 0.0,
            _ratio(seller[0], buyer[0], -1.0, 3.0) if raises else 0.0,
            _ratio(sum(answers), sum(raises[: len(answers)]), -1.0, 3.0) if answers else 0.0,
            sum(1 for c in concessions if c <= 0.0) / len(concessions) if concessions else 0.0,
            _clip(seller[0] - seller[1], -1.0, 1.0),
            _clip((ask - recent_pace * limit * rounds_left) / limit, -1.0, 4.0),
        ),
        dtype=np.float32,
    )


def counter_price(state: NegotiationState, move: BuyerMove) -> float:
    """The price of counter-move `move`, always below the ask (it may exceed the limit: such a
    move is not legal, see `legal_moves`)."""
    ask = state.last_ask
    base = reference_bid(state)
    price = base + CONCESSION_SHARE[move] * (ask - base)
    return round(min(price, ask - 0.01), 2)


def legal_moves(state: NegotiationState) -> np.ndarray:
    """Boolean mask over BuyerMove. Accepting or offering above the limit is never allowed (a
    service rule), and a counter-offer must be a positive price."""
    limit = state.terms.buyer_limit
    mask = np.ones(N_MOVES, dtype=bool)
    mask[BuyerMove.ACCEPT] = state.last_ask <= limit
    for move in CONCESSION_SHARE:
        price = counter_price(state, move)
        mask[move] = 0 < price <= limit
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
