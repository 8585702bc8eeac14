"""How the agent explores while it learns online, as a probability for every move.

Acting draws from `move_probabilities`, and off-policy evaluation reads the same function for a
candidate policy, so the propensity logged with a move is exactly the probability the policy
gave it.

- `epsilon` (the seed's behaviour): with probability EPSILON a uniformly random legal move.
  Cheap to reason about, dear in money: a random accept overpays, a random walk-away throws a
  deal away (measured in a prototype: 0.07-0.12 live surplus per negotiation, more than learning
  won back).
- `safe`: never explores with accept or walk-away, and never away from them: when the greedy
  move ends the negotiation it is taken. While haggling, with probability EPSILON the counter-offer
  is drawn by a softmax over the counter moves' Q-values at `temperature`, so near-best counters
  are tried far more often than poor ones; every counter keeps a positive probability, so logged
  data still covers every counter move a candidate might choose.
- `greedy`: no exploration (training off, or a candidate judged as it would serve).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from haggler.core.features import N_MOVES, BuyerMove

ExplorationMode = Literal["epsilon", "safe", "greedy"]

COUNTER_MOVES = np.array([move >= BuyerMove.HOLD for move in BuyerMove])
"""(N_MOVES,) bool: the moves that keep the negotiation going with a price."""


@dataclass(frozen=True)
class Exploration:
    """A behaviour policy around the Q-values: how often and among which moves to explore."""

    mode: ExplorationMode = "greedy"
    epsilon: float = 0.0
    """Share of decisions that explore."""
    temperature: float = 0.05
    """`safe` only: softmax temperature over the counter moves' Q-values (rewards are in
    [-1, 1]; at 0.05 a counter 0.1 worse than the best is tried e^2 = 7 times less often). The
    service's is EXPLORATION_TEMPERATURE (0.005, chosen by the online stream's figures)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be within [0, 1], got {self.epsilon}")
        if self.temperature <= 0.0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    @property
    def explores(self) -> bool:
        return self.mode != "greedy" and self.epsilon > 0.0


GREEDY = Exploration()


def move_probabilities(
    q_values: np.ndarray, action_masks: np.ndarray, exploration: Exploration = GREEDY
) -> np.ndarray:
    """(B, N_MOVES) Q-values and legal-move masks -> (B, N_MOVES) probability of each move.

    Also accepts single rows of shape (N_MOVES,). Illegal moves get probability 0; ties for the
    best move go to the first, as `masked_greedy` does."""
    single = q_values.ndim == 1
    q_values = np.atleast_2d(q_values).astype(np.float64)  # (B, N_MOVES)
    masks = np.atleast_2d(action_masks).astype(bool)  # (B, N_MOVES)
    rows = np.arange(len(q_values))
    greedy = np.where(masks, q_values, -np.inf).argmax(axis=1)  # (B,)
    greedy_one_hot = np.zeros_like(q_values)
    greedy_one_hot[rows, greedy] = 1.0
    if not exploration.explores:
        probabilities = greedy_one_hot
    elif exploration.mode == "epsilon":
        uniform = masks / masks.sum(axis=1, keepdims=True)  # (B, N_MOVES)
        probabilities = (1.0 - exploration.epsilon) * greedy_one_hot + exploration.epsilon * uniform
    else:
        counters = masks & COUNTER_MOVES  # (B, N_MOVES)
        best_counter = np.where(counters, q_values, -np.inf).max(axis=1, keepdims=True)  # (B, 1)
        best_counter = np.where(np.isfinite(best_counter), best_counter, 0.0)
        scaled = np.where(counters, (q_values - best_counter) / exploration.temperature, -np.inf)
        weights = np.exp(scaled)  # (B, N_MOVES), 0 off the counters, 1 at the best counter
        softmax = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
        haggling = COUNTER_MOVES[greedy] & counters.any(axis=1)  # (B,) greedy move is a counter
        explored = (1.0 - exploration.epsilon) * greedy_one_hot + exploration.epsilon * softmax
        probabilities = np.where(haggling[:, None], explored, greedy_one_hot)
    return probabilities[0] if single else probabilities


def choose_move(
    q_values: np.ndarray,
    action_mask: np.ndarray,
    exploration: Exploration,
    rng: np.random.Generator | None,
) -> tuple[int, float]:
    """One decision: (N_MOVES,) Q-values and mask -> (move, the probability it was chosen with)."""
    probabilities = move_probabilities(q_values, action_mask, exploration)  # (N_MOVES,)
    if not exploration.explores:
        move = int(probabilities.argmax())
        return move, 1.0
    if rng is None:
        raise ValueError("exploration needs a seeded random generator")
    move = int(rng.choice(N_MOVES, p=probabilities))
    return move, float(probabilities[move])
