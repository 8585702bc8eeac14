"""Experiences: one buyer decision as the service logs it, and THE builder of a negotiation's
transitions for the replay buffer (pretraining and online learning alike)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from haggler.core.features import (
    legal_moves,
    observe,
)
from haggler.core.negotiation import NegotiationState


class Transitions(NamedTuple):
    """A batch of transitions, one row each; arrays with a leading batch dimension B."""

    observation: np.ndarray  # (B, OBSERVATION_SIZE) float32
    action_mask: np.ndarray  # (B, N_MOVES) bool
    move: np.ndarray  # (B,) int64
    reward: np.ndarray  # (B,) float32
    next_observation: np.ndarray  # (B, OBSERVATION_SIZE) float32
    next_action_mask: np.ndarray  # (B, N_MOVES) bool
    terminated: np.ndarray  # (B,) bool


@dataclasses.dataclass(frozen=True)
class LoggedDecision:
    """One buyer decision as served: what it saw, what it did, with what probability, by which
    model version, and (once the seller has answered) the reward it earned."""

    round: int
    observation: np.ndarray
    action_mask: np.ndarray
    move: int
    propensity: float
    model_version: int
    reward: float | None = None


def negotiation_transitions(
    decisions: Sequence[LoggedDecision], rewards: Sequence[float], final_state: NegotiationState
) -> Transitions:
    """One negotiation's experiences: each decision leads to the next, the last to the end."""
    n = len(decisions)
    next_observations = [d.observation for d in decisions[1:]] + [observe(final_state)]
    next_masks = [d.action_mask for d in decisions[1:]] + [legal_moves(final_state)]
    terminated = np.zeros(n, dtype=bool)
    terminated[-1] = final_state.is_over
    return Transitions(
        observation=np.stack([d.observation for d in decisions]),
        action_mask=np.stack([d.action_mask for d in decisions]),
        move=np.array([d.move for d in decisions], dtype=np.int64),
        reward=np.asarray(rewards, dtype=np.float32),
        next_observation=np.stack(next_observations),
        next_action_mask=np.stack(next_masks),
        terminated=terminated,
    )
