"""One transitions builder and one reward: pretraining's steps and the service's logged
negotiations give the same rows, rewards included, with one convention for the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from haggler.config import DQNConfig, Settings
from haggler.core.env import NegotiationEnv
from haggler.core.features import N_MOVES, OBSERVATION_SIZE
from haggler.core.play import open_with
from haggler.core.scenarios import scenario_suite
from haggler.core.sellers import TRAINING_STRATEGIES
from haggler.core.transitions import LoggedEpisode, transitions
from haggler.learning.dqn import BuyerAgent
from haggler.serving.service import NegotiationService


def test_pretraining_steps_and_a_logged_negotiation_build_the_same_transitions(
    tiny_config: DQNConfig, tmp_path: Path
) -> None:
    agent = BuyerAgent(tiny_config)
    path = agent.save_model(tmp_path / "model.pth")
    service = NegotiationService(path, settings=Settings(_env_file=None), snapshot=agent.snapshot)
    suite = scenario_suite(40, seed=3, strategies=TRAINING_STRATEGIES)
    outcomes = set()
    feasibility = set()
    for scenario in suite:
        seller = scenario.seller()
        final, decisions = service.play(open_with(scenario.terms, seller), seller)
        logged = LoggedEpisode.of(decisions).transitions()

        # The same moves through the environment, one step at a time, as pretraining takes them.
        env = NegotiationEnv()
        observation, info = env.reset(options={"scenario": scenario})
        rows = []
        for decision in decisions:
            next_observation, reward, done, _, next_info = env.step(decision.move)
            rows.append(
                transitions(
                    observation[None],
                    info["action_mask"][None],
                    np.array([decision.move]),
                    np.array([reward]),
                    next_observation[None],
                    next_info["action_mask"][None],
                    np.array([done]),
                )
            )
            observation, info = next_observation, next_info
        stepped = [np.concatenate(parts) for parts in zip(*rows, strict=True)]
        assert observation.shape == (OBSERVATION_SIZE,)
        assert env.state == final
        outcomes.add(final.outcome)
        feasibility.add(scenario.seller().reserve <= scenario.terms.buyer_limit)
        # The reward too: one function of what the service sees, in simulation and in service.
        for name in (
            "observation",
            "action_mask",
            "move",
            "reward",
            "next_observation",
            "terminated",
        ):
            np.testing.assert_array_equal(
                getattr(logged, name), stepped[logged._fields.index(name)], err_msg=name
            )
        np.testing.assert_array_equal(logged.next_action_mask, stepped[5])
        # The end: terminal, its next observation zeros with every move legal.
        assert logged.terminated[-1] and not logged.terminated[:-1].any()
        assert not logged.next_observation[-1].any()
        assert logged.next_action_mask[-1].all() and logged.next_action_mask.shape[1] == N_MOVES
    # Deals and no-deals, where a deal was possible and where it was not.
    assert len(outcomes) >= 2 and feasibility == {True, False}
