"""The safe-learning side of the store: candidates, A/B tests, the monitor's mark, the logged
decisions off-policy evaluation reads; on SQLite and (with a URL) PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.orm import Session

from haggler.core.features import N_MOVES, OBSERVATION_SIZE
from haggler.core.negotiation import Action, Move, Party, Terms, apply_move, open_negotiation
from haggler.core.transitions import LoggedDecision
from haggler.store import base as store
from haggler.store import catalogue as catalogue_store
from haggler.store import counters, experiments
from haggler.store import negotiations as negotiation_store
from haggler.store import snapshots as snapshot_store

WEIGHTS = b"weights"


def publish(session: Session, version: int, expected: int | None) -> None:
    snapshot_store.publish_snapshot(
        WEIGHTS,
        session=session,
        version=version,
        expected_serving=expected,
        source="training",
        negotiations=0,
    )


def finished_negotiation(session: Session, *, accept: bool, version: int = 1) -> int:
    """A stored negotiation of one buyer decision: accept the ask (a deal) or walk away."""
    catalogue_store.seed_catalogue(session=session)
    state = open_negotiation(Terms(100.0, 90.0, max_rounds=5), 80.0)
    negotiation_id = negotiation_store.create_negotiation(
        state,
        session=session,
        product_id=1,
        seller=negotiation_store.SellerInfo("external"),
        model_version=1,
    )
    after = apply_move(state, Party.BUYER, Action(Move.ACCEPT if accept else Move.WALK_AWAY))
    decision = LoggedDecision(
        round=1,
        observation=np.zeros(OBSERVATION_SIZE, dtype=np.float32),
        action_mask=np.ones(N_MOVES, dtype=bool),
        move=0 if accept else 1,
        propensity=0.75,
        model_version=version,
        reward=0.3 if accept else -0.5,
    )
    negotiation_store.record_progress(
        negotiation_id,
        state,
        after,
        session=session,
        model_version=version,
        decisions=[decision],
        reward=decision.reward,
    )
    return negotiation_id


def test_a_candidate_is_stored_without_serving_and_promoted_by_compare_and_swap(
    session: Session,
) -> None:
    publish(session, 1, None)
    experiments.add_candidate(
        WEIGHTS,
        session=session,
        version=2,
        negotiations=10,
        status="candidate",
        reason="passed",
        evaluation={"surplus": 0.4},
    )
    assert snapshot_store.serving_version(session=session) == 1
    with pytest.raises(store.Conflict):
        experiments.promote(2, expected_serving=5, reason="won", session=session)
    experiments.promote(2, expected_serving=1, reason="won", session=session)
    session.commit()
    assert snapshot_store.serving_version(session=session) == 2
    stored = snapshot_store.get_snapshot(2, session=session)
    assert (stored.status, stored.reason, stored.evaluation) == (
        "promoted",
        "won",
        {"surplus": 0.4},
    )
    with pytest.raises(store.Conflict):  # a version number names one set of weights
        experiments.add_candidate(
            WEIGHTS,
            session=session,
            version=2,
            negotiations=10,
            status="rejected",
            reason="no",
            evaluation=None,
        )


def test_one_ab_test_runs_at_a_time_and_ends_once(session: Session) -> None:
    test = experiments.start_ab_test(1, 2, 0.25, session=session)
    running = experiments.running_ab_test(session=session)
    assert running is not None and (running.id, running.challenger_version) == (test.id, 2)
    with pytest.raises(store.Conflict, match="running already"):
        experiments.start_ab_test(1, 3, 0.25, session=session)
    ended = experiments.end_ab_test(
        test.id, session=session, status="rejected", decided_by="rule", reason="worse"
    )
    assert (ended.status, ended.decided_by, ended.reason) == ("rejected", "rule", "worse")
    assert ended.ended_at is not None
    with pytest.raises(store.Conflict, match="not running"):
        experiments.end_ab_test(
            test.id, session=session, status="promoted", decided_by="operator", reason="late"
        )
    assert experiments.running_ab_test(session=session) is None
    with pytest.raises(store.NotFound):
        experiments.get_ab_test(99, session=session)


def test_arms_and_outcomes_are_read_back_per_test_and_arm(session: Session) -> None:
    ids = [finished_negotiation(session, accept=i % 2 == 0) for i in range(6)]
    test = experiments.start_ab_test(1, 2, 0.5, session=session)
    for i in ids[3:]:
        experiments.assign_arm(
            i, ab_test_id=test.id, arm="challenger", model_version=2, session=session
        )
    session.commit()
    challenger = experiments.finished_outcomes(
        session=session, limit=100, ab_test_id=test.id, arm="challenger"
    )
    assert [o.id for o in challenger] == ids[3:]
    assert all(o.model_version == 2 for o in challenger)
    champion_side = experiments.finished_outcomes(session=session, limit=100, champion_only=True)
    assert [o.id for o in champion_side] == ids[:3]
    window = experiments.finished_outcomes(session=session, limit=2, after_id=ids[0])
    assert [o.id for o in window] == ids[4:]  # the newest two, oldest first
    assert [o.outcome for o in window] == ["deal", "buyer_walked"]
    assert experiments.latest_finished_id(session=session) == ids[-1]


def test_logged_episodes_carry_each_decision_with_its_propensity_and_reward(
    session: Session,
) -> None:
    finished_negotiation(session, accept=True)
    finished_negotiation(session, accept=False)
    session.commit()
    first, second = experiments.logged_episodes(session=session, limit=10)
    assert first.moves.tolist() == [0] and second.moves.tolist() == [1]
    assert first.propensities.tolist() == [0.75]
    assert (first.rewards.tolist(), second.rewards.tolist()) == ([0.3], [-0.5])
    assert first.observations.shape == (1, OBSERVATION_SIZE)
    assert first.action_masks.shape == (1, N_MOVES)
    [newest] = experiments.logged_episodes(session=session, limit=1)
    assert newest.moves.tolist() == [1]


def test_the_monitor_mark_survives_and_protects_the_known_good_weights(
    session: Session,
) -> None:
    assert experiments.monitor_mark(session=session) == experiments.MonitorMark(None, 0, 0)
    experiments.set_monitor_mark(experiments.MonitorMark(3, 40, 55), session=session)
    session.commit()
    assert experiments.monitor_mark(session=session) == experiments.MonitorMark(3, 40, 55)
    publish(session, 1, None)
    for version in range(2, 8):
        publish(session, version, version - 1)
    snapshot_store.forget_old_weights(
        session=session, keep=2, protect=experiments.protected_versions(session=session)
    )
    kept = {v for v in range(1, 8) if snapshot_store.get_snapshot(v, session=session).weights}
    assert kept == {3, 6, 7}  # the newest two, and the known good one


def test_the_store_itself_refuses_a_second_running_test(session: Session) -> None:
    from datetime import UTC, datetime

    from sqlalchemy.exc import IntegrityError

    from haggler.store.tables import ABTestRow

    experiments.start_ab_test(1, 2, 0.5, session=session)
    session.commit()
    # As if another process had checked for a running test at the same moment.
    session.add(
        ABTestRow(
            champion_version=1,
            challenger_version=3,
            split=0.5,
            status="running",
            started_at=datetime.now(UTC),
        )
    )
    with pytest.raises(IntegrityError):
        session.flush()


def test_what_serving_processes_follow_is_read_in_one_statement(session: Session) -> None:
    assert snapshot_store.followed(session=session) == snapshot_store.Followed(
        None, False, None, None
    )
    counters.set_counter(counters.SERVING_VERSION, 4, session=session)
    counters.set_counter(counters.TRAINING_ENABLED, 1, session=session)
    test = experiments.start_ab_test(4, 5, 0.25, session=session)
    assert snapshot_store.followed(session=session) == snapshot_store.Followed(4, True, test.id, 5)
    experiments.end_ab_test(
        test.id, session=session, status="rejected", decided_by="rule", reason="worse"
    )
    counters.set_counter(counters.TRAINING_ENABLED, 0, session=session)
    assert snapshot_store.followed(session=session) == snapshot_store.Followed(4, False, None, None)
