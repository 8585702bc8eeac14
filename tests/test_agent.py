"""The DQN buyer: legal moves, propensities, learning, the served snapshot, model files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from haggler.config import DQNConfig
from haggler.core.env import NegotiationEnv
from haggler.core.features import N_MOVES, OBSERVATION_NAMES, OBSERVATION_SIZE, BuyerMove
from haggler.core.scenarios import play, scenario_suite
from haggler.core.sellers import ALL_STRATEGIES
from haggler.core.transitions import Transitions
from haggler.learning.dqn import CHECKPOINT_FORMAT, Batch, BuyerAgent
from haggler.policy.exploration import Exploration
from haggler.policy.snapshot import AgentBuyer, ModelFileError, masked_greedy

TARGET_MOVE = BuyerMove.CONCEDE_25


@pytest.fixture
def agent(tiny_config: DQNConfig) -> BuyerAgent:
    return BuyerAgent(tiny_config)


def env_inputs(count: int = 200) -> list[tuple[np.ndarray, np.ndarray]]:
    """(observation, action mask) pairs from real negotiations, ACCEPT legal and not."""
    env = NegotiationEnv()
    rng = np.random.default_rng(0)
    inputs: list[tuple[np.ndarray, np.ndarray]] = []
    seed = 0
    while len(inputs) < count:
        observation, info = env.reset(seed=seed)
        seed += 1
        done = False
        while not done and len(inputs) < count:
            inputs.append((observation, info["action_mask"]))
            move = rng.choice(np.flatnonzero(info["action_mask"]))
            observation, _, done, _, info = env.step(move)
    return inputs


def one_step_problem(size: int = 256, reward: float = 1.0) -> Transitions:
    """Every move ends the episode; TARGET_MOVE pays `reward`, every other move nothing."""
    observation = np.linspace(-0.5, 1.5, OBSERVATION_SIZE, dtype=np.float32)
    moves = np.arange(size, dtype=np.int64) % N_MOVES
    return Transitions(
        observation=np.tile(observation, (size, 1)),
        action_mask=np.ones((size, N_MOVES), dtype=bool),
        move=moves,
        reward=np.where(moves == TARGET_MOVE, reward, 0.0).astype(np.float32),
        next_observation=np.zeros((size, OBSERVATION_SIZE), dtype=np.float32),
        next_action_mask=np.ones((size, N_MOVES), dtype=bool),
        terminated=np.ones(size, dtype=bool),
    )


# -- acting -----------------------------------------------------------------------------------


def test_act_returns_only_legal_moves(agent: BuyerAgent) -> None:
    rng = np.random.default_rng(1)
    for observation, mask in env_inputs():
        assert mask[agent.act(observation, mask).move]
        assert mask[
            agent.act(observation, mask, exploration=Exploration("epsilon", 0.5), rng=rng).move
        ]
        random_mask = rng.random(N_MOVES) < 0.3
        random_mask[rng.integers(N_MOVES)] = True
        assert random_mask[agent.act(observation, random_mask).move]
        assert random_mask[
            agent.act(
                observation, random_mask, exploration=Exploration("epsilon", 1.0), rng=rng
            ).move
        ]


def test_act_never_takes_the_best_valued_move_when_it_is_illegal(agent: BuyerAgent) -> None:
    for observation, _ in env_inputs(50):
        q_values = agent.q_values(observation)
        mask = np.ones(N_MOVES, dtype=bool)
        mask[int(q_values.argmax())] = False
        decision = agent.act(observation, mask)
        assert mask[decision.move]
        assert decision.move == int(np.where(mask, q_values, -np.inf).argmax())


def test_greedy_decisions_have_propensity_one(agent: BuyerAgent) -> None:
    for observation, mask in env_inputs(50):
        decision = agent.act(observation, mask)
        assert decision.propensity == 1.0
        assert decision.move == masked_greedy(agent.q_values(observation), mask)


def test_epsilon_greedy_propensities_match_how_often_moves_are_taken(agent: BuyerAgent) -> None:
    observation, _ = env_inputs(1)[0]
    mask = np.array([False, True, True, True, False, True, True, False])
    greedy = agent.act(observation, mask).move
    rng = np.random.default_rng(123)
    draws = 10_000
    counts = dict.fromkeys(BuyerMove, 0)
    propensities: dict[BuyerMove, set[float]] = {move: set() for move in BuyerMove}
    for _ in range(draws):
        decision = agent.act(observation, mask, exploration=Exploration("epsilon", 0.3), rng=rng)
        counts[decision.move] += 1
        propensities[decision.move].add(decision.propensity)

    taken = {move for move, count in counts.items() if count}
    assert taken == {move for move in BuyerMove if mask[move]}
    assert all(len(propensities[move]) == 1 for move in taken), "one propensity per move"
    propensity = {move: propensities[move].pop() for move in taken}
    assert sum(propensity.values()) == pytest.approx(1.0)
    assert propensity[greedy] == pytest.approx(0.7 + 0.3 / 5)
    for move in taken:
        assert counts[move] / draws == pytest.approx(propensity[move], abs=0.015)


def test_exploration_is_reproducible_with_a_seeded_generator(agent: BuyerAgent) -> None:
    inputs = env_inputs(100)

    def decisions(seed: int) -> list[object]:
        rng = np.random.default_rng(seed)
        return [
            agent.act(o, m, exploration=Exploration("epsilon", 0.5), rng=rng) for o, m in inputs
        ]

    assert decisions(7) == decisions(7)
    assert decisions(7) != decisions(8)


def test_exploration_without_a_seeded_generator_is_refused(agent: BuyerAgent) -> None:
    observation, mask = env_inputs(1)[0]
    with pytest.raises(ValueError, match="random generator"):
        agent.act(observation, mask, exploration=Exploration("epsilon", 0.1))


def test_q_values_are_those_of_the_online_network(agent: BuyerAgent) -> None:
    observations = np.stack([o for o, _ in env_inputs(64)])
    served = agent.q_values(observations)
    assert served.shape == (64, N_MOVES)
    with torch.no_grad():
        expected = agent.q_network(torch.as_tensor(observations)).numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(agent.q_values(observations[0]), served[0], rtol=1e-5, atol=1e-6)


def test_the_same_seed_builds_the_same_network(tiny_config: DQNConfig) -> None:
    observations = np.stack([o for o, _ in env_inputs(16)])
    first = BuyerAgent(tiny_config).q_values(observations)
    second = BuyerAgent(tiny_config).q_values(observations)
    other = BuyerAgent(dataclasses.replace(tiny_config, seed=1)).q_values(observations)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)


def test_the_agent_plays_whole_negotiations_by_the_rules(agent: BuyerAgent) -> None:
    buyer = AgentBuyer(agent.snapshot)
    assert buyer.name == "agent"
    for scenario in scenario_suite(60, 4, ALL_STRATEGIES):
        state = play(scenario, buyer).state
        assert state.is_over
        assert all(bid <= scenario.terms.buyer_limit for bid in state.bids)


# -- learning ---------------------------------------------------------------------------------


def test_train_steps_returns_a_finite_loss_and_serves_the_new_weights(agent: BuyerAgent) -> None:
    observations = np.stack([o for o, _ in env_inputs(32)])
    agent.add_transitions(one_step_problem())
    assert agent.buffer_size == 256
    before = agent.q_values(observations).copy()
    version = agent.snapshot.version
    loss = agent.train_steps(5)
    assert np.isfinite(loss)
    assert loss >= 0
    assert agent.gradient_steps == 5
    assert agent.snapshot.version == version + 1
    assert not np.allclose(agent.q_values(observations), before)


def test_without_experience_there_is_nothing_to_train(agent: BuyerAgent) -> None:
    snapshot = agent.snapshot
    assert np.isnan(agent.train_steps(5))
    agent.add_transitions(one_step_problem(size=0))
    assert agent.buffer_size == 0
    agent.add_transitions(one_step_problem())
    assert np.isnan(agent.train_steps(0))
    assert agent.snapshot is snapshot
    assert agent.gradient_steps == 0


def anchor_problem(size: int = 64) -> Transitions:
    """Transitions told apart from `one_step_problem`'s by their observations (all 2.0)."""
    batch = one_step_problem(size, reward=-1.0)
    return batch._replace(observation=np.full_like(batch.observation, 2.0))


def minibatch_observations(agent: BuyerAgent, steps: int) -> list[torch.Tensor]:
    """Run `train_steps(steps)` and return each gradient step's minibatch observations."""
    seen: list[torch.Tensor] = []
    step = agent._gradient_step

    def recording(batch: Batch) -> float:
        seen.append(batch.observations.clone())
        return float(step(batch))

    agent._gradient_step = recording  # type: ignore[method-assign]
    assert np.isfinite(agent.train_steps(steps))
    return seen


def test_the_anchor_is_its_share_of_every_minibatch(agent: BuyerAgent) -> None:
    agent.add_transitions(one_step_problem())
    agent.anchor(anchor_problem(), 0.25)
    assert agent.anchor_buffer is not None and len(agent.anchor_buffer) == 64
    assert agent.buffer_size == 256  # the anchor is not in the live buffer
    minibatches = minibatch_observations(agent, 6)
    assert len(minibatches) == 6
    anchored = round(0.25 * agent.config.batch_size)
    for observations in minibatches:
        assert observations.shape[0] == agent.config.batch_size
        from_anchor = int((observations[:, 0] == 2.0).sum())
        assert from_anchor == anchored
    assert agent.gradient_steps == 6


def test_without_an_anchor_or_at_share_zero_minibatches_are_all_live(agent: BuyerAgent) -> None:
    agent.add_transitions(one_step_problem())
    for observations in minibatch_observations(agent, 3):
        assert not (observations[:, 0] == 2.0).any()
    agent.anchor(anchor_problem(), 0.0)
    for observations in minibatch_observations(agent, 3):
        assert observations.shape[0] == agent.config.batch_size
        assert not (observations[:, 0] == 2.0).any()


def test_the_anchor_alone_trains_nothing_and_a_share_of_one_is_refused(agent: BuyerAgent) -> None:
    agent.anchor(anchor_problem(), 0.25)
    assert np.isnan(agent.train_steps(5))  # live experience first: the anchor only steadies it
    assert agent.gradient_steps == 0
    for share in (1.0, -0.1):
        with pytest.raises(ValueError, match="share"):
            agent.anchor(anchor_problem(), share)


def test_the_served_snapshot_changes_only_when_published(agent: BuyerAgent) -> None:
    observations = np.stack([o for o, _ in env_inputs(32)])
    served = agent.q_values(observations).copy()
    agent.add_transitions(one_step_problem())
    with torch.no_grad():
        for parameter in agent.q_network.parameters():
            parameter.add_(0.5)
    np.testing.assert_array_equal(agent.q_values(observations), served)
    agent.publish()
    assert not np.allclose(agent.q_values(observations), served)


def test_the_snapshot_cannot_be_written_to(agent: BuyerAgent) -> None:
    with pytest.raises(ValueError, match="read-only"):
        agent.snapshot.weights[0][0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        agent.snapshot.version = 99  # type: ignore[misc]


def test_the_agent_learns_which_move_pays(agent: BuyerAgent) -> None:
    transitions = one_step_problem()
    agent.add_transitions(transitions)
    agent.train_steps(300)
    observation = transitions.observation[0]
    q_values = agent.q_values(observation)
    assert agent.act(observation, np.ones(N_MOVES, dtype=bool)).move is TARGET_MOVE
    assert q_values[TARGET_MOVE] == pytest.approx(1.0, abs=0.15)
    others = np.delete(q_values, TARGET_MOVE)
    assert np.abs(others).max() < 0.15
    # and when that move is not allowed, it picks another
    mask = np.ones(N_MOVES, dtype=bool)
    mask[TARGET_MOVE] = False
    assert agent.act(observation, mask).move is not TARGET_MOVE


def test_rewards_are_clipped_to_one(agent: BuyerAgent) -> None:
    transitions = one_step_problem(reward=5.0)
    agent.add_transitions(transitions)
    agent.train_steps(300)
    q_values = agent.q_values(transitions.observation[0])
    assert q_values[TARGET_MOVE] == pytest.approx(1.0, abs=0.15)


def test_the_agent_learns_to_wait_for_a_better_next_step(tiny_config: DQNConfig) -> None:
    # From A, HOLD leads to B where ACCEPT pays 1; ACCEPT in A pays 0.5 at once. With gamma
    # 0.98 holding is worth 0.98: the agent has to bootstrap through B to see it. In B, the
    # mask allows only ACCEPT and WALK_AWAY; the target must not use any other move's value.
    agent = BuyerAgent(tiny_config)
    a = np.full(OBSERVATION_SIZE, 0.2, dtype=np.float32)
    b = np.full(OBSERVATION_SIZE, 1.0, dtype=np.float32)
    b_mask = np.zeros(N_MOVES, dtype=bool)
    b_mask[[BuyerMove.ACCEPT, BuyerMove.WALK_AWAY]] = True
    rows = [
        (a, BuyerMove.ACCEPT, 0.5, b, True),
        (a, BuyerMove.HOLD, 0.0, b, False),
        (a, BuyerMove.WALK_AWAY, 0.0, b, True),
        (b, BuyerMove.ACCEPT, 1.0, a, True),
        (b, BuyerMove.WALK_AWAY, 0.0, a, True),
    ] * 60
    agent.add_transitions(
        Transitions(
            observation=np.stack([r[0] for r in rows]),
            action_mask=np.stack([b_mask if r[0] is b else np.ones(N_MOVES, bool) for r in rows]),
            move=np.array([r[1] for r in rows], dtype=np.int64),
            reward=np.array([r[2] for r in rows], dtype=np.float32),
            next_observation=np.stack([r[3] for r in rows]),
            next_action_mask=np.stack(
                [b_mask if r[3] is b else np.ones(N_MOVES, bool) for r in rows]
            ),
            terminated=np.array([r[4] for r in rows]),
        )
    )
    agent.train_steps(600)
    q_a = agent.q_values(a)
    assert q_a[BuyerMove.HOLD] == pytest.approx(tiny_config.gamma, abs=0.15)
    assert q_a[BuyerMove.ACCEPT] == pytest.approx(0.5, abs=0.15)
    legal_in_a = np.zeros(N_MOVES, dtype=bool)
    legal_in_a[[BuyerMove.ACCEPT, BuyerMove.HOLD, BuyerMove.WALK_AWAY]] = True
    assert agent.act(a, legal_in_a).move is BuyerMove.HOLD


# -- model files ------------------------------------------------------------------------------


@pytest.fixture
def trained(agent: BuyerAgent) -> BuyerAgent:
    agent.add_transitions(one_step_problem())
    agent.train_steps(20)
    return agent


def test_a_saved_model_loads_with_identical_q_values(
    trained: BuyerAgent, tiny_config: DQNConfig, tmp_path: Path
) -> None:
    observations = np.stack([o for o, _ in env_inputs(64)])
    path = trained.save_model(tmp_path / "models" / "buyer_agent.pth", negotiations=3)
    assert path.is_file()

    restored = BuyerAgent(tiny_config)
    restored.load_model(path)
    np.testing.assert_array_equal(restored.q_values(observations), trained.q_values(observations))
    assert restored.gradient_steps == trained.gradient_steps == 20
    assert restored.metadata["negotiations"] == 3
    # The model version (one per published update) is saved with the model and comes back.
    assert restored.model_version == trained.model_version == 1
    assert restored.snapshot.version == 1

    rebuilt = BuyerAgent.from_file(path)
    assert rebuilt.config == tiny_config
    np.testing.assert_array_equal(rebuilt.q_values(observations), trained.q_values(observations))


def test_loading_a_model_into_an_agent_that_has_learned_restores_it(
    trained: BuyerAgent, tiny_config: DQNConfig, tmp_path: Path
) -> None:
    observations = np.stack([o for o, _ in env_inputs(16)])
    path = trained.save_model(tmp_path / "checkpoint.pth")
    served = trained.q_values(observations).copy()
    trained.train_steps(30)
    assert not np.allclose(trained.q_values(observations), served)
    trained.load_model(path)
    np.testing.assert_array_equal(trained.q_values(observations), served)


def test_a_model_file_loads_with_weights_only(trained: BuyerAgent, tmp_path: Path) -> None:
    path = trained.save_model(tmp_path / "buyer_agent.pth", note="hello")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT
    assert payload["metadata"]["note"] == "hello"
    assert payload["observation_names"] == list(OBSERVATION_NAMES)


def test_saving_leaves_no_temporary_files(trained: BuyerAgent, tmp_path: Path) -> None:
    path = tmp_path / "buyer_agent.pth"
    trained.save_model(path)
    trained.train_steps(5)
    trained.save_model(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["buyer_agent.pth"]


def test_a_failed_save_keeps_the_old_model_and_no_temporary_file(
    trained: BuyerAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "buyer_agent.pth"
    trained.save_model(path)
    old = path.read_bytes()

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    trained.train_steps(5)
    with pytest.raises(OSError, match="No space"):
        trained.save_model(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["buyer_agent.pth"]


def test_loading_a_missing_file_is_a_clear_error(agent: BuyerAgent, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(ModelFileError, match="not found") as error:
        agent.load_model(missing)
    assert str(missing) in str(error.value)
    with pytest.raises(ModelFileError, match="not found"):
        BuyerAgent.from_file(missing)
    with pytest.raises(ModelFileError, match="not found"):
        BuyerAgent.from_file(tmp_path)  # a folder is not a model file


@pytest.mark.parametrize(
    "content",
    [b"", np.random.default_rng(0).bytes(4096), b"PK\x03\x04 not really a zip"],
    ids=["empty", "random-bytes", "zip-header"],
)
def test_loading_a_corrupt_file_is_a_clear_error(
    agent: BuyerAgent, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="not a readable model file") as error:
        BuyerAgent.from_file(path)
    assert str(path) in str(error.value)
    with pytest.raises(ModelFileError):
        agent.load_model(path)


@pytest.mark.parametrize(
    "payload",
    [
        {"weights": torch.zeros(3)},
        torch.zeros(3),
        [1, 2, 3],
        {"format": "some-other-agent", "q_network": {}},
    ],
    ids=["dict", "tensor", "list", "other-format"],
)
def test_loading_a_torch_file_that_is_not_a_haggler_checkpoint_is_a_clear_error(
    tmp_path: Path, payload: object
) -> None:
    path = tmp_path / "other.pth"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="not a haggler buyer-agent checkpoint"):
        BuyerAgent.from_file(path)


def test_a_checkpoint_of_another_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.pth"
    torch.save({"format": CHECKPOINT_FORMAT, "format_version": 99}, path)
    with pytest.raises(ModelFileError, match="format 99"):
        BuyerAgent.from_file(path)


def test_a_checkpoint_trained_on_other_observations_is_refused(
    trained: BuyerAgent, tmp_path: Path
) -> None:
    path = tmp_path / "old.pth"
    trained.save_model(path)
    payload = torch.load(path, map_location="cpu", weights_only=False)
    payload["observation_names"] = payload["observation_names"][:-1]
    payload["torch_version"] = str(payload["torch_version"])
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="other observations"):
        BuyerAgent.from_file(path)


def test_loading_a_network_of_another_shape_in_place_is_refused(
    trained: BuyerAgent, tmp_path: Path
) -> None:
    path = trained.save_model(tmp_path / "small.pth")
    other = BuyerAgent(DQNConfig(hidden_sizes=(16, 16)))
    with pytest.raises(ModelFileError, match="from_file"):
        other.load_model(path)
    assert BuyerAgent.from_file(path).config.hidden_sizes == trained.config.hidden_sizes


def test_the_optimiser_state_comes_back_with_the_model(
    trained: BuyerAgent, tiny_config: DQNConfig, tmp_path: Path
) -> None:
    path = trained.save_model(tmp_path / "m.pth")
    restored = BuyerAgent(tiny_config)
    restored.load_model(path)
    saved_state = trained.optimizer.state_dict()["state"]
    loaded_state = restored.optimizer.state_dict()["state"]
    assert saved_state.keys() == loaded_state.keys() and saved_state
    for key, moments in saved_state.items():
        torch.testing.assert_close(loaded_state[key]["exp_avg"], moments["exp_avg"])


def test_a_refused_checkpoint_changes_nothing(
    trained: BuyerAgent, agent: BuyerAgent, tmp_path: Path
) -> None:
    payload = torch.load(trained.save_model(tmp_path / "good.pth"), weights_only=True)
    payload["optimizer"] = {"state": {}, "param_groups": []}  # damaged optimiser state
    torch.save(payload, tmp_path / "damaged.pth")
    observations = np.stack([o for o, _ in env_inputs(16)])
    before = agent.q_values(observations).copy()
    weights = [p.detach().clone() for p in agent.q_network.parameters()]
    with pytest.raises(ModelFileError, match="damaged checkpoint"):
        agent.load_model(tmp_path / "damaged.pth")
    np.testing.assert_array_equal(agent.q_values(observations), before)
    for old, new in zip(weights, agent.q_network.parameters(), strict=True):
        torch.testing.assert_close(old, new.detach())


def test_a_version_number_never_names_two_sets_of_weights(
    agent: BuyerAgent, tmp_path: Path
) -> None:
    agent.add_transitions(one_step_problem())
    agent.train_steps(2)
    checkpoint = agent.save_model(tmp_path / "v1.pth")
    assert agent.model_version == 1
    agent.train_steps(2)
    agent.train_steps(2)
    assert agent.model_version == 3
    agent.load_model(checkpoint)
    assert agent.model_version == agent.snapshot.version == 1  # serving the old weights again
    agent.train_steps(2)
    assert agent.model_version == 4, "training on from a rollback gets a new number"
    agent.save_model(tmp_path / "v4.pth")
    assert BuyerAgent.from_file(tmp_path / "v4.pth").latest_version == 4


def test_a_decision_reports_the_version_that_made_it(agent: BuyerAgent) -> None:
    observation, mask = env_inputs(1)[0]
    assert agent.act(observation, mask).model_version == agent.snapshot.version == 0
    agent.add_transitions(one_step_problem())
    agent.train_steps(1)
    rng = np.random.default_rng(0)
    assert (
        agent.act(observation, mask, exploration=Exploration("epsilon", 0.5), rng=rng).model_version
        == 1
    )
