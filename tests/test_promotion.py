"""The promotion gate: an identical candidate passes, a clearly worse one is rejected, and the
logged-data check steps aside when the logs cannot say anything."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from haggler.config import DQNConfig
from haggler.core.features import BuyerMove
from haggler.core.scenarios import scenario_suite
from haggler.core.sellers import TRAINING_STRATEGIES
from haggler.core.transitions import LoggedEpisode
from haggler.learning.dqn import BuyerAgent
from haggler.learning.pretraining import PretrainConfig, pretrain
from haggler.policy.exploration import Exploration
from haggler.policy.snapshot import PolicySnapshot
from haggler.safety.logged_episodes import play_logged
from haggler.safety.promotion import GateConfig, gate_suite, judge

FAST = GateConfig(suite_episodes=200, resamples=500)
"""A smaller suite and fewer resamples than the service's, to keep the tests quick."""


@pytest.fixture(scope="module")
def champion() -> PolicySnapshot:
    """A briefly pretrained agent (20k environment steps, a few seconds)."""
    agent = BuyerAgent(DQNConfig(hidden_sizes=(32, 32), seed=0))
    pretrain(agent, PretrainConfig(seconds=None, env_steps=20_000, seed=0))
    return agent.snapshot


@pytest.fixture(scope="module")
def logged(champion: PolicySnapshot) -> list[LoggedEpisode]:
    """The champion's served negotiations, exploring as the service does while training."""
    suite = scenario_suite(500, 21, TRAINING_STRATEGIES)
    episodes, _ = play_logged(
        suite, champion, Exploration("epsilon", 0.1), rng=np.random.default_rng(0)
    )
    return episodes


def favouring(snapshot: PolicySnapshot, move: BuyerMove) -> PolicySnapshot:
    """The same network, with a last-layer bias that makes `move` the best whenever it is legal."""
    biases = [bias.copy() for bias in snapshot.biases]
    biases[-1][move] += 10.0
    return dataclasses.replace(snapshot, biases=tuple(biases), version=snapshot.version + 1)


def test_a_candidate_identical_to_the_champion_passes(
    champion: PolicySnapshot, logged: list[LoggedEpisode]
) -> None:
    candidate = dataclasses.replace(champion, version=champion.version + 1)
    decision = judge(candidate, champion, logged, FAST, rng=np.random.default_rng(0))
    assert decision.passed, decision.reason
    assert decision.reason.startswith("Passed")
    checks = decision.figures["checks"]
    assert {name: check["status"] for name, check in checks.items()} == {
        "surplus": "passed",
        "deal_rate": "passed",
        "reward": "passed",
    }
    assert checks["surplus"]["value"] == 0.0 and checks["reward"]["value"] == 0.0
    json.dumps(decision.figures, allow_nan=False)


def test_a_candidate_that_walks_away_is_rejected_on_surplus_and_deal_rate(
    champion: PolicySnapshot, logged: list[LoggedEpisode]
) -> None:
    candidate = favouring(champion, BuyerMove.WALK_AWAY)
    decision = judge(candidate, champion, logged, FAST, rng=np.random.default_rng(0))
    assert not decision.passed
    assert "normalised surplus on the held-out suite" in decision.reason
    assert "deal rate" in decision.reason and "points below the champion's" in decision.reason
    checks = decision.figures["checks"]
    assert checks["surplus"]["status"] == "failed"
    assert checks["surplus"]["bound"] < -FAST.surplus_tolerance
    assert checks["deal_rate"]["status"] == "failed"
    # Only negotiations in which the champion walked away at once support this candidate.
    assert checks["reward"]["status"] == "inconclusive"
    assert "effective sample size" in checks["reward"]["note"]
    json.dumps(decision.figures, allow_nan=False)


def test_an_untrained_candidate_is_rejected_on_deal_rate(champion: PolicySnapshot) -> None:
    candidate = BuyerAgent(DQNConfig(hidden_sizes=(32, 32), seed=3)).snapshot
    decision = judge(candidate, champion, [], FAST, rng=np.random.default_rng(0))
    assert not decision.passed
    assert decision.figures["checks"]["deal_rate"]["status"] == "failed"
    assert "deal rate on the feasible held-out scenarios" in decision.reason
    suite = decision.figures["suite"]
    assert (
        suite["candidate"]["agreement_rate_feasible"]["mean"]
        < suite["champion"]["agreement_rate_feasible"]["mean"] - FAST.max_deal_rate_drop
    )


def test_without_logs_the_reward_check_is_inconclusive_and_the_suite_decides(
    champion: PolicySnapshot,
) -> None:
    decision = judge(champion, champion, [], FAST, rng=np.random.default_rng(0))
    assert decision.passed
    reward = decision.figures["checks"]["reward"]
    assert reward["status"] == "inconclusive" and reward["note"] == "no logged negotiations"
    assert "inconclusive (no logged negotiations)" in decision.reason
    assert decision.figures["logged"] == {"episodes": 0}


def test_the_reward_check_alone_can_reject(
    champion: PolicySnapshot, logged: list[LoggedEpisode]
) -> None:
    lenient_suite = dataclasses.replace(
        FAST, surplus_tolerance=1.0, max_deal_rate_drop=1.0, min_effective_sample_size=2.0
    )
    candidate = favouring(champion, BuyerMove.WALK_AWAY)
    decision = judge(candidate, champion, logged, lenient_suite, rng=np.random.default_rng(0))
    reward = decision.figures["checks"]["reward"]
    assert reward["status"] == "failed", decision.reason
    assert not decision.passed
    assert decision.reason.startswith(
        "Rejected: estimated reward per negotiation on the logged negotiations"
    )


def test_the_suite_is_fixed_and_held_out() -> None:
    first, again = gate_suite(GateConfig()), gate_suite(GateConfig())
    assert first == again and len(first) == 400
    assert {s.strategy for s in first} >= {"deadline_reciprocal"}  # the held-out seller too
    other = gate_suite(GateConfig(suite_seed=1))
    assert other != first


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"reward_tolerance": -0.1}, "reward_tolerance"),
        ({"max_deal_rate_drop": 2.0}, "max_deal_rate_drop"),
        ({"suite_episodes": 5}, "suite_episodes"),
        ({"strategies": ("haggler_9000",)}, "strategies"),
        ({"strategies": ()}, "strategies"),
        ({"min_effective_sample_size": 0.0}, "min_effective_sample_size"),
        ({"resamples": 10}, "resamples"),
    ],
)
def test_gate_config_refuses_nonsense(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GateConfig(**fields)  # type: ignore[arg-type]
