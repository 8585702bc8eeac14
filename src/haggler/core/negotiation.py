"""The negotiation protocol: immutable state, moves, the buyer's deadline and limit, outcome, reward
(the last two as pure functions).

The mechanism owns the clock and the state; negotiators (the agent, baselines, simulated or real
sellers) only choose an `Action`. Every rule of the spec that is a rule of the service, not of the
model, is enforced here: the buyer never offers or agrees above its limit, nobody moves out of turn
or after the end, and every price is positive, finite and rounded to cents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum

MAX_PRICE = 1_000_000_000.0
"""Largest unit price accepted anywhere: beyond it a price is a typo, not an offer."""

DEFAULT_MAX_ROUNDS = 10


class ProtocolError(ValueError):
    """A move that breaks the rules; the state it was applied to is unchanged."""


class Party(Enum):
    BUYER = "buyer"
    SELLER = "seller"


class Move(Enum):
    ACCEPT = "accept"
    COUNTER = "counter"
    WALK_AWAY = "walk_away"


class Outcome(Enum):
    DEAL = "deal"
    BUYER_WALKED = "buyer_walked"
    SELLER_WALKED = "seller_walked"
    DEADLINE = "deadline"
    """The buyer used all its rounds without an agreement."""


def money(value: float) -> float:
    """Return `value` as a price rounded to cents; refuse anything not positive, finite and sane."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"a price must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        raise ProtocolError(f"a price must be at most {MAX_PRICE:,.0f}") from None
    if not math.isfinite(number):
        raise ProtocolError(f"a price must be finite, got {value}")
    rounded = round(number, 2)
    if rounded <= 0:
        raise ProtocolError(f"a price must be positive, got {value}")
    if rounded > MAX_PRICE:
        raise ProtocolError(f"a price must be at most {MAX_PRICE:,.0f}, got {value}")
    return rounded


@dataclass(frozen=True, slots=True)
class Action:
    """What a negotiator does on its turn; `price` only for a counter-offer (or the opening ask)."""

    move: Move
    price: float | None = None

    @staticmethod
    def accept() -> Action:
        return Action(Move.ACCEPT)

    @staticmethod
    def walk_away() -> Action:
        return Action(Move.WALK_AWAY)

    @staticmethod
    def counter(price: float) -> Action:
        return Action(Move.COUNTER, price)


@dataclass(frozen=True, slots=True)
class Terms:
    """What the purchaser asked for. `buyer_limit` is private to the buyer."""

    list_price: float
    buyer_limit: float
    max_rounds: int = DEFAULT_MAX_ROUNDS
    quantity: int = 1

    def __post_init__(self) -> None:
        # Stored rounded to cents, so every price derived from them is exact too.
        object.__setattr__(self, "list_price", money(self.list_price))
        object.__setattr__(self, "buyer_limit", money(self.buyer_limit))
        if not 1 <= self.max_rounds <= 100:
            raise ProtocolError(f"max_rounds must be between 1 and 100, got {self.max_rounds}")
        if not 1 <= self.quantity <= 1_000_000:
            raise ProtocolError(f"quantity must be between 1 and 1,000,000, got {self.quantity}")


@dataclass(frozen=True, slots=True)
class Turn:
    """One move in the transcript. The seller's opening ask is a COUNTER at round 0."""

    party: Party
    move: Move
    price: float | None
    round: int
    """The buyer's move number (1..max_rounds) for buyer turns; the seller's reply shares it."""


@dataclass(frozen=True, slots=True)
class NegotiationState:
    """The whole negotiation so far. Immutable: every move returns a new state."""

    terms: Terms
    transcript: tuple[Turn, ...]
    outcome: Outcome | None = None
    deal_price: float | None = None
    asks: tuple[float, ...] = field(default=())
    """The seller's asking prices, oldest first (the opening ask included)."""
    bids: tuple[float, ...] = field(default=())
    """The buyer's counter-offers, oldest first."""

    @property
    def is_over(self) -> bool:
        return self.outcome is not None

    @property
    def buyer_moves(self) -> int:
        return sum(1 for turn in self.transcript if turn.party is Party.BUYER)

    @property
    def rounds_left(self) -> int:
        return self.terms.max_rounds - self.buyer_moves

    @property
    def to_move(self) -> Party | None:
        """Whose turn it is, or None once the negotiation is over."""
        if self.is_over:
            return None
        return Party.BUYER if self.transcript[-1].party is Party.SELLER else Party.SELLER

    @property
    def last_ask(self) -> float:
        return self.asks[-1]

    @property
    def last_bid(self) -> float | None:
        return self.bids[-1] if self.bids else None

    @property
    def deal_was_available(self) -> bool:
        """The seller asked, at some point, for a price the buyer was allowed to accept."""
        return min(self.asks) <= self.terms.buyer_limit


def open_negotiation(terms: Terms, asking_price: float) -> NegotiationState:
    """Start a negotiation with the seller's opening ask; the buyer moves next."""
    ask = money(asking_price)
    return NegotiationState(
        terms=terms,
        transcript=(Turn(Party.SELLER, Move.COUNTER, ask, 0),),
        asks=(ask,),
    )


def apply_move(state: NegotiationState, party: Party, action: Action) -> NegotiationState:
    """Apply `party`'s `action` to `state` and return the new state, or raise ProtocolError."""
    if state.is_over:
        raise ProtocolError("the negotiation is already over")
    if party is not state.to_move:
        raise ProtocolError(f"it is not the {party.value}'s turn")
    if party is Party.BUYER:
        return _apply_buyer(state, action)
    return _apply_seller(state, action)


def _apply_buyer(state: NegotiationState, action: Action) -> NegotiationState:
    limit = state.terms.buyer_limit
    round_ = state.buyer_moves + 1
    if action.move is Move.ACCEPT:
        if state.last_ask > limit:
            raise ProtocolError("the buyer cannot accept a price above its limit")
        turn = Turn(Party.BUYER, Move.ACCEPT, None, round_)
        return replace(
            state,
            transcript=(*state.transcript, turn),
            outcome=Outcome.DEAL,
            deal_price=state.last_ask,
        )
    if action.move is Move.WALK_AWAY:
        turn = Turn(Party.BUYER, Move.WALK_AWAY, None, round_)
        return replace(state, transcript=(*state.transcript, turn), outcome=Outcome.BUYER_WALKED)
    price = money(_require_price(action))
    if price > limit:
        raise ProtocolError("the buyer cannot offer above its limit")
    if price >= state.last_ask:
        raise ProtocolError("a counter-offer at or above the seller's ask: accept it instead")
    turn = Turn(Party.BUYER, Move.COUNTER, price, round_)
    return replace(state, transcript=(*state.transcript, turn), bids=(*state.bids, price))


def _apply_seller(state: NegotiationState, action: Action) -> NegotiationState:
    round_ = state.buyer_moves
    bid = state.last_bid
    assert bid is not None  # the seller only moves after a buyer counter-offer
    if action.move is Move.ACCEPT:
        turn = Turn(Party.SELLER, Move.ACCEPT, None, round_)
        return replace(
            state, transcript=(*state.transcript, turn), outcome=Outcome.DEAL, deal_price=bid
        )
    if action.move is Move.WALK_AWAY:
        turn = Turn(Party.SELLER, Move.WALK_AWAY, None, round_)
        return replace(state, transcript=(*state.transcript, turn), outcome=Outcome.SELLER_WALKED)
    price = money(_require_price(action))
    if price <= bid:
        raise ProtocolError("a counter-offer at or below the buyer's offer: accept it instead")
    turn = Turn(Party.SELLER, Move.COUNTER, price, round_)
    # The buyer's deadline: a counter after its last move leaves it no move to answer with.
    outcome = Outcome.DEADLINE if round_ >= state.terms.max_rounds else None
    return replace(
        state, transcript=(*state.transcript, turn), asks=(*state.asks, price), outcome=outcome
    )


def _require_price(action: Action) -> float:
    if action.price is None:
        raise ProtocolError("a counter-offer needs a price")
    return action.price


@dataclass(frozen=True, slots=True)
class NegotiationResult:
    """What the purchaser sees at the end."""

    outcome: Outcome
    deal_price: float | None
    savings_per_unit: float
    """List price minus deal price (0 without a deal); negative when the deal was above list."""
    savings_total: float
    savings_pct: float
    rounds: int
    ended_by: Party


def result(state: NegotiationState) -> NegotiationResult:
    """Summarise a finished negotiation."""
    if state.outcome is None:
        raise ProtocolError("the negotiation is not over yet")
    terms = state.terms
    saving = round(terms.list_price - state.deal_price, 2) if state.deal_price is not None else 0.0
    last = state.transcript[-1]
    return NegotiationResult(
        outcome=state.outcome,
        deal_price=state.deal_price,
        savings_per_unit=saving,
        savings_total=round(saving * terms.quantity, 2),
        savings_pct=100.0 * saving / terms.list_price,
        rounds=state.buyer_moves,
        ended_by=last.party,
    )


@dataclass(frozen=True, slots=True)
class RewardConfig:
    """The buyer's reward: normalised saving on a deal, a no-deal penalty, a cost per round."""

    no_deal_penalty: float = 0.15
    """Charged for every negotiation that ends without a deal, whoever ended it."""
    round_cost: float = 0.002
    """Charged for every buyer move, so that equal prices reached sooner are worth more."""


def step_reward(state: NegotiationState, config: RewardConfig = RewardConfig()) -> float:
    """Reward for the buyer's last move, given the state after the seller's answer (if any).

    THE reward: pretraining, evaluation and online learning all use it, and it reads only what the
    service sees (prices, the limit, the outcome), never the seller's hidden floor. A deal earns
    the saving against the buyer's own limit, as a share of the limit. Every no-deal is charged
    the same penalty: the service cannot know whether a deal was possible, and a penalty that
    depended on the seller's asks (charged only once an ask came within the limit) made walking
    away from a seller still coming down free, which online learning then learned to do.
    """
    reward = -config.round_cost
    if state.outcome is Outcome.DEAL:
        assert state.deal_price is not None
        limit = state.terms.buyer_limit
        reward += (limit - state.deal_price) / limit
    elif state.outcome is not None:
        reward -= config.no_deal_penalty
    return max(-1.0, min(1.0, reward))


def episode_return(state: NegotiationState, config: RewardConfig = RewardConfig()) -> float:
    """Sum of the buyer's step rewards over a finished negotiation."""
    return -config.round_cost * (state.buyer_moves - 1) + step_reward(state, config)
