"""Experiences: one buyer decision as the service logs it, and THE builder of a negotiation's
transitions for the replay buffer (pretraining and online learning alike)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


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


@dataclasses.dataclass(frozen=True)
class LoggedEpisode:
    """One logged negotiation: every buyer decision, in order, with its propensity and reward."""

    observations: np.ndarray  # (T, OBSERVATION_SIZE) float32
    action_masks: np.ndarray  # (T, N_MOVES) bool
    moves: np.ndarray  # (T,) int64
    propensities: np.ndarray  # (T,) float64, the behaviour policy's probability of each logged move
    rewards: np.ndarray  # (T,) float64

    @property
    def ret(self) -> float:
        """The episode's return: the sum of its rewards."""
        return float(np.sum(self.rewards))

    def __len__(self) -> int:
        return len(self.moves)

    @staticmethod
    def of(decisions: Sequence[LoggedDecision]) -> LoggedEpisode:
        """The episode of a finished negotiation's logged decisions, each with its reward."""
        return LoggedEpisode(
            observations=np.stack([d.observation for d in decisions]),
            action_masks=np.stack([d.action_mask for d in decisions]),
            moves=np.array([d.move for d in decisions], dtype=np.int64),
            propensities=np.array([d.propensity for d in decisions], dtype=np.float64),
            rewards=np.array([d.reward or 0.0 for d in decisions], dtype=np.float64),
        )

    def transitions(self) -> Transitions:
        """The episode's experiences for the replay buffer (`negotiation_transitions`)."""
        return negotiation_transitions(
            self.observations, self.action_masks, self.moves, self.rewards
        )


def transitions(
    observation: np.ndarray,
    action_mask: np.ndarray,
    move: np.ndarray,
    reward: np.ndarray,
    next_observation: np.ndarray,
    next_action_mask: np.ndarray,
    terminated: np.ndarray,
) -> Transitions:
    """Every transition haggler learns from is built here, with one convention for the end: a
    terminal transition's next observation is zeros with every move legal. Nothing follows the
    end, so the update never uses it (its target is the reward alone); the store, which keeps
    only decisions, can build the very same rows as pretraining."""
    ended = np.asarray(terminated, dtype=bool)  # (B,)
    return Transitions(
        observation=np.asarray(observation, dtype=np.float32),
        action_mask=np.asarray(action_mask, dtype=bool),
        move=np.asarray(move, dtype=np.int64),
        reward=np.asarray(reward, dtype=np.float32),
        next_observation=np.where(ended[:, None], 0.0, next_observation).astype(np.float32),
        next_action_mask=np.where(ended[:, None], True, next_action_mask),
        terminated=ended,
    )


def negotiation_transitions(
    observations: np.ndarray, action_masks: np.ndarray, moves: np.ndarray, rewards: np.ndarray
) -> Transitions:
    """A finished negotiation's experiences, one per buyer decision, from its decision log:
    each decision leads to the next, the last one to the end."""
    steps = len(moves)
    terminated = np.zeros(steps, dtype=bool)
    terminated[-1] = True
    return transitions(
        observations,
        action_masks,
        moves,
        rewards,
        # Each row's next is the following row; the last wraps round, and `transitions` replaces
        # it by the end's convention.
        next_observation=np.roll(observations, -1, axis=0),
        next_action_mask=np.roll(action_masks, -1, axis=0),
        terminated=terminated,
    )
