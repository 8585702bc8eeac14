"""A Gymnasium environment: the buyer's side of a negotiation against a mix of simulated sellers.

`gymnasium.make("haggler/Negotiation-v0")` once `haggler` is imported. Each step is one buyer move
and the seller's answer. `info["action_mask"]` marks the legal moves; an illegal move (accepting an
ask above the limit, which the service refuses) is played as HOLD (or, if
that is not possible either, as a walk-away) and flagged in `info`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from haggler.core.features import (
    N_MOVES,
    OBSERVATION_SIZE,
    BuyerMove,
    legal_moves,
    observe,
    to_action,
)
from haggler.core.negotiation import (
    NegotiationState,
    RewardConfig,
    step_reward,
)
from haggler.core.play import buyer_round, open_with
from haggler.core.scenarios import Scenario, draw_scenario
from haggler.core.sellers import TRAINING_STRATEGIES, SimulatedSeller

ENV_ID = "haggler/Negotiation-v0"


class NegotiationEnv(gym.Env[np.ndarray, np.int64]):
    """One episode is one negotiation; the agent is the buyer."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012 - Gymnasium convention

    def __init__(
        self,
        strategies: Sequence[str] = TRAINING_STRATEGIES,
        max_rounds: int | None = None,
        reward_config: RewardConfig | None = None,
        render_mode: str | None = None,
    ) -> None:
        if not strategies:
            raise ValueError("the environment needs at least one seller strategy")
        self.strategies = tuple(strategies)
        self.max_rounds = max_rounds
        self.reward_config = reward_config or RewardConfig()
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(
            low=-1.0, high=4.0, shape=(OBSERVATION_SIZE,), dtype=np.float32
        )
        self.action_space = gym.spaces.Discrete(N_MOVES)
        self.scenario: Scenario | None = None
        self.seller: SimulatedSeller | None = None
        self.state: NegotiationState | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        scenario = (options or {}).get("scenario")
        if scenario is None:
            scenario = draw_scenario(self.np_random, self.strategies, max_rounds=self.max_rounds)
        self.scenario = scenario
        self.seller = scenario.seller()
        self.state = open_with(scenario.terms, self.seller)
        return observe(self.state), self._info(illegal=False)

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.state is None or self.seller is None:
            raise RuntimeError("call reset() before step()")
        if self.state.is_over:
            raise RuntimeError("the negotiation is over; call reset()")
        move = BuyerMove(int(action))
        illegal = not legal_moves(self.state)[move]
        if illegal:
            legal = legal_moves(self.state)
            move = BuyerMove.HOLD if legal[BuyerMove.HOLD] else BuyerMove.WALK_AWAY
        state = buyer_round(self.state, to_action(self.state, move), self.seller)
        self.state = state
        reward = step_reward(state, self.reward_config)
        return observe(state), reward, state.is_over, False, self._info(illegal=illegal)

    def _info(self, *, illegal: bool) -> dict[str, Any]:
        assert self.state is not None and self.scenario is not None and self.seller is not None
        return {
            "action_mask": legal_moves(self.state),
            "illegal_move": illegal,
            "strategy": self.scenario.strategy,
            "reserve": self.seller.reserve,
        }

    def render(self) -> str | None:
        if self.state is None:
            return None
        lines = []
        for turn in self.state.transcript:
            price = f" {turn.price:.2f}" if turn.price is not None else ""
            lines.append(f"round {turn.round:2d} {turn.party.value:6s} {turn.move.value}{price}")
        if self.state.outcome is not None:
            lines.append(f"outcome: {self.state.outcome.value}")
        return "\n".join(lines)
