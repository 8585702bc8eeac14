"""The Gymnasium environment: registration, the env checker, determinism, illegal moves."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import haggler  # noqa: F401 - registers the environment
from haggler.core.catalogue import SEED_CATALOGUE
from haggler.core.env import ENV_ID, NegotiationEnv
from haggler.core.features import N_MOVES, OBSERVATION_SIZE, BuyerMove, counter_price
from haggler.core.negotiation import (
    Move,
    NegotiationState,
    Outcome,
    Party,
    RewardConfig,
    Terms,
    step_reward,
)
from haggler.core.scenarios import Scenario

CHAIR = SEED_CATALOGUE[0]


def scenario(limit_share: float, strategy: str = "linear", seed: int = 0) -> Scenario:
    terms = Terms(CHAIR.list_price, round(CHAIR.list_price * limit_share, 2), max_rounds=10)
    return Scenario(CHAIR, terms, strategy, seed)


def state_of(env: NegotiationEnv) -> NegotiationState:
    assert env.state is not None, "reset the environment first"
    return env.state


def scenario_of(env: NegotiationEnv) -> Scenario:
    assert env.scenario is not None, "reset the environment first"
    return env.scenario


def test_the_environment_is_registered_when_haggler_is_imported() -> None:
    env = gymnasium.make(ENV_ID)
    try:
        assert ENV_ID == "haggler/Negotiation-v0"
        assert isinstance(env.unwrapped, NegotiationEnv)
        assert env.observation_space.shape == (OBSERVATION_SIZE,)
        assert isinstance(env.action_space, gymnasium.spaces.Discrete)
        assert env.action_space.n == N_MOVES
        observation, info = env.reset(seed=1)
        assert observation.shape == (OBSERVATION_SIZE,)
        assert info["action_mask"].shape == (N_MOVES,)
    finally:
        env.close()


def test_make_passes_options_to_the_environment() -> None:
    env = gymnasium.make(ENV_ID, strategies=("hardliner",), max_rounds=3)
    try:
        for seed in range(5):
            _, info = env.reset(seed=seed)
            assert info["strategy"] == "hardliner"
            unwrapped = env.unwrapped
            assert isinstance(unwrapped, NegotiationEnv)
            assert scenario_of(unwrapped).terms.max_rounds == 3
    finally:
        env.close()


def test_the_environment_passes_the_gymnasium_env_checker() -> None:
    # Warnings are errors in this suite, so any complaint of the checker fails the test.
    env = gymnasium.make(ENV_ID)
    try:
        check_env(env.unwrapped)
    finally:
        env.close()


def test_reset_with_a_seed_is_deterministic() -> None:
    first, second = NegotiationEnv(), NegotiationEnv()
    for seed in (0, 1, 123):
        obs_a, info_a = first.reset(seed=seed)
        obs_b, info_b = second.reset(seed=seed)
        np.testing.assert_array_equal(obs_a, obs_b)
        assert info_a["strategy"] == info_b["strategy"]
        assert info_a["reserve"] == info_b["reserve"]
        assert first.scenario == second.scenario


def test_different_seeds_give_different_negotiations() -> None:
    env = NegotiationEnv()
    scenarios = []
    for seed in range(20):
        env.reset(seed=seed)
        scenarios.append(scenario_of(env))
    assert len({s.strategy for s in scenarios}) > 3
    assert len({s.terms for s in scenarios}) == 20


def rollout(env: NegotiationEnv, seed: int, actions: Sequence[int]) -> list[tuple[object, ...]]:
    observation, _ = env.reset(seed=seed)
    trajectory: list[tuple[object, ...]] = [tuple(observation)]
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        trajectory.append((tuple(observation), reward, terminated, truncated, info["illegal_move"]))
        if terminated:
            break
    return trajectory


def test_the_same_seed_and_moves_replay_the_same_negotiation() -> None:
    actions = [BuyerMove.HOLD, BuyerMove.CONCEDE_10, BuyerMove.CONCEDE_25, BuyerMove.ACCEPT] * 4
    for seed in range(5):
        assert rollout(NegotiationEnv(), seed, actions) == rollout(NegotiationEnv(), seed, actions)


def test_an_illegal_move_is_played_as_hold_and_flagged() -> None:
    above_limit = scenario(limit_share=0.6)  # the opening ask is above the buyer's limit
    env, twin = NegotiationEnv(), NegotiationEnv()
    _, info = env.reset(options={"scenario": above_limit})
    twin.reset(options={"scenario": above_limit})
    assert not info["action_mask"][BuyerMove.ACCEPT]
    hold_price = counter_price(state_of(env), BuyerMove.HOLD)

    observation, reward, terminated, _, info = env.step(BuyerMove.ACCEPT)
    twin_observation, twin_reward, twin_terminated, _, twin_info = twin.step(BuyerMove.HOLD)

    assert info["illegal_move"] is True
    assert twin_info["illegal_move"] is False
    buyer_turn = state_of(env).transcript[1]
    assert (buyer_turn.party, buyer_turn.move, buyer_turn.price) == (
        Party.BUYER,
        Move.COUNTER,
        hold_price,
    )
    assert state_of(env).outcome is not Outcome.DEAL
    np.testing.assert_array_equal(observation, twin_observation)
    assert (reward, terminated) == (twin_reward, twin_terminated)


def test_a_legal_move_is_not_flagged() -> None:
    env = NegotiationEnv()
    env.reset(options={"scenario": scenario(limit_share=2.0)})
    _, _, terminated, _, info = env.step(BuyerMove.ACCEPT)
    assert info["illegal_move"] is False
    assert terminated
    assert state_of(env).outcome is Outcome.DEAL


def test_accepting_at_once_earns_the_saving_against_the_limit() -> None:
    config = RewardConfig(no_deal_penalty=0.2, round_cost=0.01)
    env = NegotiationEnv(reward_config=config)
    env.reset(options={"scenario": scenario(limit_share=1.5)})
    ask, limit = state_of(env).last_ask, state_of(env).terms.buyer_limit
    _, reward, terminated, truncated, _ = env.step(BuyerMove.ACCEPT)
    assert (terminated, truncated) == (True, False)
    assert reward == pytest.approx((limit - ask) / limit - 0.01)


def test_walking_away_is_penalised_whether_or_not_the_sellers_floor_was_within_the_limit() -> None:
    """The simulation knows the floor, but the reward must not: the service cannot see it."""
    config = RewardConfig(no_deal_penalty=0.2, round_cost=0.01)
    env = NegotiationEnv(reward_config=config)
    _, info = env.reset(options={"scenario": scenario(limit_share=1.0)})
    assert info["reserve"] <= state_of(env).terms.buyer_limit
    _, reward, _, _, _ = env.step(BuyerMove.WALK_AWAY)
    assert reward == pytest.approx(-0.01 - 0.2)

    _, info = env.reset(options={"scenario": scenario(limit_share=0.3)})
    assert info["reserve"] > state_of(env).terms.buyer_limit
    _, reward, _, _, _ = env.step(BuyerMove.WALK_AWAY)
    assert reward == pytest.approx(-0.01 - 0.2)


def test_every_env_reward_is_the_services_step_reward_whatever_the_reserve() -> None:
    """The env pays exactly `step_reward` of the state it reached, deal possible or not."""
    config = RewardConfig(no_deal_penalty=0.2, round_cost=0.01)
    rng = np.random.default_rng(0)
    no_deals = set()
    for seed in range(60):
        env = NegotiationEnv(reward_config=config)
        limit_share = (0.6, 0.8, 1.0)[seed % 3]
        strategy = ("linear", "tit_for_tat", "hardliner", "touchy", "last_minute")[seed % 5]
        _, info = env.reset(options={"scenario": scenario(limit_share, strategy, seed)})
        terminated = False
        while not terminated:
            move = int(rng.choice(np.flatnonzero(info["action_mask"])))
            _, reward, terminated, _, info = env.step(move)
            assert reward == step_reward(state_of(env), config)
        if state_of(env).outcome is not Outcome.DEAL:
            assert reward == pytest.approx(-0.01 - 0.2)
            no_deals.add(info["reserve"] <= state_of(env).terms.buyer_limit)
    assert no_deals == {True, False}  # no-deals met both with and without a deal possible


def test_reset_plays_the_scenario_it_is_given() -> None:
    given = scenario(limit_share=0.9, strategy="tit_for_tat", seed=7)
    env = NegotiationEnv()
    _, info = env.reset(seed=3, options={"scenario": given})
    assert env.scenario == given
    assert info["strategy"] == "tit_for_tat"
    assert info["reserve"] == given.seller().reserve


@pytest.mark.parametrize("policy", ["legal", "any"])
def test_every_episode_ends_within_the_buyers_rounds(policy: str) -> None:
    env = NegotiationEnv()
    rng = np.random.default_rng(0)
    for seed in range(150):
        observation, info = env.reset(seed=seed)
        rounds = scenario_of(env).terms.max_rounds
        for _ in range(rounds):
            legal = np.flatnonzero(info["action_mask"])
            action = rng.choice(legal) if policy == "legal" else rng.integers(N_MOVES)
            observation, reward, terminated, truncated, info = env.step(action)
            assert env.observation_space.contains(observation)
            assert -1.0 <= reward <= 1.0
            assert truncated is False
            if terminated:
                break
        assert terminated, f"seed {seed}: no end after {rounds} buyer moves"
        with pytest.raises(RuntimeError, match="over"):
            env.step(BuyerMove.HOLD)


def test_stepping_before_reset_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="reset"):
        NegotiationEnv().step(BuyerMove.HOLD)


def test_the_environment_draws_only_its_strategies_and_rounds() -> None:
    env = NegotiationEnv(strategies=("boulware", "touchy"), max_rounds=4)
    for seed in range(30):
        _, info = env.reset(seed=seed)
        assert info["strategy"] in ("boulware", "touchy")
        assert scenario_of(env).terms.max_rounds == 4


def test_an_environment_without_strategies_is_refused() -> None:
    with pytest.raises(ValueError, match="strategy"):
        NegotiationEnv(strategies=())


def test_render_prints_the_transcript_and_outcome() -> None:
    env = NegotiationEnv(render_mode="ansi")
    assert env.render() is None
    env.reset(options={"scenario": scenario(limit_share=2.0)})
    env.step(BuyerMove.ACCEPT)
    text = env.render()
    assert text is not None
    lines = text.splitlines()
    assert "seller" in lines[0] and f"{state_of(env).asks[0]:.2f}" in lines[0]
    assert "buyer" in lines[1] and "accept" in lines[1]
    assert lines[-1] == "outcome: deal"
