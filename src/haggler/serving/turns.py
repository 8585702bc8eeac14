"""One turn of a stored negotiation, the same for the API, the CLI and Python: validate the
seller's move, let the agent answer, record both in the caller's transaction.

A turn is the seller's move (none at the opening) and then, while the negotiation goes on, the
agent's answer, written in one statement group: the turns, the agent's decision with its
propensity, and the reward of the decision the seller's move answered. A simulated seller's
negotiation is played in process through the game loop (`NegotiationService.play`) and
recorded in one write.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy.orm import Session

from haggler.core.features import to_action
from haggler.core.negotiation import (
    Action,
    NegotiationState,
    Party,
    apply_move,
    episode_return,
    step_reward,
)
from haggler.core.play import Seller
from haggler.safety import ab_testing
from haggler.serving.service import NegotiationService
from haggler.store import experiments
from haggler.store import negotiations as negotiation_store
from haggler.store.base import Database


def play_turn(
    service: NegotiationService,
    negotiation_id: int,
    state: NegotiationState,
    seller_action: Action | None,
    *,
    version: int,
    session: Database,
) -> NegotiationState:
    """The seller's move (if any), then the agent's answer while the negotiation goes on,
    recorded; ProtocolError for a move the rules refuse, store.Conflict if another request moved
    first (nothing is recorded then)."""
    after, answered = state, None
    if seller_action is not None:
        after = apply_move(after, Party.SELLER, seller_action)
        answered = (state.buyer_moves, step_reward(after))
    decisions = []
    if not after.is_over:
        logged = service.decide(after, service.snapshot_for(version))
        moved = apply_move(after, Party.BUYER, to_action(after, logged.move))
        reward = step_reward(moved) if moved.is_over else None  # else: once the seller answers
        decisions.append(dataclasses.replace(logged, reward=reward))
        after = moved
    negotiation_store.record_progress(
        negotiation_id,
        state,
        after,
        session=session,
        model_version=version,
        decisions=decisions,
        answered=answered,
        reward=episode_return(after) if after.is_over else None,
    )
    return after


def choose_arm(
    service: NegotiationService, negotiation_id: int, version: int, *, session: Session
) -> int:
    """While an A/B test runs, the negotiation's id decides which model plays it (recorded with
    it); return the version that plays."""
    test, challenger = service.ab_test, service.challenger
    if test is None or challenger is None:
        return version
    test_id, split = test
    arm = ab_testing.assign_arm(negotiation_id, test_id, split)
    played = challenger.version if arm == "challenger" else version
    experiments.assign_arm(
        negotiation_id, ab_test_id=test_id, arm=arm, model_version=played, session=session
    )
    return played


def play_simulated(
    service: NegotiationService,
    negotiation_id: int,
    opened: NegotiationState,
    seller: Seller,
    *,
    version: int,
    session: Database,
) -> NegotiationState:
    """A negotiation with a simulated `seller`, from its opening ask to the end through the game
    loop, recorded in one write (every turn and every decision with its reward)."""
    final, decisions = service.play(opened, seller, service.snapshot_for(version))
    negotiation_store.record_progress(
        negotiation_id,
        opened,
        final,
        session=session,
        model_version=version,
        decisions=decisions,
        reward=episode_return(final),
    )
    return final
