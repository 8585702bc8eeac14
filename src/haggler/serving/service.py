"""The negotiation service in Python: the agent negotiates, logs every decision, and learns online.

    service = NegotiationService("models/buyer_agent.pth", enable_training=True)
    record = service.negotiate(product="Cordless drill 18 V", buyer_limit=130, seller="linear")
    service.close()

Runs negotiations and trains exactly as the HTTP service does (which builds on it): exploration
while training is on, greedy when off, every decision logged with its propensity, training after
each finished negotiation in the background.

Acting needs numpy only: the service holds the serving `PolicySnapshot`. Torch is loaded when a
model file has to be read (no snapshot given) or when the service learns in process
(`enable_training=True` with `learn_inline`); the HTTP service does neither on a store that
already serves a model version.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from haggler.config import Settings
from haggler.core import play as game
from haggler.core.catalogue import Product, find_product
from haggler.core.features import legal_moves, observe, to_action
from haggler.core.negotiation import (
    NegotiationResult,
    NegotiationState,
    Terms,
    money,
    result,
    step_reward,
)
from haggler.core.play import Seller
from haggler.core.sellers import make_seller
from haggler.core.transitions import LoggedDecision, LoggedEpisode, Transitions
from haggler.policy.exploration import GREEDY, Exploration
from haggler.policy.snapshot import PolicySnapshot, decide

if TYPE_CHECKING:
    from haggler.learning.dqn import BuyerAgent
    from haggler.learning.learner import OnlineLearner


@dataclass
class NegotiationRecord:
    id: int
    product: Product
    seller: str
    state: NegotiationState
    decisions: list[LoggedDecision] = field(default_factory=list)
    """Every buyer decision, with the reward it earned."""

    @property
    def result(self) -> NegotiationResult:
        return result(self.state)

    @property
    def rewards(self) -> list[float]:
        """Each decision's reward (its `step_reward` once the seller had answered)."""
        return [d.reward or 0.0 for d in self.decisions]

    def transitions(self) -> Transitions:
        """The negotiation's experiences, one per buyer move, for the replay buffer."""
        return LoggedEpisode.of(self.decisions).transitions()


class NegotiationService:
    """The agent behind the product: negotiates, logs, and (if enabled) learns online."""

    def __init__(
        self,
        model_path: str | Path,
        enable_training: bool = False,
        *,
        settings: Settings | None = None,
        seed: int = 0,
        negotiations_done: int = 0,
        learn_inline: bool = True,
        snapshot: PolicySnapshot | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.model_path = Path(model_path)
        self.agent: BuyerAgent | None = None
        """The torch agent, when this process learns or had to read the model file."""
        if snapshot is None:
            from haggler.learning.dqn import BuyerAgent  # loads torch

            self.agent = BuyerAgent.from_file(self.model_path)
            snapshot = self.agent.snapshot
        self._snapshot = snapshot
        self.enable_training = enable_training
        self.rng = np.random.default_rng(seed)
        self._ids = itertools.count(1)
        self._negotiations_done = negotiations_done
        self.learn_inline = learn_inline
        """False when a learner elsewhere (the HTTP service's) trains from the store instead."""
        self.learner: OnlineLearner | None = None
        self.challenger: PolicySnapshot | None = None
        """The challenger of the running A/B test (None: no test runs)."""
        self.ab_test: tuple[int, float] | None = None
        """The running A/B test's id and the challenger's share of new negotiations."""
        if enable_training:
            self.set_training(True)

    @property
    def snapshot(self) -> PolicySnapshot:
        """The weights serving now (an in-process learner publishes new ones as it trains, once
        it has learned from PROMOTION_WARMUP negotiations)."""
        if self.agent is None:
            return self._snapshot
        learner = self.learner
        if learner is not None and learner.status.negotiations < self.settings.promotion_warmup:
            return self._snapshot
        return self.agent.snapshot

    def serve(self, snapshot: PolicySnapshot) -> None:
        """Act with `snapshot` from now on (published elsewhere: the learner, a restore)."""
        self._snapshot = snapshot
        if self.agent is not None:
            self.agent.serve(snapshot)

    def set_training(self, enabled: bool) -> None:
        """Turn online training on (exploring, learning) or off (greedy, frozen). The first time
        in process this also plays the replay anchor's simulated negotiations (a few seconds)."""
        if enabled and self.learner is None and self.learn_inline:
            from haggler.learning.dqn import BuyerAgent  # loads torch
            from haggler.learning.learner import LearnerConfig, OnlineLearner, anchor_experience

            if self.agent is None:  # learn on from the weights this service was given
                self.agent = BuyerAgent.from_file(self.model_path)
                self.agent.adopt(self._snapshot)
            self.agent.set_learning_rate(self.settings.online_learning_rate)
            anchor_experience(
                self.agent,
                self.settings.replay_anchor_share,
                self.settings.replay_anchor_negotiations,
                seed=0,
            )
            self.learner = OnlineLearner(
                self.agent,
                LearnerConfig.from_settings(self.settings, model_path=self.model_path),
                negotiations_done=self._negotiations_done,
            )
        self.enable_training = enabled

    @property
    def epsilon(self) -> float:
        """Exploration rate: EPSILON while training, 0 (greedy) when not."""
        return self.settings.epsilon if self.enable_training else 0.0

    @property
    def exploration(self) -> Exploration:
        """The behaviour policy around the served Q-values: EXPLORATION while training."""
        if not self.enable_training:
            return GREEDY
        return Exploration(
            self.settings.exploration, self.settings.epsilon, self.settings.exploration_temperature
        )

    def snapshot_for(self, version: int) -> PolicySnapshot:
        """The weights a negotiation started with `version` plays on with: the challenger's
        while its A/B test runs, else the serving ones."""
        challenger = self.challenger
        if challenger is not None and challenger.version == version:
            return challenger
        return self.snapshot

    def decide(
        self, state: NegotiationState, snapshot: PolicySnapshot | None = None
    ) -> LoggedDecision:
        """The agent's next move in `state` (with `snapshot`, default the serving weights), as
        the log records it (propensity, version)."""
        observation, mask = observe(state), legal_moves(state)
        decision = decide(
            snapshot or self.snapshot, observation, mask, exploration=self.exploration, rng=self.rng
        )
        return LoggedDecision(
            round=state.buyer_moves + 1,
            observation=observation,
            action_mask=mask,
            move=int(decision.move),
            propensity=decision.propensity,
            model_version=decision.model_version,
        )

    def play(
        self, opened: NegotiationState, seller: Seller, snapshot: PolicySnapshot | None = None
    ) -> tuple[NegotiationState, list[LoggedDecision]]:
        """Negotiate from `opened` (the seller's ask) to the end against a simulated `seller`
        through the game loop; the final state and the logged decisions, rewarded."""
        snapshot = snapshot or self.snapshot
        state, decisions = opened, []
        while not state.is_over:
            logged = self.decide(state, snapshot)
            state = game.buyer_round(state, to_action(state, logged.move), seller)
            decisions.append(dataclasses.replace(logged, reward=step_reward(state)))
        return state, decisions

    def negotiate(
        self,
        *,
        product: Product | str,
        buyer_limit: float,
        seller: str = "linear",
        max_rounds: int = 10,
        quantity: int = 1,
        seller_seed: int | None = None,
    ) -> NegotiationRecord:
        """Negotiate with a simulated seller to the end; train on it afterwards if enabled."""
        item = find_product(product) if isinstance(product, str) else product
        terms = Terms(item.list_price, money(buyer_limit), max_rounds=max_rounds, quantity=quantity)
        seed = seller_seed if seller_seed is not None else int(self.rng.integers(2**63))
        simulated = make_seller(seller, item.list_price, np.random.default_rng(seed))
        state, decisions = self.play(game.open_with(terms, simulated), simulated)
        record = NegotiationRecord(next(self._ids), item, seller, state, decisions)
        self.learn_from(record.id, record.transitions())
        return record

    def learn_from(self, negotiation_id: int, experiences: Transitions) -> None:
        """Hand a finished negotiation to the learner (when training is on); returns at once."""
        if self.enable_training and self.learner is not None:
            self.learner.submit(negotiation_id, experiences)

    def restore(self, path: Path) -> None:
        """Serve (and train) the checkpoint at `path` from now on; never mid-update."""
        if self.learner is not None:
            self.learner.restore(path)
            # The file brings its own optimiser state: online learning keeps its own step size.
            self.learner.agent.set_learning_rate(self.settings.online_learning_rate)
            # A restore serves at once, warm-up or not.
            self._snapshot = self.learner.agent.snapshot
            return
        if self.agent is None:
            from haggler.learning.dqn import BuyerAgent  # loads torch

            self.agent = BuyerAgent.from_file(path)
        else:
            self.agent.load_model(path)

    def close(self) -> None:
        """Finish pending training and stop the learner."""
        if self.learner is not None:
            self.learner.close()
