"""The store: migrations, the repository, on SQLite and (when a URL is given) on PostgreSQL.

Set HAGGLER_TEST_POSTGRES_URL (for example postgresql://postgres@127.0.0.1:5432/test) to run
every test here on PostgreSQL too; `.ci/run` does.
"""

from __future__ import annotations

import functools
import io
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text, update
from sqlalchemy.orm import Session, sessionmaker

from haggler.config import DQNConfig
from haggler.core.catalogue import SEED_CATALOGUE, Product
from haggler.core.features import (
    MOVE_NAMES,
    N_MOVES,
    OBSERVATION_LAYOUT,
    OBSERVATION_NAMES,
    OBSERVATION_SIZE,
)
from haggler.core.negotiation import Action, Outcome, Party, Terms, apply_move, open_negotiation
from haggler.core.transitions import LoggedDecision
from haggler.learning.dqn import BuyerAgent
from haggler.policy.snapshot import PolicySnapshot
from haggler.store import base as store
from haggler.store import catalogue as catalogue_store
from haggler.store import counters, experiments, maintenance, versions
from haggler.store import experiences as experience_store
from haggler.store import metrics as metric_store
from haggler.store import negotiations as negotiation_store
from haggler.store import snapshots as snapshot_store
from haggler.store.database import make_engine, migrate, session_factory
from haggler.store.tables import Base, CounterRow, DecisionRow, NegotiationRow


def test_migrations_create_exactly_the_tables_the_code_uses(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    assert {"products", "negotiations", "turns", "decisions", "counters"} <= set(
        inspect(engine).get_table_names()
    )


def test_migrating_twice_changes_nothing(engine: Engine, session: Session) -> None:
    catalogue_store.seed_catalogue(session=session)
    session.commit()
    migrate(engine)
    assert len(catalogue_store.list_products(session=session)) == len(SEED_CATALOGUE)


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'deep' / 'folder' / 'h.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


@pytest.fixture
def busy_log(tmp_path: Path) -> Iterator[tuple[Engine, sqlite3.Connection, sqlite3.Connection]]:
    """An SQLite store whose log holds 300 writes, a writer that never folds the log itself,
    and a reader."""
    path = tmp_path / "h.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint=0")  # only the checkpoint under test folds the log
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for i in range(300):
        writer.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (f"c{i}", i))
    yield engine, writer, reader
    writer.close()
    reader.close()
    engine.dispose()


def test_folding_the_log_lets_it_start_over_although_a_read_was_running(
    busy_log: tuple[Engine, sqlite3.Connection, sqlite3.Connection],
) -> None:
    """Under steady traffic some read is always running when the learner folds the log: the
    log must still start over, or it grows until a serving process folds it in a request."""
    engine, writer, reader = busy_log
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM counters").fetchone()  # a read of the log as it was
    writer.execute("UPDATE counters SET value = value + 1")  # written after the read began
    ending = threading.Timer(0.2, lambda: reader.execute("COMMIT"))
    ending.start()
    with session_factory(engine)() as session:
        frames = maintenance.checkpoint_write_ahead_log(session=session, wait_ms=5000)
    assert frames > maintenance.WAL_RESTART_FRAMES
    ending.join()
    writer.execute("INSERT INTO counters (name, value) VALUES ('after', 1)")
    log_frames = writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    assert log_frames <= 4  # the log started over: only the last write is in it


def test_a_long_read_makes_folding_the_log_give_up_rather_than_hold_writers(
    busy_log: tuple[Engine, sqlite3.Connection, sqlite3.Connection],
) -> None:
    engine, writer, reader = busy_log
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM counters").fetchone()  # a read that outlasts the fold
    with session_factory(engine)() as session:
        started = time.monotonic()
        assert (
            maintenance.checkpoint_write_ahead_log(session=session) > maintenance.WAL_RESTART_FRAMES
        )
        assert time.monotonic() - started < 1.0  # not the usual 5 s wait for a lock
        assert session.execute(text("PRAGMA busy_timeout")).scalar_one() == 5000  # as it was
    writer.execute("INSERT INTO counters (name, value) VALUES ('after', 1)")  # writers go on
    reader.execute("COMMIT")


def test_the_seed_catalogue_goes_in_once_and_prices_stay_exact(session: Session) -> None:
    assert catalogue_store.seed_catalogue(session=session) == len(SEED_CATALOGUE)
    assert catalogue_store.seed_catalogue(session=session) == 0
    session.commit()
    stored = catalogue_store.list_products(session=session)
    assert [p.product for p in stored] == list(SEED_CATALOGUE)
    assert stored[2].product.list_price == 329.99


def test_a_product_name_is_unique(session: Session) -> None:
    catalogue_store.add_product(Product("Pallet jack", "warehouse", 399.0), session=session)
    session.commit()
    with pytest.raises(store.Conflict, match="exists already"):
        catalogue_store.add_product(Product("Pallet jack", "warehouse", 350.0), session=session)
    session.rollback()
    assert [p.product.list_price for p in catalogue_store.list_products(session=session)] == [399.0]


def test_unknown_ids_are_not_found(session: Session) -> None:
    with pytest.raises(store.NotFound):
        negotiation_store.get_negotiation(12345, session=session)
    with pytest.raises(store.NotFound):
        catalogue_store.get_product(12345, session=session)


def _decision(round_: int, reward: float | None) -> LoggedDecision:
    return LoggedDecision(
        round=round_,
        observation=np.full(OBSERVATION_SIZE, 0.5 + round_, dtype=np.float32),
        action_mask=np.ones(N_MOVES, dtype=bool),
        move=3,
        propensity=0.9125,
        model_version=7,
        reward=reward,
    )


def _play_stored_negotiation(session: Session, product_name: str = "Forklift battery") -> int:
    """Open, two buyer counters, a seller counter, then a deal: stored step by step."""
    product = catalogue_store.add_product(
        Product(product_name, "warehouse", 1000.0), session=session
    )
    state = open_negotiation(Terms(1000.0, 950.0, max_rounds=5, quantity=3), 1200.0)
    negotiation_id = negotiation_store.create_negotiation(
        state,
        session=session,
        product_id=product.id,
        seller=negotiation_store.SellerInfo("simulated", "linear", 42),
        model_version=7,
    )
    session.commit()
    before = state
    state = apply_move(state, Party.BUYER, Action.counter(700.0))
    state = apply_move(state, Party.SELLER, Action.counter(1100.0))
    negotiation_store.record_progress(
        negotiation_id,
        before,
        state,
        session=session,
        model_version=7,
        decisions=[_decision(1, -0.002)],
    )
    session.commit()
    before = state
    state = apply_move(state, Party.BUYER, Action.counter(900.0))
    state = apply_move(state, Party.SELLER, Action.accept())
    negotiation_store.record_progress(
        negotiation_id,
        before,
        state,
        session=session,
        model_version=7,
        decisions=[_decision(2, 0.05)],
        reward=0.048,
    )
    session.commit()
    return negotiation_id


def test_a_negotiation_comes_back_exactly_as_played(session: Session) -> None:
    negotiation_id = _play_stored_negotiation(session)
    stored = negotiation_store.get_negotiation(negotiation_id, session=session)
    assert stored.state.outcome is Outcome.DEAL
    assert stored.state.deal_price == 900.0
    assert stored.state.asks == (1200.0, 1100.0)
    assert stored.state.bids == (700.0, 900.0)
    assert stored.state.terms == Terms(1000.0, 950.0, max_rounds=5, quantity=3)
    assert stored.seller == negotiation_store.SellerInfo("simulated", "linear", 42, None)
    assert stored.reward == pytest.approx(0.048)
    assert stored.finished_at is not None
    assert [d.propensity for d in stored.decisions] == [0.9125, 0.9125]
    np.testing.assert_allclose(stored.decisions[1].observation, np.full(OBSERVATION_SIZE, 2.5))


def test_a_stale_update_is_refused_and_changes_nothing(session: Session) -> None:
    product = catalogue_store.add_product(Product("Crate", "warehouse", 10.0), session=session)
    state = open_negotiation(Terms(10.0, 9.0), 12.0)
    negotiation_id = negotiation_store.create_negotiation(
        state,
        session=session,
        product_id=product.id,
        seller=negotiation_store.SellerInfo("external"),
        model_version=1,
    )
    session.commit()
    moved = apply_move(state, Party.BUYER, Action.counter(6.0))
    negotiation_store.record_progress(
        negotiation_id, state, moved, session=session, model_version=1
    )
    session.commit()
    other = apply_move(state, Party.BUYER, Action.counter(7.0))
    with pytest.raises(store.Conflict, match="changed meanwhile"):
        negotiation_store.record_progress(
            negotiation_id, state, other, session=session, model_version=1
        )
    session.rollback()
    assert negotiation_store.get_negotiation(negotiation_id, session=session).state.bids == (6.0,)


def test_listing_filters_and_pages_newest_first(session: Session) -> None:
    first = _play_stored_negotiation(session)
    product = catalogue_store.list_products(session=session)[0]
    state = open_negotiation(Terms(1000.0, 900.0), 1300.0)
    second = negotiation_store.create_negotiation(
        state,
        session=session,
        product_id=product.id,
        seller=negotiation_store.SellerInfo("external"),
        model_version=8,
    )
    session.commit()
    every = negotiation_store.NegotiationFilter()
    page = negotiation_store.list_negotiations(session=session, where=every, limit=1)
    assert [n.id for n in page] == [second]
    assert negotiation_store.count_negotiations(session=session, where=every) == (2, True)
    page = negotiation_store.list_negotiations(session=session, where=every, limit=1, offset=1)
    assert [n.id for n in page] == [first]
    page = negotiation_store.list_negotiations(session=session, where=every, before=second)
    assert [n.id for n in page] == [first]  # the cursor: ids below the last one seen
    assert negotiation_store.list_negotiations(session=session, where=every, before=first) == []
    dealt = negotiation_store.NegotiationFilter(outcome="deal")
    deals = negotiation_store.list_negotiations(session=session, where=dealt)
    assert [n.id for n in deals] == [first]
    assert negotiation_store.count_negotiations(session=session, where=dealt) == (1, True)
    for status, count in (("open", 1), ("finished", 1)):
        only = negotiation_store.NegotiationFilter(status=status)
        assert negotiation_store.count_negotiations(session=session, where=only) == (count, True)
    by_version = negotiation_store.list_negotiations(
        session=session, where=negotiation_store.NegotiationFilter(model_version=8)
    )
    assert [n.id for n in by_version] == [second]
    assert negotiation_store.newest_id(session=session, where=every) == second
    assert negotiation_store.open_negotiation_ids(session=session) == [second]


def test_finished_negotiations_queue_for_the_learner_then_rebuild_its_buffer(
    session: Session,
) -> None:
    assert experience_store.negotiations_to_learn(session=session, limit=10) == []
    negotiation_id = _play_stored_negotiation(session)
    [queued] = experience_store.negotiations_to_learn(session=session, limit=10)
    assert queued.id == negotiation_id
    # Not learned from yet: not part of a rebuilt replay buffer either (it would count twice).
    assert experience_store.learned_experiences(session=session, limit=100) is None
    experience_store.mark_learned([negotiation_id], session=session)
    session.commit()
    assert experience_store.negotiations_to_learn(session=session, limit=10) == []
    batch = experience_store.learned_experiences(session=session, limit=100)
    assert batch is not None
    assert batch.move.tolist() == [3, 3]
    assert batch.reward.tolist() == pytest.approx([-0.002, 0.05])
    assert batch.terminated.tolist() == [False, True]
    np.testing.assert_allclose(batch.next_observation[0], batch.observation[1])
    assert queued.experiences is not None
    np.testing.assert_array_equal(queued.experiences.move, batch.move)


def test_a_model_version_serves_only_if_the_serving_one_is_still_the_expected(
    session: Session,
) -> None:
    assert snapshot_store.serving_version(session=session) is None
    publish = functools.partial(snapshot_store.publish_snapshot, session=session, negotiations=0)
    publish(b"starter", version=1, expected_serving=None, source="starter")
    session.commit()
    publish(b"trained", version=2, expected_serving=1, source="training")
    session.commit()
    with pytest.raises(store.Conflict, match="serving model changed"):
        publish(b"stale", version=3, expected_serving=1, source="training")
    session.rollback()
    with pytest.raises(store.Conflict, match="exists already"):
        publish(b"again", version=2, expected_serving=2, source="training")
    session.rollback()
    assert snapshot_store.serving_version(session=session) == 2
    assert snapshot_store.get_snapshot(2, session=session).weights == b"trained"
    assert snapshot_store.highest_version(session=session) == 2
    assert [m.version for m in snapshot_store.model_log(session=session, limit=10)] == [2, 1]


def test_old_versions_keep_their_log_rows_but_not_their_weights(session: Session) -> None:
    for version in range(1, 6):
        snapshot_store.publish_snapshot(
            b"w%d" % version,
            session=session,
            version=version,
            expected_serving=version - 1 if version > 1 else None,
            source="training",
            negotiations=version,
        )
    snapshot_store.forget_old_weights(session=session, keep=2)
    session.commit()
    kept = {v: snapshot_store.get_snapshot(v, session=session).weights for v in range(1, 6)}
    assert kept == {1: None, 2: None, 3: None, 4: b"w4", 5: b"w5"}


def test_training_history_and_the_finished_series_come_back_oldest_first(
    session: Session,
) -> None:
    for n in (1, 2, 3):
        metric_store.add_training_point(
            metric_store.TrainingPoint(
                at=datetime(2026, 1, 1, 0, 0, n, tzinfo=UTC),
                negotiations=n,
                loss=0.1 * n,
                replay_buffer_size=10 * n,
                epsilon=0.1,
                model_version=n,
                checkpoint="buyer_agent_n2_20260101_000002.pth" if n == 2 else None,
            ),
            session=session,
        )
    session.commit()
    assert [p.negotiations for p in metric_store.training_history(session=session, limit=2)] == [
        2,
        3,
    ]
    saved = metric_store.last_checkpoint_point(session=session)
    assert saved is not None and saved.negotiations == 2
    negotiation_id = _play_stored_negotiation(session)
    [point] = metric_store.finished_series(session=session, limit=10)
    assert point.id == negotiation_id and point.outcome == "deal"
    assert point.savings_pct == pytest.approx(10.0)  # 900 against a list price of 1000


def test_counters_survive_a_new_session(engine: Engine, session: Session) -> None:
    assert counters.get_counter("trained_negotiations", session=session) == 0
    counters.set_counter("trained_negotiations", 41, session=session)
    counters.set_counter("trained_negotiations", 42, session=session)
    session.commit()
    with session_factory(engine)() as other:
        assert counters.get_counter("trained_negotiations", session=other) == 42


def test_a_counter_loaded_in_the_session_that_sets_it_shows_the_new_value(
    session: Session,
) -> None:
    counters.set_counter("trained_negotiations", 1, session=session)
    session.commit()
    loaded = session.get(CounterRow, "trained_negotiations")
    assert loaded is not None and loaded.value == 1
    counters.set_counter("trained_negotiations", 2, session=session)
    assert loaded.value == 2
    assert counters.get_counter("trained_negotiations", session=session) == 2


def test_a_finished_negotiation_takes_no_more_moves(session: Session) -> None:
    negotiation_id = _play_stored_negotiation(session)
    finished = negotiation_store.get_negotiation(negotiation_id, session=session).state
    # A stale writer that read the negotiation before it ended, at the same round count:
    stale = open_negotiation(finished.terms, 1200.0)
    stale = apply_move(stale, Party.BUYER, Action.counter(700.0))
    stale = apply_move(stale, Party.SELLER, Action.counter(1100.0))
    stale = apply_move(stale, Party.BUYER, Action.counter(800.0))
    before_stale = negotiation_store.get_negotiation(negotiation_id, session=session)
    after = apply_move(stale, Party.SELLER, Action.walk_away())
    with pytest.raises(store.Conflict):
        negotiation_store.record_progress(
            negotiation_id, stale, after, session=session, model_version=7
        )
    session.rollback()
    assert (
        negotiation_store.get_negotiation(negotiation_id, session=session).state
        == before_stale.state
    )


@pytest.mark.parametrize(
    ("layout", "observation_size", "learned"),
    [
        ("0123456789abcdef", OBSERVATION_SIZE, False),  # another layout of the same size
        (None, OBSERVATION_SIZE - 5, False),  # logged before layouts were recorded, and smaller
        (None, OBSERVATION_SIZE, True),  # logged before layouts were recorded: the size fits
    ],
)
def test_decisions_of_an_older_observation_layout_are_kept_but_not_learned_from(
    session: Session, layout: str | None, observation_size: int, learned: bool
) -> None:
    """After an upgrade that changed the observations (their meaning, or their number too), old
    negotiations stay in the store; the learner takes them off its queue without learning from
    them, and does not refill its replay buffer with them after a restart."""
    negotiation_id = _play_stored_negotiation(session)
    learned_id = _play_stored_negotiation(session, "Forklift charger")
    experience_store.mark_learned([learned_id], session=session)
    session.execute(update(NegotiationRow).values(observation_layout=layout))
    session.execute(update(DecisionRow).values(observation=[0.5] * observation_size))
    session.commit()
    [queued] = experience_store.negotiations_to_learn(session=session, limit=10)
    assert queued.id == negotiation_id
    assert (queued.experiences is not None) == learned
    experience_store.mark_learned([negotiation_id], session=session)
    session.commit()
    assert (experience_store.learned_experiences(session=session, limit=100) is not None) == learned
    # Nor does the promotion gate judge candidates on them.
    assert len(experiments.logged_episodes(session=session, limit=10)) == (2 if learned else 0)
    assert negotiation_store.get_negotiation(negotiation_id, session=session) is not None
    # A negotiation logged now records this layout, and is learned from.
    new_id = _play_stored_negotiation(session, "Forklift fork")
    new_row = session.get(NegotiationRow, new_id)
    assert new_row is not None and new_row.observation_layout == OBSERVATION_LAYOUT
    [queued] = experience_store.negotiations_to_learn(session=session, limit=10)
    assert queued.id == new_id and queued.experiences is not None
    assert len(experiments.logged_episodes(session=session, limit=10)) == (3 if learned else 1)


def _serve_stored(sessions: sessionmaker[Session], weights: bytes, *, source: str) -> None:
    """A store whose serving version, 3, holds `weights` (as an earlier version stored them)."""
    with sessions() as session:
        snapshot_store.publish_snapshot(
            weights,
            session=session,
            version=3,
            expected_serving=None,
            source=source,
            negotiations=0,
        )
        session.commit()


def test_serving_weights_of_an_older_layout_give_way_to_the_model_file(engine: Engine) -> None:
    sessions = session_factory(engine)
    old = PolicySnapshot(
        (np.zeros((OBSERVATION_SIZE - 5, 4), np.float32), np.zeros((4, N_MOVES), np.float32)),
        (np.zeros(4, np.float32), np.zeros(N_MOVES, np.float32)),
        3,
    )
    _serve_stored(sessions, old.to_bytes(), source="starter")
    model_file = BuyerAgent(DQNConfig(hidden_sizes=(8,), seed=1)).snapshot
    serving = versions.ensure_serving(sessions, lambda: model_file)
    assert serving.version == 4  # a new version: 3 keeps naming the old weights
    probe = np.linspace(0.0, 1.0, OBSERVATION_SIZE, dtype=np.float32)
    np.testing.assert_array_equal(serving.q_values(probe), model_file.q_values(probe))
    with sessions() as session:
        assert snapshot_store.serving_version(session=session) == 4
    # Once replaced, the store serves the new version on every start.
    assert versions.ensure_serving(sessions, lambda: old).version == 4


def _weights_archive(
    snapshot: PolicySnapshot, observation_names: list[str] | None, moves: list[str] | None
) -> bytes:
    """`snapshot`'s stored weights, recording `observation_names` and `moves` (None: no names,
    as archives written before they were recorded)."""
    with np.load(io.BytesIO(snapshot.to_bytes()), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    del arrays["observation_names"], arrays["moves"]
    if observation_names is not None and moves is not None:
        arrays["observation_names"] = np.array(observation_names)
        arrays["moves"] = np.array(moves)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("observation_names", "moves", "serves_the_stored_weights"),
    [
        # Stored before the names were recorded: the shape fits, so it serves.
        (None, None, True),
        (list(OBSERVATION_NAMES), MOVE_NAMES, True),
        # The same number of observations, one of them renamed because its meaning changed.
        (["lowest_ask_fall_1", *OBSERVATION_NAMES[1:]], MOVE_NAMES, False),
        # The same number of moves, one of them another concession.
        (list(OBSERVATION_NAMES), [*MOVE_NAMES[:-1], "CONCEDE_90"], False),
    ],
)
def test_serving_weights_trained_on_other_observations_of_the_same_size_give_way(
    engine: Engine,
    observation_names: list[str] | None,
    moves: list[str] | None,
    serves_the_stored_weights: bool,
) -> None:
    sessions = session_factory(engine)
    stored = BuyerAgent(DQNConfig(hidden_sizes=(8,), seed=2)).snapshot
    _serve_stored(sessions, _weights_archive(stored, observation_names, moves), source="training")
    model_file = BuyerAgent(DQNConfig(hidden_sizes=(8,), seed=1)).snapshot
    serving = versions.ensure_serving(sessions, lambda: model_file)
    probe = np.linspace(0.0, 1.0, OBSERVATION_SIZE, dtype=np.float32)
    expected = stored if serves_the_stored_weights else model_file
    assert serving.version == (3 if serves_the_stored_weights else 4)
    np.testing.assert_array_equal(serving.q_values(probe), expected.q_values(probe))
