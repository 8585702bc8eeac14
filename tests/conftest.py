"""Shared fixtures for the haggler test suite."""

from __future__ import annotations

import pytest
from hypothesis import settings

from haggler.config import DQNConfig
from haggler.negotiation import NegotiationState, Terms, open_negotiation

# The first example of a test may import torch or build a network; a per-example deadline would
# turn that one-off cost into a flaky failure, and the suite's total time is watched anyway.
settings.register_profile("haggler", deadline=None, print_blob=True)
settings.load_profile("haggler")


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
    terms = Terms(list_price=list_price, buyer_limit=limit, max_rounds=max_rounds, quantity=quantity)
    return open_negotiation(terms, ask)


@pytest.fixture
def new_negotiation():  # type: ignore[no-untyped-def]
    """Factory for freshly opened negotiations (list 100, limit 90, ask 120 unless told)."""
    return opened
