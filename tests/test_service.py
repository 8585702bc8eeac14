"""NegotiationService from Python: negotiates, logs propensities, and trains when enabled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from haggler.config import DQNConfig, Settings
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
    assert service.agent.gradient_steps == 0
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
    assert service.agent.gradient_steps == sum(min(len(r.decisions), 5) for r in records)
    assert service.agent.buffer_size == moves
    assert [c.negotiations for c in list_checkpoints(tmp_path / "models" / "checkpoints")] == [
        2,
        4,
        6,
    ]
    assert BuyerAgent.from_file(model_path).metadata["negotiations"] == 6


def test_the_buyer_never_pays_above_its_limit(model_path: Path, tmp_path: Path) -> None:
    service = NegotiationService(
        model_path, enable_training=True, settings=settings(tmp_path, epsilon=1.0), seed=1
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
