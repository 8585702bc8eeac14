"""Offline pretraining of the buyer agent against simulated sellers.

Several environments step in lock-step so that acting is one batched forward pass; after every
batch of environment steps the agent takes gradient steps from its replay buffer. Exploration is
epsilon-greedy with epsilon decaying linearly over the first part of the budget. The model it
leaves is the average of the online network's weights over the second half of the budget
(stochastic weight averaging, Izmailov et al. 2018, with PyTorch's `AveragedModel`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch.optim.swa_utils import AveragedModel

from haggler.core.env import NegotiationEnv
from haggler.core.scenarios import TRAINING_STREAM, scenario_rng
from haggler.core.sellers import TRAINING_STRATEGIES
from haggler.core.transitions import Transitions, transitions
from haggler.learning.dqn import BuyerAgent
from haggler.policy.snapshot import masked_greedy

STARTER_ENV_STEPS = 400_000
"""The starter model's budget, in environment steps (buyer moves): a budget in steps, not
seconds, so that a seed gives the same model on any machine (a 170-second budget gave models
from 0.19 to 0.48 mean surplus on three machines)."""


@dataclass(frozen=True)
class PretrainConfig:
    """How long and how to pretrain."""

    seconds: float | None = None
    """Optional wall-clock cap; training stops at whichever of `seconds` and `env_steps` comes
    first (a run stopped by the clock depends on the machine)."""
    env_steps: int | None = STARTER_ENV_STEPS
    """Budget in environment steps (buyer moves)."""
    n_envs: int = 32
    """Negotiations played side by side; one batched forward pass chooses all their moves."""
    gradient_steps_per_batch: int = 2
    """Gradient steps after each batch of `n_envs` environment steps. Measured at 400,000 steps
    on one seed only (seed 0; `haggler evaluate`'s suites): two gave 0.362 mean surplus on the
    trained strategies' fresh negotiations and 0.351 on the held-out family, one gave 0.329 and
    0.285 (an environment step costs more here than its share of an update). Seeds 1 and 2 with
    two gave 0.319/0.320 and 0.330/0.323; one was not tried on them."""
    learning_starts: int = 5_000
    """Transitions collected with random moves before the first gradient step."""
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_share: float = 0.4
    """Share of the budget over which epsilon falls from start to end."""
    average_from: float | None = 0.5
    """Share of the budget after which the online network's weights are averaged (stochastic
    weight averaging, Izmailov et al. 2018); the trained model is that average. None: the
    model is the last iterate. Measured on 7 families, each held out of training in turn, 2
    seeds, 4,741 feasible held-out negotiations per seed: the last iterate scored 0.349 and 0.327
    mean surplus, the average 0.344 and 0.347 (paired differences -0.005 [-0.011, +0.001] and
    +0.021 [+0.014, +0.027]). What a seed gives varies less: the seeds' gap fell from 0.022 to
    0.003, and from 0.111 to 0.014 on the family where it was widest (`time_dependent`)."""
    strategies: tuple[str, ...] = field(default=TRAINING_STRATEGIES)
    seed: int = 0
    """Seeds the training scenarios and exploration; the agent's own seed is in its DQNConfig."""

    def __post_init__(self) -> None:
        if self.average_from is not None and not 0.0 <= self.average_from < 1.0:
            raise ValueError(
                f"average_from is a share of the budget in [0, 1), got {self.average_from}"
            )


@dataclass
class PretrainProgress:
    env_steps: int = 0
    episodes: int = 0
    gradient_steps: int = 0
    epsilon: float = 1.0
    loss: float = float("nan")
    mean_return: float = float("nan")
    """Mean return over the last 1,000 finished negotiations (exploration included)."""
    seconds: float = 0.0


def pretrain(
    agent: BuyerAgent,
    config: PretrainConfig,
    on_progress: Callable[[PretrainProgress], None] | None = None,
) -> PretrainProgress:
    """Train `agent` in place against the simulated sellers of `config.strategies`."""
    if config.seconds is None and config.env_steps is None:
        raise ValueError("pretraining needs a budget: seconds or env_steps")
    rng = scenario_rng(TRAINING_STREAM, config.seed)
    envs = [NegotiationEnv(config.strategies) for _ in range(config.n_envs)]
    observations, masks = _reset_all(envs, rng)
    returns: deque[float] = deque(maxlen=1_000)
    running = np.zeros(config.n_envs)
    progress = PretrainProgress(epsilon=config.epsilon_start)
    started = time.perf_counter()
    last_report = started
    averaged: AveragedModel | None = None

    while True:
        progress.seconds = time.perf_counter() - started
        used = budget_used(config, progress)
        if used >= 1.0:
            break
        decay = min(1.0, used / config.epsilon_decay_share)
        epsilon = config.epsilon_start + decay * (config.epsilon_end - config.epsilon_start)
        progress.epsilon = epsilon

        moves = _epsilon_greedy_batch(agent, observations, masks, epsilon, rng)
        batch = _step_all(envs, moves, observations, masks, rng, running, returns)
        agent.add_transitions(batch)
        progress.env_steps += config.n_envs
        progress.episodes += int(batch.terminated.sum())

        if agent.buffer_size >= config.learning_starts:
            progress.loss = agent.train_steps(config.gradient_steps_per_batch)
            progress.gradient_steps = agent.gradient_steps
            if config.average_from is not None and used >= config.average_from:
                if averaged is None:
                    averaged = AveragedModel(agent.q_network)
                averaged.update_parameters(agent.q_network)
        if returns:
            progress.mean_return = float(np.mean(returns))
        now = time.perf_counter()
        if on_progress is not None and now - last_report >= 0.5:
            on_progress(progress)
            last_report = now
    if averaged is not None:
        # The average becomes the model: online and target network alike, served as a new version.
        weights = averaged.module.state_dict()
        agent.q_network.load_state_dict(weights)
        agent.target_network.load_state_dict(weights)
        agent.publish()
    if on_progress is not None:
        on_progress(progress)
    return progress


def budget_used(config: PretrainConfig, progress: PretrainProgress) -> float:
    """Share of the budget spent so far (1.0 or more: done)."""
    shares = []
    if config.seconds is not None:
        shares.append(progress.seconds / config.seconds)
    if config.env_steps is not None:
        shares.append(progress.env_steps / config.env_steps)
    return max(shares)


def _reset_all(
    envs: Sequence[NegotiationEnv], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    observations, masks = [], []
    for env in envs:
        observation, info = env.reset(seed=int(rng.integers(2**31)))
        observations.append(observation)
        masks.append(info["action_mask"])
    return np.stack(observations), np.stack(masks)


def _epsilon_greedy_batch(
    agent: BuyerAgent,
    observations: np.ndarray,
    masks: np.ndarray,
    epsilon: float,
    rng: np.random.Generator,
) -> np.ndarray:
    greedy = masked_greedy(agent.q_values(observations), masks)  # (n_envs,)
    # A uniformly random legal move per row: the argmax of random scores over the legal moves.
    random_moves = np.where(masks, rng.random(masks.shape), -1.0).argmax(axis=1)
    explore = rng.random(len(greedy)) < epsilon
    return np.where(explore, random_moves, greedy)


def _step_all(
    envs: Sequence[NegotiationEnv],
    moves: np.ndarray,
    observations: np.ndarray,
    masks: np.ndarray,
    rng: np.random.Generator,
    running: np.ndarray,
    returns: deque[float],
) -> Transitions:
    """Step every environment once; reset the finished ones. Updates the arrays in place."""
    n = len(envs)
    next_observations = np.empty_like(observations)
    next_masks = np.empty_like(masks)
    rewards = np.empty(n, dtype=np.float32)
    terminated = np.zeros(n, dtype=bool)
    start_observations, start_masks = observations.copy(), masks.copy()
    for i, env in enumerate(envs):
        observation, reward, done, _, info = env.step(int(moves[i]))
        next_observations[i], next_masks[i], rewards[i], terminated[i] = (
            observation,
            info["action_mask"],
            reward,
            done,
        )
        running[i] += reward
        if done:
            returns.append(float(running[i]))
            running[i] = 0.0
            observation, info = env.reset(seed=int(rng.integers(2**31)))
        observations[i], masks[i] = observation, info["action_mask"]
    return transitions(
        start_observations,
        start_masks,
        moves,
        rewards,
        next_observation=next_observations,
        next_action_mask=next_masks,
        terminated=terminated,
    )


def simulated_experience(
    agent: BuyerAgent,
    negotiations: int,
    *,
    strategies: Sequence[str] = TRAINING_STRATEGIES,
    epsilon: float = 0.1,
    seed: int = 0,
    n_envs: int = 32,
) -> Transitions:
    """About `negotiations` negotiations' transitions of `agent` (epsilon-greedy) against the
    simulated sellers: the pretraining experience an online learner replays against forgetting
    (`BuyerAgent.anchor`). Model files hold weights, not buffers, so it is played again."""
    rng = scenario_rng(TRAINING_STREAM, 10_000 + seed)
    envs = [NegotiationEnv(strategies) for _ in range(n_envs)]
    observations, masks = _reset_all(envs, rng)
    running, returns = np.zeros(n_envs), deque[float]()
    batches = []
    while len(returns) < negotiations:
        moves = _epsilon_greedy_batch(agent, observations, masks, epsilon, rng)
        batches.append(_step_all(envs, moves, observations, masks, rng, running, returns))
    return Transitions(*(np.concatenate(parts) for parts in zip(*batches, strict=True)))
