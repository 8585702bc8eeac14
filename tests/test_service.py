"""NegotiationService from Python: negotiates, logs propensities, and trains when enabled."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from haggler.config import DQNConfig, Settings
from haggler.core.features import OBSERVATION_SIZE, BuyerMove
from haggler.core.negotiation import Outcome
from haggler.learning.checkpoints import list_checkpoints
from haggler.learning.dqn import BuyerAgent
from haggler.policy.snapshot import ModelFileError
from haggler.serving.service import NegotiationService


@pytest.fixture
def model_path(tiny_config: DQNConfig, tmp_path: Path) -> Path:
    return BuyerAgent(tiny_config).save_model(tmp_path / "models" / "buyer_agent.pth")


def settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "checkpoint_dir": tmp_path / "models" / "checkpoints",
        "save_interval": 2,
        "keep_checkpoints": 5,
        "epsilon": 0.3,
        # The replay anchor's simulated negotiations (1,000 by default, seconds) kept few.
        "replay_anchor_negotiations": 20,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_without_training_the_agent_is_greedy_and_never_learns(
    model_path: Path, tmp_path: Path
) -> None:
    service = NegotiationService(model_path, settings=settings(tmp_path))
    record = service.negotiate(product="Cordless drill 18 V", buyer_limit=130, seller="linear")
    service.close()
    assert record.state.is_over
    assert all(d.propensity == 1.0 for d in record.decisions)
    assert service.agent is not None and service.agent.gradient_steps == 0
    assert not (tmp_path / "models" / "checkpoints").exists()


def test_with_training_it_explores_logs_propensities_learns_and_checkpoints(
    model_path: Path, tmp_path: Path
) -> None:
    service = NegotiationService(
        model_path, enable_training=True, settings=settings(tmp_path, epsilon=0.9), seed=3
    )
    records = [
        service.negotiate(product="Cordless drill 18 V", buyer_limit=130, seller="tit_for_tat")
        for _ in range(6)
    ]
    assert service.learner is not None and service.learner.wait_idle(30)
    service.close()
    propensities = [d.propensity for r in records for d in r.decisions]
    assert all(0 < p <= 1 for p in propensities)
    assert any(p < 0.5 for p in propensities), "most moves explore at epsilon 0.9"
    moves = sum(len(r.decisions) for r in records)
    assert service.agent is not None
    assert service.agent.gradient_steps == sum(min(len(r.decisions), 5) for r in records)
    assert service.agent.buffer_size == moves
    assert [c.negotiations for c in list_checkpoints(tmp_path / "models" / "checkpoints")] == [
        2,
        4,
        6,
    ]
    assert BuyerAgent.from_file(model_path).metadata["negotiations"] == 6


ENDING_MOVES = (BuyerMove.ACCEPT, BuyerMove.WALK_AWAY)


def explored(
    model_path: Path, tmp_path: Path, **overrides: object
) -> list[tuple[BuyerMove, float]]:
    """Every buyer decision (move, propensity) of 20 negotiations with training on."""
    service = NegotiationService(
        model_path, enable_training=True, settings=settings(tmp_path, **overrides), seed=3
    )
    strategies = ["tit_for_tat", "linear", "conceder", "boulware", "hardliner"]
    records = [
        service.negotiate(
            product="Cordless drill 18 V",
            buyer_limit=130,
            seller=strategies[seed % len(strategies)],
            seller_seed=seed,
        )
        for seed in range(20)
    ]
    assert service.learner is not None and service.learner.wait_idle(30)
    service.close()
    return [(BuyerMove(d.move), d.propensity) for r in records for d in r.decisions]


def test_by_default_training_explores_only_among_counter_offers(
    model_path: Path, tmp_path: Path
) -> None:
    assert Settings().exploration == "safe"
    decisions = explored(model_path, tmp_path, epsilon=0.9)
    endings = [p for move, p in decisions if move in ENDING_MOVES]
    counters = [p for move, p in decisions if move not in ENDING_MOVES]
    # Accepting or walking away is only ever the greedy move, never an exploratory one.
    assert endings and all(p == 1.0 for p in endings)
    assert any(p < 0.5 for p in counters), "most counter-offers explore at epsilon 0.9"


def test_epsilon_exploration_also_accepts_and_walks_away_at_random(
    model_path: Path, tmp_path: Path
) -> None:
    decisions = explored(model_path, tmp_path, epsilon=0.9, exploration="epsilon")
    assert any(move in ENDING_MOVES and p < 0.5 for move, p in decisions)


def test_turning_training_on_replays_simulated_experience_in_every_minibatch(
    model_path: Path, tmp_path: Path
) -> None:
    service = NegotiationService(model_path, settings=settings(tmp_path))
    assert service.agent is not None and service.agent.anchor_buffer is None
    service.set_training(True)
    agent = service.agent
    anchor = agent.anchor_buffer
    assert anchor is not None and len(anchor) >= 20  # at least a move per negotiation
    assert agent.anchor_share == 0.5
    drawn: list[int] = []  # transitions each `train_steps` call draws from the anchor
    sample = anchor.sample

    def counted(size: int) -> object:
        drawn.append(size)
        return sample(size)

    anchor.sample = counted
    records = [
        service.negotiate(product="Cordless drill 18 V", buyer_limit=130, seller="linear")
        for _ in range(3)
    ]
    assert service.learner is not None and service.learner.wait_idle(30)
    steps = sum(min(len(r.decisions), 5) for r in records)
    assert agent.gradient_steps == steps
    assert sum(drawn) == steps * round(0.5 * agent.config.batch_size)
    assert agent.buffer_size == sum(len(r.decisions) for r in records)  # the live buffer only
    service.set_training(False)
    service.set_training(True)  # played once per agent, not again
    assert agent.anchor_buffer is anchor
    service.close()


def test_with_a_replay_share_of_zero_only_live_experience_is_replayed(
    model_path: Path, tmp_path: Path
) -> None:
    service = NegotiationService(
        model_path, enable_training=True, settings=settings(tmp_path, replay_anchor_share=0.0)
    )
    record = service.negotiate(product="Cordless drill 18 V", buyer_limit=130, seller="linear")
    assert service.learner is not None and service.learner.wait_idle(30)
    service.close()
    assert service.agent is not None
    assert service.agent.anchor_buffer is None
    assert service.agent.gradient_steps == min(len(record.decisions), 5)


@pytest.mark.parametrize("exploration", ["safe", "epsilon"])
def test_the_buyer_never_pays_above_its_limit(
    model_path: Path, tmp_path: Path, exploration: str
) -> None:
    service = NegotiationService(
        model_path,
        enable_training=True,
        settings=settings(tmp_path, epsilon=1.0, exploration=exploration),
        seed=1,
    )
    for seed in range(30):
        record = service.negotiate(
            product="Hard hat, EN 397", buyer_limit=15.0, seller="hardliner", seller_seed=seed
        )
        if record.state.outcome is Outcome.DEAL:
            assert record.state.deal_price is not None and record.state.deal_price <= 15.0
    service.close()


def test_transitions_chain_each_decision_to_the_next(model_path: Path, tmp_path: Path) -> None:
    service = NegotiationService(model_path, settings=settings(tmp_path))
    record = service.negotiate(
        product="Cordless drill 18 V", buyer_limit=150, seller="reciprocal_steps", seller_seed=4
    )
    service.close()
    batch = record.transitions()
    n = len(record.decisions)
    assert batch.observation.shape[0] == n
    np.testing.assert_array_equal(batch.next_observation[:-1], batch.observation[1:])
    assert batch.terminated.tolist() == [False] * (n - 1) + [True]
    assert float(batch.reward.sum()) == pytest.approx(sum(record.rewards))


def test_a_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="model file not found"):
        NegotiationService(tmp_path / "none.pth", settings=settings(tmp_path))


def test_an_unknown_product_or_seller_is_refused(model_path: Path, tmp_path: Path) -> None:
    service = NegotiationService(model_path, settings=settings(tmp_path))
    with pytest.raises(ValueError, match="unknown product"):
        service.negotiate(product="Unicorn", buyer_limit=10)
    with pytest.raises(ValueError, match="unknown seller strategy"):
        service.negotiate(product="Hard hat, EN 397", buyer_limit=10, seller="nobody")
    service.close()


def test_every_logged_decision_names_the_model_version_that_made_it(
    model_path: Path, tmp_path: Path
) -> None:
    service = NegotiationService(
        model_path, enable_training=True, settings=settings(tmp_path), seed=5
    )
    first = service.negotiate(product="Cordless drill 18 V", buyer_limit=130, seller="linear")
    assert service.learner is not None and service.learner.wait_idle(30)
    second = service.negotiate(product="Cordless drill 18 V", buyer_limit=130, seller="linear")
    service.close()
    assert {d.model_version for d in first.decisions} == {0}
    assert {d.model_version for d in second.decisions} == {1}


def test_a_promotion_warmup_serves_the_starting_model_until_it_has_learned_enough(
    model_path: Path, tmp_path: Path
) -> None:
    """PROMOTION_WARMUP=3: the learner trains from the first negotiation on, but its weights
    serve only once it has learned from three; until then every decision is the start's."""
    service = NegotiationService(
        model_path, enable_training=True, settings=settings(tmp_path, promotion_warmup=3), seed=5
    )
    assert service.learner is not None and service.agent is not None
    start = service.snapshot
    probe = np.linspace(0.0, 1.0, OBSERVATION_SIZE, dtype=np.float32)
    records = []
    for learned in range(1, 4):
        records.append(
            service.negotiate(product="Cordless drill 18 V", buyer_limit=130, seller="linear")
        )
        assert service.learner.wait_idle(30)
        assert service.learner.status.negotiations == learned
        assert service.agent.gradient_steps > 0  # learning all along
        if learned < 3:
            assert service.snapshot is start
            assert not np.array_equal(service.agent.snapshot.q_values(probe), start.q_values(probe))
    learned_version = service.snapshot.version
    assert learned_version > start.version
    assert service.snapshot is service.agent.snapshot
    after = service.negotiate(product="Cordless drill 18 V", buyer_limit=130, seller="linear")
    service.close()
    assert {d.model_version for r in records for d in r.decisions} == {start.version}
    assert {d.model_version for d in after.decisions} == {learned_version}


def test_a_restore_during_the_warmup_serves_the_restored_checkpoint_at_once(
    model_path: Path, tmp_path: Path
) -> None:
    """An operator's restore is not held back by PROMOTION_WARMUP: it serves from the next move."""
    service = NegotiationService(
        model_path, enable_training=True, settings=settings(tmp_path, promotion_warmup=100), seed=5
    )
    assert service.learner is not None and service.agent is not None
    start = service.snapshot
    other = BuyerAgent(dataclasses.replace(service.agent.config, seed=99))
    checkpoint = other.save_model(tmp_path / "other.pth")
    service.restore(checkpoint)
    probe = np.linspace(0.0, 1.0, OBSERVATION_SIZE, dtype=np.float32)
    np.testing.assert_array_equal(service.snapshot.q_values(probe), other.snapshot.q_values(probe))
    assert not np.array_equal(service.snapshot.q_values(probe), start.q_values(probe))
    service.close()
