"""Simulated sellers: hidden reserve, deadline and strategy, drawn per episode from a seeded rng.

Every seller answers the buyer's counter-offer with the same rule (accept when the offer reaches
both its reserve and the ask it was about to make, "AC_next"); strategies differ in the ask they
plan next and in when they lose patience. No seller ever sells below its reserve.

Strategies come in families (`FAMILIES`): time-dependent, behaviour-dependent (tit-for-tat in its
variants), deadline-driven, hard-liners, irregular, touchy (walk away from insults) and switching
(change behaviour during the negotiation). Quality is judged on whole families held out of
training (`bench-generalisation` leaves each out in turn), not on parameter ranges of a family the
agent has seen.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from haggler.core.negotiation import Action, NegotiationState


@dataclass
class SimulatedSeller(ABC):
    """One episode's seller. `reserve` is hidden from the buyer; `deadline` counts its replies."""

    list_price: float
    reserve: float
    opening: float
    deadline: int
    rng: np.random.Generator = field(repr=False)

    strategy: str = field(init=False, default="")

    def opening_ask(self) -> float:
        return math.ceil(self.opening * 100) / 100

    def respond(self, state: NegotiationState) -> Action:
        """Answer the buyer's last counter-offer."""
        bid = state.last_bid
        assert bid is not None
        reply = len(state.bids)
        if self.walks_away(state):
            return Action.walk_away()
        if reply > self.deadline:
            return Action.accept() if bid >= self.reserve else Action.walk_away()
        if self.refuses_to_move(state):
            return Action.counter(state.last_ask)
        # Rounded up to the cent: a seller never asks below its reserve, not even by rounding.
        ask = math.ceil(max(self.reserve, self.next_ask(state, reply)) * 100 - 1e-9) / 100
        if bid >= self.reserve and bid >= ask:
            return Action.accept()
        return Action.counter(ask)

    def walks_away(self, state: NegotiationState) -> bool:
        """Whether the buyer's last move made this seller leave (most sellers never do)."""
        return False

    def refuses_to_move(self, state: NegotiationState) -> bool:
        """Whether this seller answers the buyer's last move by repeating its ask."""
        return False

    @abstractmethod
    def next_ask(self, state: NegotiationState, reply: int) -> float:
        """The ask this seller would make in its `reply`-th answer (1-based), before flooring."""

    def time_based_ask(self, reply: int, beta: float) -> float:
        """From the opening to the reserve by the deadline along t^(1/beta) (Faratin et al.)."""
        progress = float(min(1.0, reply / self.deadline) ** (1.0 / beta))
        return self.reserve + (self.opening - self.reserve) * (1.0 - progress)


@dataclass
class TimeBasedSeller(SimulatedSeller):
    """Concedes from its opening to its reserve by its deadline along t^(1/beta) (Faratin et al.).

    beta < 1 is Boulware (holds firm, concedes late), beta = 1 linear, beta > 1 a conceder.
    """

    beta: float = 1.0
    noise: float = 0.0
    """Standard deviation of multiplicative noise on each ask (noisy variants)."""

    def next_ask(self, state: NegotiationState, reply: int) -> float:
        ask = self.time_based_ask(reply, self.beta)
        if self.noise:
            ask *= 1.0 + self.noise * float(self.rng.standard_normal())
        return ask


@dataclass
class HardLinerSeller(SimulatedSeller):
    """Opens a little above its reserve and never moves; leaves when its deadline passes."""

    def next_ask(self, state: NegotiationState, reply: int) -> float:
        return self.opening


@dataclass
class ReciprocalSeller(SimulatedSeller):
    """Concedes only when, and as much as, the buyer does.

    `mode` "absolute": the same amount times `factor` (tit-for-tat when factor is 1);
    "relative": the same percentage of its ask as the buyer raised its offer, times `factor`;
    "steps": a fixed `step` whenever the buyer concedes anything at all;
    "averaged": `factor` times the buyer's mean raise over its last `window` moves (Faratin et
    al.'s averaged tit-for-tat).
    The buyer's first offer is answered with a small goodwill concession of `step`.
    """

    mode: str = "absolute"
    factor: float = 1.0
    step: float = 0.0
    window: int = 2

    def next_ask(self, state: NegotiationState, reply: int) -> float:
        ask = state.last_ask
        return ask - self.concession(state, ask)

    def concession(self, state: NegotiationState, ask: float) -> float:
        bids = state.bids
        if len(bids) < 2:
            return self.step
        if self.mode == "averaged":
            recent = bids[-(self.window + 1) :]
            return max(0.0, self.factor * (recent[-1] - recent[0]) / (len(recent) - 1))
        raised = bids[-1] - bids[-2]
        if raised <= 0:
            return 0.0
        if self.mode == "absolute":
            return self.factor * raised
        if self.mode == "relative":
            return self.factor * ask * raised / bids[-2]
        return self.step


@dataclass
class DeadlineReciprocalSeller(ReciprocalSeller):
    """Reciprocates like tit-for-tat but also gives way to its own deadline: the lower of both."""

    beta: float = 1.0

    def next_ask(self, state: NegotiationState, reply: int) -> float:
        return min(self.time_based_ask(reply, self.beta), super().next_ask(state, reply))


@dataclass
class TouchySeller(TimeBasedSeller):
    """A time-based seller that walks away from insulting offers or a buyer that never moves.

    The first insult gets a warning, as it would at a market stall: the seller repeats its ask
    instead of conceding. The second one, or a buyer that holds its offer twice, ends it.
    """

    insult_ratio: float = 0.55
    """An offer below this share of the seller's ask at the time is an insult."""

    def _insults(self, state: NegotiationState) -> int:
        # The ask a bid answered is the one just before it: asks[i] for bids[i].
        return sum(
            bid < self.insult_ratio * ask for bid, ask in zip(state.bids, state.asks, strict=False)
        )

    def walks_away(self, state: NegotiationState) -> bool:
        bids = state.bids
        if self._insults(state) >= 2:
            return True
        return len(bids) >= 3 and bids[-1] <= bids[-2] <= bids[-3]

    def refuses_to_move(self, state: NegotiationState) -> bool:
        return state.bids[-1] < self.insult_ratio * state.last_ask


@dataclass
class TakeItOrLeaveItSeller(SimulatedSeller):
    """Asks a price just above its reserve and walks away from any counter-offer.

    A benchmark-only poisoner (`bench_safety`): against it, accepting the first ask is the best
    move, so an agent that learns from a stream of them learns to accept high opening asks,
    which overpays every seller that would have haggled.
    """

    def walks_away(self, state: NegotiationState) -> bool:
        return True

    def next_ask(self, state: NegotiationState, reply: int) -> float:
        return self.opening


@dataclass
class LastMinuteSeller(SimulatedSeller):
    """Holds its opening ask until late, then concedes to its reserve by its deadline.

    The buyer does not know the seller's deadline: patience pays only if it lasts long enough.
    """

    hold_share: float = 0.7
    """Share of its deadline during which the seller does not move at all."""

    def next_ask(self, state: NegotiationState, reply: int) -> float:
        start = self.hold_share * self.deadline
        if reply <= start:
            return self.opening
        progress = min(1.0, (reply - start) / max(1e-9, self.deadline - start))
        return self.reserve + (self.opening - self.reserve) * (1.0 - progress)


@dataclass
class IrregularSeller(SimulatedSeller):
    """Heads for its reserve by its deadline, but in irregular steps: it stalls at random,
    otherwise closes a random share of the way to its time-dependent target."""

    beta: float = 1.0
    stall_probability: float = 0.3

    def next_ask(self, state: NegotiationState, reply: int) -> float:
        if self.rng.random() < self.stall_probability:
            return state.last_ask
        target = self.time_based_ask(reply, self.beta)
        return state.last_ask - float(self.rng.uniform(0.2, 1.6)) * (state.last_ask - target)


@dataclass
class SwitchingSeller(ReciprocalSeller):
    """Changes behaviour at reply `switch_at`: time-dependent then tit-for-tat, or the reverse."""

    beta: float = 1.0
    switch_at: int = 3
    reciprocal_first: bool = False

    def next_ask(self, state: NegotiationState, reply: int) -> float:
        reciprocal_now = (reply < self.switch_at) == self.reciprocal_first
        if reciprocal_now:
            return super().next_ask(state, reply)
        return min(state.last_ask, self.time_based_ask(reply, self.beta))


SellerFactory = Callable[[float, np.random.Generator], SimulatedSeller]


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _common(list_price: float, rng: np.random.Generator) -> dict[str, object]:
    """Reserve, opening ask and deadline shared by all strategies."""
    # Reserves from deep clearance (40% of list) to scarce goods (97%); openings from list price
    # to half as much again; the seller's own deadline, unknown to the buyer, from 4 to 40 replies
    # (purchasers give the agent 5 to 40 rounds).
    reserve = math.ceil(list_price * _uniform(rng, 0.4, 0.97) * 100) / 100  # whole cents
    opening = max(list_price * _uniform(rng, 1.0, 1.5), reserve * 1.05)
    return {
        "list_price": list_price,
        "reserve": reserve,
        "opening": opening,
        "deadline": int(rng.integers(4, 41)),
        "rng": rng,
    }


def _time_based(
    beta: tuple[float, float], noise: tuple[float, float] = (0.0, 0.0)
) -> SellerFactory:
    def make(list_price: float, rng: np.random.Generator) -> SimulatedSeller:
        return TimeBasedSeller(
            **_common(list_price, rng),  # type: ignore[arg-type]
            beta=_log_uniform(rng, *beta),
            noise=_uniform(rng, *noise),
        )

    return make


def _hardliner(list_price: float, rng: np.random.Generator) -> SimulatedSeller:
    common = _common(list_price, rng)
    common["opening"] = float(common["reserve"]) * _uniform(rng, 1.02, 1.1)  # type: ignore[arg-type]
    common["deadline"] = int(rng.integers(2, 12))
    return HardLinerSeller(**common)  # type: ignore[arg-type]


def _reciprocal(mode: str, factor: tuple[float, float]) -> SellerFactory:
    def make(list_price: float, rng: np.random.Generator) -> SimulatedSeller:
        return ReciprocalSeller(
            **_common(list_price, rng),  # type: ignore[arg-type]
            mode=mode,
            factor=_uniform(rng, *factor),
            step=list_price * _uniform(rng, 0.01, 0.03),
            window=int(rng.integers(2, 5)),
        )

    return make


def _deadline_reciprocal(list_price: float, rng: np.random.Generator) -> SimulatedSeller:
    common = _common(list_price, rng)
    return DeadlineReciprocalSeller(
        **common,  # type: ignore[arg-type]
        mode="absolute",
        factor=_uniform(rng, 0.7, 1.1),
        step=list_price * _uniform(rng, 0.01, 0.03),
        beta=_uniform(rng, 0.3, 0.8),
    )


def _last_minute(list_price: float, rng: np.random.Generator) -> SimulatedSeller:
    return LastMinuteSeller(**_common(list_price, rng), hold_share=_uniform(rng, 0.5, 0.9))  # type: ignore[arg-type]


def _irregular(list_price: float, rng: np.random.Generator) -> SimulatedSeller:
    return IrregularSeller(
        **_common(list_price, rng),  # type: ignore[arg-type]
        beta=_log_uniform(rng, 0.3, 3.0),
        stall_probability=_uniform(rng, 0.1, 0.5),
    )


def _touchy(list_price: float, rng: np.random.Generator) -> SimulatedSeller:
    common = _common(list_price, rng)
    # A fair-price seller: opens near list price and takes a lowball as an insult.
    common["opening"] = max(list_price * _uniform(rng, 0.95, 1.08), float(common["reserve"]) * 1.05)  # type: ignore[arg-type]
    return TouchySeller(
        **common,  # type: ignore[arg-type]
        beta=_log_uniform(rng, 0.3, 3.0),
        insult_ratio=_uniform(rng, 0.5, 0.65),
    )


def _switching(list_price: float, rng: np.random.Generator) -> SimulatedSeller:
    common = _common(list_price, rng)
    return SwitchingSeller(
        **common,  # type: ignore[arg-type]
        mode="relative",
        factor=_uniform(rng, 0.5, 1.2),
        step=list_price * _uniform(rng, 0.01, 0.03),
        beta=_log_uniform(rng, 0.2, 5.0),
        switch_at=int(rng.integers(2, max(3, int(common["deadline"]) // 2 + 1))),  # type: ignore[call-overload]
        reciprocal_first=bool(rng.random() < 0.5),
    )


SELLER_FACTORIES: dict[str, SellerFactory] = {
    "boulware": _time_based((0.1, 0.5)),
    "linear": _time_based((1.0, 1.0)),
    "conceder": _time_based((2.0, 10.0)),
    "time_dependent": _time_based((0.1, 10.0)),
    "tit_for_tat": _reciprocal("absolute", (1.0, 1.0)),
    "reciprocal_absolute": _reciprocal("absolute", (0.5, 1.0)),
    "reciprocal_relative": _reciprocal("relative", (0.6, 1.2)),
    "reciprocal_averaged": _reciprocal("averaged", (0.6, 1.2)),
    "reciprocal_steps": _reciprocal("steps", (1.0, 1.0)),
    "deadline_reciprocal": _deadline_reciprocal,
    "last_minute": _last_minute,
    "hardliner": _hardliner,
    "noisy_boulware": _time_based((0.1, 0.5), noise=(0.01, 0.04)),
    "noisy_linear": _time_based((1.0, 1.0), noise=(0.01, 0.04)),
    "irregular": _irregular,
    "touchy": _touchy,
    "switching": _switching,
}
"""Every simulated seller strategy by name."""

FAMILIES: dict[str, tuple[str, ...]] = {
    "time_dependent": ("boulware", "linear", "conceder", "time_dependent"),
    "reciprocal": (
        "tit_for_tat",
        "reciprocal_absolute",
        "reciprocal_relative",
        "reciprocal_averaged",
        "reciprocal_steps",
    ),
    "deadline": ("deadline_reciprocal", "last_minute"),
    "hardliner": ("hardliner",),
    "irregular": ("noisy_boulware", "noisy_linear", "irregular"),
    "touchy": ("touchy",),
    "switching": ("switching",),
}
"""Seller strategies by family; evaluation holds whole families out of training."""

FAMILY_OF: dict[str, str] = {
    strategy: family for family, strategies in FAMILIES.items() for strategy in strategies
}

HELD_OUT_FAMILY = "deadline"
"""The family the starter model never trains on: reported apart, as an unknown kind of seller."""
HELD_OUT_STRATEGIES: tuple[str, ...] = FAMILIES[HELD_OUT_FAMILY]

TRAINING_STRATEGIES: tuple[str, ...] = tuple(
    name for name in SELLER_FACTORIES if name not in HELD_OUT_STRATEGIES
)
ALL_STRATEGIES: tuple[str, ...] = tuple(SELLER_FACTORIES)


def strategies_without(family: str) -> tuple[str, ...]:
    """Every strategy except those of `family`: the training set when `family` is held out."""
    if family not in FAMILIES:
        raise ValueError(f"unknown seller family {family!r}; known: {', '.join(FAMILIES)}")
    return tuple(name for name in SELLER_FACTORIES if FAMILY_OF[name] != family)


def _take_it_or_leave_it(list_price: float, rng: np.random.Generator) -> SimulatedSeller:
    common = _common(list_price, rng)
    # A high ask (near list price, where a buyer's limit usually lets it accept) and a reserve
    # within 3% of it: haggling gains nothing and the seller walks, so accepting looks right.
    opening = list_price * _uniform(rng, 0.9, 1.0)
    common["opening"] = opening
    common["reserve"] = math.ceil(opening * _uniform(rng, 0.97, 1.0) * 100) / 100
    return TakeItOrLeaveItSeller(**common)  # type: ignore[arg-type]


BENCHMARK_FACTORIES: dict[str, SellerFactory] = {
    "take_it_or_leave_it": _take_it_or_leave_it,
}
"""Sellers for the safety benchmarks only (`bench_safety`): never trained on or evaluated in
`ALL_STRATEGIES`, but `make_seller` draws them by name like any other."""


def make_seller(strategy: str, list_price: float, rng: np.random.Generator) -> SimulatedSeller:
    """Draw one episode's seller of `strategy` (reserve, deadline, parameters) from `rng`."""
    try:
        factory = SELLER_FACTORIES.get(strategy) or BENCHMARK_FACTORIES[strategy]
    except KeyError:
        known = ", ".join([*SELLER_FACTORIES, *BENCHMARK_FACTORIES])
        raise ValueError(f"unknown seller strategy {strategy!r}; known: {known}") from None
    seller = factory(list_price, rng)
    seller.strategy = strategy
    return seller
