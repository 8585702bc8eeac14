"""Scenarios (product, purchaser's terms, seller) and playing one negotiation to its end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from haggler.core import play as game
from haggler.core.catalogue import SEED_CATALOGUE, Product
from haggler.core.negotiation import (
    NegotiationState,
    Terms,
)
from haggler.core.play import Buyer
from haggler.core.sellers import SimulatedSeller, make_seller

MAX_ROUNDS_RANGE = (5, 40)
"""Purchasers give the agent between 5 and 40 rounds; 10 is the service's default."""

LIMIT_RANGE = (0.45, 1.2)
"""The buyer's limit as a share of list price: from below most sellers' floors (40-97% of list)
to above list price, so that some negotiations cannot end in a deal at all."""


TRAINING_STREAM = 0
"""Scenario streams are keyed by (stream, seed): training and evaluation never share a scenario."""
EVALUATION_STREAM = 1


def scenario_rng(stream: int, seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([stream, seed]))


@dataclass(frozen=True, slots=True)
class Scenario:
    """One negotiation to play: everything is fixed by the fields, the seller by `seller_seed`."""

    product: Product
    terms: Terms
    strategy: str
    seller_seed: int

    def seller(self) -> SimulatedSeller:
        rng = np.random.default_rng(self.seller_seed)
        return make_seller(self.strategy, self.product.list_price, rng)


def draw_scenario(
    rng: np.random.Generator,
    strategies: Sequence[str],
    catalogue: Sequence[Product] = SEED_CATALOGUE,
    max_rounds: int | None = None,
) -> Scenario:
    """Draw a product, a buyer limit, the rounds and a seller strategy."""
    product = catalogue[int(rng.integers(len(catalogue)))]
    list_price = product.list_price
    limit = round(list_price * float(rng.uniform(*LIMIT_RANGE)), 2)
    rounds = max_rounds or int(rng.integers(MAX_ROUNDS_RANGE[0], MAX_ROUNDS_RANGE[1] + 1))
    strategy = strategies[int(rng.integers(len(strategies)))]
    return Scenario(
        product=product,
        terms=Terms(list_price=list_price, buyer_limit=limit, max_rounds=rounds),
        strategy=strategy,
        seller_seed=int(rng.integers(2**63)),
    )


def scenario_suite(
    episodes: int, seed: int, strategies: Sequence[str], max_rounds: int | None = None
) -> list[Scenario]:
    """A fixed list of scenarios; the same `seed` always gives the same suite."""
    rng = np.random.default_rng(seed)
    return [draw_scenario(rng, strategies, max_rounds=max_rounds) for _ in range(episodes)]


@dataclass(frozen=True, slots=True)
class Played:
    scenario: Scenario
    state: NegotiationState
    reserve: float

    @property
    def feasible(self) -> bool:
        """A deal was possible at all: the seller's floor is within the buyer's limit."""
        return self.reserve <= self.scenario.terms.buyer_limit

    @property
    def normalised_surplus(self) -> float:
        """Share of the bargaining zone the buyer kept: (limit - price) / (limit - reserve)."""
        limit = self.scenario.terms.buyer_limit
        if self.state.deal_price is None or not self.feasible or limit <= self.reserve:
            return 0.0
        return (limit - self.state.deal_price) / (limit - self.reserve)


def play(scenario: Scenario, buyer: Buyer) -> Played:
    """Play `buyer` against the scenario's seller until the negotiation ends."""
    seller = scenario.seller()
    return Played(scenario, game.play(scenario.terms, buyer, seller), seller.reserve)
