"""The logs that off-policy evaluation reads: logged negotiations (`core.transitions.LoggedEpisode`)
checked and padded into one batch, and `play_logged`, which plays
scenarios to make logs as the service would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from haggler.core.features import (
    N_MOVES,
    OBSERVATION_SIZE,
    BuyerMove,
    legal_moves,
    observe,
    to_action,
)
from haggler.core.negotiation import RewardConfig, step_reward
from haggler.core.play import buyer_round, open_with
from haggler.core.scenarios import Played, Scenario
from haggler.core.transitions import LoggedEpisode
from haggler.policy.exploration import GREEDY, Exploration, move_probabilities
from haggler.policy.snapshot import PolicySnapshot


def _check_shapes(episode: LoggedEpisode, index: int) -> None:
    where = f"logged episode {index}"
    steps = np.shape(episode.moves)
    if len(steps) != 1 or steps[0] == 0:
        raise ValueError(f"{where}: moves must be a non-empty 1-d array, got shape {steps}")
    t = steps[0]
    expected = {
        "observations": (t, OBSERVATION_SIZE),
        "action_masks": (t, N_MOVES),
        "propensities": (t,),
        "rewards": (t,),
    }
    for name, shape in expected.items():
        actual = np.shape(getattr(episode, name))
        if actual != shape:
            raise ValueError(f"{where}: {name} must have shape {shape}, got {actual}")


def _check_values(
    moves: np.ndarray,
    action_masks: np.ndarray,
    propensities: np.ndarray,
    rewards: np.ndarray,
    starts: np.ndarray,
) -> None:
    """The logged steps of all episodes, concatenated: (S,) moves, propensities and rewards,
    (S, N_MOVES) masks; `starts` (N,) is each episode's first step."""
    checks = (
        (
            (moves >= 0) & (moves < N_MOVES),
            f"moves must be integers in [0, {N_MOVES})",
        ),
        (
            action_masks[np.arange(len(moves)), np.clip(moves, 0, N_MOVES - 1)],
            "a logged move is not legal under its logged action mask",
        ),
        ((propensities > 0.0) & (propensities <= 1.0), "propensities must be within (0, 1]"),
        (np.isfinite(rewards), "rewards must be finite"),
    )
    for fine, what in checks:  # (S,) bool each
        if not fine.all():
            step = int(np.argmin(fine))
            episode = int(np.searchsorted(starts, step, side="right")) - 1
            raise ValueError(
                f"logged episode {episode}, step {step - starts[episode]}: {what} "
                f"(move {moves[step]}, propensity {propensities[step]}, reward {rewards[step]})"
            )


class PaddedEpisodes(NamedTuple):
    """N logged episodes padded to the longest, T_max decisions."""

    observations: np.ndarray  # (N, T_max, OBSERVATION_SIZE) float32, 0 in padding
    action_masks: np.ndarray  # (N, T_max, N_MOVES) bool, all legal in padding
    moves: np.ndarray  # (N, T_max) int64, 0 in padding
    propensities: np.ndarray  # (N, T_max) float64, 1 in padding
    rewards: np.ndarray  # (N, T_max) float64, 0 in padding
    logged: np.ndarray  # (N, T_max) bool, True where a decision was logged


def pad(episodes: Sequence[LoggedEpisode]) -> PaddedEpisodes:
    """Check the episodes and pad them into one (N, T_max) batch; ValueError on bad input."""
    if len(episodes) == 0:
        raise ValueError("off-policy evaluation needs at least one logged episode, got none")
    for index, episode in enumerate(episodes):
        _check_shapes(episode, index)
    moves = np.concatenate([e.moves for e in episodes])  # (S,) every logged step
    if not np.issubdtype(moves.dtype, np.integer):
        raise ValueError(f"logged moves must be integers, got {moves.dtype}")
    action_masks = np.concatenate([e.action_masks for e in episodes]).astype(bool)  # (S, N_MOVES)
    propensities = np.concatenate([e.propensities for e in episodes]).astype(np.float64)  # (S,)
    rewards = np.concatenate([e.rewards for e in episodes]).astype(np.float64)  # (S,)
    lengths = np.array([len(e) for e in episodes])  # (N,)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # (N,)
    _check_values(moves, action_masks, propensities, rewards, starts)

    n, t_max = len(episodes), int(lengths.max())
    logged = np.arange(t_max)[None, :] < lengths[:, None]  # (N, T_max)
    padded = PaddedEpisodes(
        observations=np.zeros((n, t_max, OBSERVATION_SIZE), dtype=np.float32),
        action_masks=np.ones((n, t_max, N_MOVES), dtype=bool),
        moves=np.zeros((n, t_max), dtype=np.int64),
        propensities=np.ones((n, t_max)),
        rewards=np.zeros((n, t_max)),
        logged=logged,
    )
    padded.observations[logged] = np.concatenate([e.observations for e in episodes])
    padded.action_masks[logged] = action_masks
    padded.moves[logged] = moves
    padded.propensities[logged] = propensities
    padded.rewards[logged] = rewards
    return padded


# -- playing scenarios to make logs -------------------------------------------------------------


def play_logged(
    scenarios: Sequence[Scenario],
    snapshot: PolicySnapshot,
    exploration: Exploration = GREEDY,
    *,
    rng: np.random.Generator | None = None,
    reward_config: RewardConfig | None = None,
) -> tuple[list[LoggedEpisode], list[Played]]:
    """Play every scenario with `snapshot` acting under `exploration`, as the service would log
    it: each decision's observation, mask, move, propensity, and `step_reward` after the seller's
    answer (deal possibility as the buyer saw it, as `NegotiationService.negotiate` does).

    The negotiations move in lock-step, one batched forward pass for all the open ones. Moves
    are drawn from `move_probabilities` (the function `choose_move` draws from) by inverse CDF,
    as `Generator.choice` does, for all open negotiations at once: `choose_move` itself took
    55 µs a decision, more than the rest of a step."""
    if exploration.explores and rng is None:
        raise ValueError("exploration needs a seeded random generator")
    config = reward_config or RewardConfig()
    sellers = [scenario.seller() for scenario in scenarios]
    states = [
        open_with(scenario.terms, seller)
        for scenario, seller in zip(scenarios, sellers, strict=True)
    ]
    steps: list[list[tuple[np.ndarray, np.ndarray, int, float, float]]] = [[] for _ in scenarios]
    open_ = list(range(len(scenarios)))
    while open_:
        observations = np.stack([observe(states[i]) for i in open_])  # (B, OBSERVATION_SIZE)
        masks = np.stack([legal_moves(states[i]) for i in open_])  # (B, N_MOVES)
        probabilities = move_probabilities(
            snapshot.q_values(observations), masks, exploration
        )  # (B, N_MOVES)
        if exploration.explores:
            assert rng is not None
            cdf = probabilities.cumsum(axis=1)  # (B, N_MOVES)
            cdf /= cdf[:, -1:]
            uniforms = rng.random(len(open_))  # (B,)
            moves = (cdf <= uniforms[:, None]).sum(axis=1)  # (B,) first index with cdf > u
        else:
            moves = probabilities.argmax(axis=1)  # (B,)
        propensities = probabilities[np.arange(len(open_)), moves]  # (B,)
        still_open = []
        for row, i in enumerate(open_):
            action = to_action(states[i], BuyerMove(int(moves[row])))
            state = states[i] = buyer_round(states[i], action, sellers[i])
            steps[i].append(
                (
                    observations[row],
                    masks[row],
                    int(moves[row]),
                    float(propensities[row]),
                    step_reward(state, config),
                )
            )
            if not state.is_over:
                still_open.append(i)
        open_ = still_open
    episodes = [
        LoggedEpisode(
            observations=np.stack([s[0] for s in episode]),
            action_masks=np.stack([s[1] for s in episode]),
            moves=np.array([s[2] for s in episode], dtype=np.int64),
            propensities=np.array([s[3] for s in episode], dtype=np.float64),
            rewards=np.array([s[4] for s in episode], dtype=np.float64),
        )
        for episode in steps
    ]
    played = [
        Played(scenario, state, seller.reserve)
        for scenario, state, seller in zip(scenarios, states, sellers, strict=True)
    ]
    return episodes, played
