"""The negotiation service in Python: the agent negotiates, logs every decision, and learns online.

    service = NegotiationService("models/buyer_agent.pth", enable_training=True)
    record = service.negotiate(product="Cordless drill 18 V", buyer_limit=130, seller="linear")
    service.close()

Runs negotiations and trains exactly as the HTTP service does (which builds on it): exploration
while training is on, greedy when off, every decision logged with its propensity, training after
each finished negotiation in the background.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from haggler.config import Settings
from haggler.core.catalogue import Product, find_product
from haggler.core.features import legal_moves, observe, to_action
from haggler.core.negotiation import (
    NegotiationResult,
    NegotiationState,
    Party,
    Terms,
    apply_move,
    money,
    open_negotiation,
    result,
    step_reward,
)
from haggler.core.sellers import make_seller
from haggler.core.transitions import LoggedDecision, Transitions, negotiation_transitions
from haggler.learning.dqn import BuyerAgent
from haggler.learning.learner import LearnerConfig, OnlineLearner
from haggler.policy.exploration import GREEDY, Exploration
from haggler.policy.snapshot import PolicySnapshot


@dataclass
class NegotiationRecord:
    id: int
    product: Product
    seller: str
    state: NegotiationState
    decisions: list[LoggedDecision] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)

    @property
    def result(self) -> NegotiationResult:
        return result(self.state)

    def transitions(self) -> Transitions:
        """The negotiation's experiences, one per buyer move, for the replay buffer."""
        return negotiation_transitions(self.decisions, self.rewards, self.state)


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
    ) -> None:
        self.settings = settings or Settings()
        self.model_path = Path(model_path)
        self.agent = BuyerAgent.from_file(self.model_path)
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

    def set_training(self, enabled: bool) -> None:
        """Turn online training on (exploring, learning) or off (greedy, frozen)."""
        if enabled and self.learner is None and self.learn_inline:
            self.agent.set_learning_rate(self.settings.online_learning_rate)
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
        return self.agent.snapshot

    def decide(
        self, state: NegotiationState, snapshot: PolicySnapshot | None = None
    ) -> LoggedDecision:
        """The agent's next move in `state` (with `snapshot`, default the serving weights), as
        the log records it (propensity, version)."""
        observation, mask = observe(state), legal_moves(state)
        decision = self.agent.act(
            observation, mask, exploration=self.exploration, rng=self.rng, snapshot=snapshot
        )
        return LoggedDecision(
            round=state.buyer_moves + 1,
            observation=observation,
            action_mask=mask,
            move=int(decision.move),
            propensity=decision.propensity,
            model_version=decision.model_version,
        )

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
        state = open_negotiation(terms, simulated.opening_ask())
        record = NegotiationRecord(next(self._ids), item, seller, state)
        while not state.is_over:
            logged = self.decide(state)
            state = apply_move(state, Party.BUYER, to_action(state, logged.move))
            if not state.is_over:
                state = apply_move(state, Party.SELLER, simulated.respond(state))
            record.decisions.append(logged)
            record.rewards.append(step_reward(state))
        record.state = state
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
        else:
            self.agent.load_model(path)

    def close(self) -> None:
        """Finish pending training and stop the learner."""
        if self.learner is not None:
            self.learner.close()
