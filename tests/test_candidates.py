"""A candidate against the serving model, over the store: judged as the gate would (a stored
version or a snapshot, the same figures every time, nothing written), or put to an A/B test."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haggler.config import DQNConfig
from haggler.learning.dqn import BuyerAgent
from haggler.policy.snapshot import PolicySnapshot
from haggler.safety import candidates
from haggler.safety.promotion import GateConfig
from haggler.store import base as store
from haggler.store import experiments, versions
from haggler.store import snapshots as snapshot_store
from haggler.store.database import session_factory

FAST = GateConfig(suite_episodes=40, resamples=200)


def snapshot(seed: int, version: int) -> PolicySnapshot:
    agent = BuyerAgent(DQNConfig(hidden_sizes=(32,), seed=seed))
    return dataclasses.replace(agent.snapshot, version=version)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """A store where version 1 serves and version 2, another network, is a stored candidate."""
    sessions = session_factory(engine)
    versions.ensure_serving(sessions, lambda: snapshot(0, 1))
    with sessions() as session:
        experiments.add_candidate(
            snapshot(1, 2).to_bytes(),
            session=session,
            version=2,
            negotiations=0,
            status="candidate",
            reason="stored for the test",
            evaluation=None,
        )
        session.commit()
    return sessions


def drop_weights(sessions: sessionmaker[Session], version: int) -> None:
    with sessions() as session:
        protect = [v for v in (1, 2) if v != version]
        snapshot_store.forget_old_weights(session=session, keep=0, protect=protect)
        session.commit()


def test_a_stored_version_is_judged_against_the_serving_one(
    sessions: sessionmaker[Session],
) -> None:
    judged = candidates.judge_against_serving(sessions, 2, FAST)
    assert (judged.candidate.version, judged.champion.version) == (2, 1)
    assert judged.decision.figures["candidate_version"] == 2
    again = candidates.judge_against_serving(sessions, 2, FAST)
    figures, figures_again = dict(judged.decision.figures), dict(again.decision.figures)
    figures.pop("seconds"), figures_again.pop("seconds")
    assert figures == figures_again  # the bootstrap is seeded with the candidate's version
    with sessions() as session:  # judged, not recorded
        assert snapshot_store.get_snapshot(2, session=session).evaluation is None


def test_a_snapshot_as_good_as_the_champion_passes(sessions: sessionmaker[Session]) -> None:
    judged = candidates.judge_against_serving(sessions, snapshot(0, 0), FAST)
    assert judged.decision.passed, judged.decision.reason
    assert judged.champion.version == 1


def test_what_cannot_be_judged_is_not_found(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(store.NotFound, match="no model version 9"):
        candidates.judge_against_serving(sessions, 9, FAST)
    drop_weights(sessions, 2)
    with pytest.raises(candidates.NoWeights, match="model version 2 has no weights left"):
        candidates.judge_against_serving(sessions, 2, FAST)


def test_nothing_is_judged_before_a_model_serves(engine: Engine) -> None:
    with pytest.raises(candidates.NoChampion, match="no model serves yet"):
        candidates.judge_against_serving(session_factory(engine), snapshot(0, 0), FAST)


def test_an_ab_test_puts_a_stored_version_against_the_serving_one(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        with pytest.raises(store.Conflict, match="model version 1 is the one serving"):
            candidates.start_ab_test(1, 0.2, session=session)
        with pytest.raises(store.NotFound, match="no model version 7"):
            candidates.start_ab_test(7, 0.2, session=session)
        test = candidates.start_ab_test(2, 0.3, session=session)
        session.commit()
    assert (test.champion_version, test.challenger_version, test.split) == (1, 2, 0.3)
    with sessions() as session, pytest.raises(store.Conflict):
        candidates.start_ab_test(2, 0.3, session=session)  # one test at a time


def test_a_version_without_weights_is_not_put_to_a_test(sessions: sessionmaker[Session]) -> None:
    drop_weights(sessions, 2)
    with sessions() as session, pytest.raises(candidates.NoWeights):
        candidates.start_ab_test(2, 0.3, session=session)
