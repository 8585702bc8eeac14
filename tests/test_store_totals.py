"""The totals kept as negotiations finish: they equal a count of every negotiation in the
store, a store from before them gets them by its migration, and the figures built from them
are the ones a scan would give."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from alembic import command
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from haggler.core.catalogue import Product
from haggler.core.negotiation import Action, Party, Terms, apply_move, open_negotiation
from haggler.safety.evaluation import mean_ci, mean_ci_of_moments
from haggler.store import catalogue as catalogue_store
from haggler.store import metrics as metric_store
from haggler.store import negotiations as negotiation_store
from haggler.store import totals
from haggler.store.database import alembic_config, migrate, session_factory
from haggler.store.tables import NegotiationRow


def _store_negotiations(session: Session, count: int, *, seed: int, recorded: bool) -> None:
    """`count` negotiations with drawn terms and endings (deals, walk-aways, the deadline)
    and one left open; through the store's writes (`recorded`) or as bare rows, as a store
    from before the totals holds them."""
    rng = np.random.default_rng(seed)
    product = catalogue_store.add_product(
        Product("Pallet jack", "warehouse", 400.0), session=session
    )
    for i in range(count + 1):
        list_price = float(rng.integers(100, 900))
        terms = Terms(list_price, list_price * 0.9, max_rounds=3, quantity=int(rng.integers(1, 50)))
        state = open_negotiation(terms, list_price * 1.1)
        version = int(rng.integers(1, 5))
        opened = state
        if i < count:
            for _ in range(int(rng.integers(0, 3))):
                if state.is_over:
                    break
                state = apply_move(state, Party.BUYER, Action.counter(round(list_price * 0.6, 2)))
                if not state.is_over:
                    state = apply_move(state, Party.SELLER, Action.counter(list_price))
            if not state.is_over:
                ending = rng.choice(["accept", "walk", "seller_walk"])
                if ending == "accept":
                    offer = round(list_price * float(rng.uniform(0.5, 0.85)), 2)
                    state = apply_move(state, Party.BUYER, Action.counter(offer))
                    state = apply_move(state, Party.SELLER, Action.accept())
                elif ending == "walk":
                    state = apply_move(state, Party.BUYER, Action.walk_away())
                else:
                    state = apply_move(state, Party.BUYER, Action.counter(list_price * 0.5))
                    state = apply_move(state, Party.SELLER, Action.walk_away())
        reward = round(float(rng.normal(0.1, 0.3)), 4) if state.is_over else None
        if recorded:
            negotiation_id = negotiation_store.create_negotiation(
                opened,
                session=session,
                product_id=product.id,
                seller=negotiation_store.SellerInfo("external"),
                model_version=version,
            )
            if state is not opened:
                negotiation_store.record_progress(
                    negotiation_id,
                    opened,
                    state,
                    session=session,
                    model_version=version,
                    reward=reward,
                )
        else:
            session.add(
                NegotiationRow(
                    product_id=product.id,
                    quantity=terms.quantity,
                    list_price=Decimal(f"{terms.list_price:.2f}"),
                    buyer_limit=Decimal(f"{terms.buyer_limit:.2f}"),
                    max_rounds=terms.max_rounds,
                    seller_kind="external",
                    status="finished" if state.is_over else "open",
                    outcome=state.outcome.value if state.outcome else None,
                    deal_price=Decimal(f"{state.deal_price:.2f}")
                    if state.deal_price is not None
                    else None,
                    rounds=state.buyer_moves,
                    reward=reward,
                    model_version=version,
                )
            )
    session.commit()


def _scanned(session: Session) -> dict[str, object]:
    """The figures as a scan of every negotiation gives them (how they were computed before)."""
    rows = session.execute(select(NegotiationRow)).scalars().all()
    finished = [r for r in rows if r.status == "finished"]
    deals = [r for r in finished if r.outcome == "deal" and r.deal_price is not None]
    return {
        "negotiations": len(rows),
        "finished": len(finished),
        "deals": len(deals),
        "reward": mean_ci([r.reward for r in finished if r.reward is not None]),
        "savings_pct": mean_ci(
            [float(100 * (r.list_price - r.deal_price) / r.list_price) for r in deals]
        ),
        "savings_total": sum(
            ((r.list_price - r.deal_price) * r.quantity for r in deals), start=Decimal("0.00")
        ),
        "rounds": mean_ci([r.rounds for r in finished]),
    }


def _from_totals(session: Session) -> dict[str, object]:
    summary = metric_store.summary(session=session)
    kept = summary.totals
    return {
        "negotiations": summary.negotiations,
        "finished": summary.finished,
        "deals": summary.deals,
        "reward": mean_ci_of_moments(kept.reward.count, kept.reward.total, kept.reward.squares),
        "savings_pct": mean_ci_of_moments(
            kept.savings_pct.count, kept.savings_pct.total, kept.savings_pct.squares
        ),
        "savings_total": kept.savings_total,
        "rounds": mean_ci_of_moments(kept.rounds.count, kept.rounds.total, kept.rounds.squares),
    }


def _assert_same(found: dict[str, object], expected: dict[str, object]) -> None:
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        if key in ("reward", "savings_pct", "rounds"):
            for ours, theirs in zip(
                (found[key].mean, found[key].ci_low, found[key].ci_high),  # type: ignore[attr-defined]
                (value.mean, value.ci_low, value.ci_high),  # type: ignore[attr-defined]
                strict=True,
            ):
                assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-9), key
        else:
            assert found[key] == value, key


def test_the_totals_are_what_a_scan_of_every_negotiation_gives(session: Session) -> None:
    _store_negotiations(session, 60, seed=3, recorded=True)
    expected = _scanned(session)
    assert expected["finished"] == 60 and expected["negotiations"] == 61
    assert 0 < expected["deals"] < 60  # type: ignore[operator]
    _assert_same(_from_totals(session), expected)


def test_a_store_from_before_the_totals_gets_them_by_its_migration(engine: Engine) -> None:
    """Upgrading a store counts what it held already: the summary does not start from 0."""
    with engine.begin() as connection:  # back to the schema before the totals
        connection.execute(text("DROP TABLE IF EXISTS outcome_totals"))
        connection.execute(text("DROP TABLE IF EXISTS version_outcomes"))
    config = alembic_config(engine)
    command.stamp(config, "0005")
    with engine.begin() as connection:  # and the indexes as 0005 left them (0006 and 0007 add)
        for index in (
            "ix_negotiations_finished",
            "ix_negotiations_seller_outcome",
            "ix_model_snapshots_with_weights",
            "ix_negotiations_open",
            "ix_model_snapshots_source_status",
            "ix_model_snapshots_source_promoted",
            "ix_model_snapshots_promoted_later",
        ):
            connection.execute(text(f"DROP INDEX IF EXISTS {index}"))
        connection.execute(text("CREATE INDEX ix_negotiations_status ON negotiations (status)"))
    with session_factory(engine)() as session:
        _store_negotiations(session, 40, seed=4, recorded=False)
        expected = _scanned(session)
    _restore_training_points(engine)
    migrate(engine)
    with session_factory(engine)() as session:
        _assert_same(_from_totals(session), expected)
        assert (
            sum(count for outcome, _, count in totals.version_counts(session=session, newest=50))
            == expected["negotiations"]
        )


def _restore_training_points(engine: Engine) -> None:
    """The training history as 0005 left it (the migration adds the learner's lag to it), and
    the negotiations without the column 0008 adds."""
    with engine.begin() as connection:
        for column in ("pending", "merged", "samples_per_negotiation", "delay_s"):
            connection.execute(text(f"ALTER TABLE training_points DROP COLUMN {column}"))
        connection.execute(text("ALTER TABLE negotiations DROP COLUMN observation_layout"))


def test_prometheus_counts_keep_the_newest_versions_apart_and_the_rest_together(
    session: Session,
) -> None:
    _store_negotiations(session, 50, seed=5, recorded=True)
    counts = totals.version_counts(session=session, newest=2)
    versions = {version for _, version, _ in counts}
    finished_versions = {v for o, v, _ in counts if o != "open" and v != "older"}
    assert len(finished_versions) == 2  # the two newest that played
    assert "older" in versions
    assert sum(count for _, _, count in counts) == 51
    scanned = session.execute(
        select(NegotiationRow.model_version).where(NegotiationRow.status == "finished")
    ).scalars()
    newest_two = sorted(set(scanned))[-2:]
    assert finished_versions == {str(v) for v in newest_two}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1.0, max_value=1.0, allow_nan=False).map(lambda x: round(x, 4)),
        min_size=0,
        max_size=40,
    )
)
def test_an_interval_from_sums_is_the_interval_from_the_values(values: list[float]) -> None:
    expected = mean_ci(values)
    found = mean_ci_of_moments(len(values), sum(values), sum(v * v for v in values))
    for ours, theirs in (
        (found.mean, expected.mean),
        (found.ci_low, expected.ci_low),
        (found.ci_high, expected.ci_high),
    ):
        if math.isnan(theirs):
            assert math.isnan(ours)
        else:
            assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-6)


def test_a_finish_counts_once_even_when_its_write_is_retried(engine: Engine) -> None:
    """A move refused as a conflict (another request moved first) adds nothing to the totals."""
    sessions = session_factory(engine)
    with sessions() as session:
        _store_negotiations(session, 1, seed=6, recorded=True)
        before = metric_store.summary(session=session)
        open_id = session.scalars(
            select(NegotiationRow.id).where(NegotiationRow.status == "open")
        ).one()
        state = negotiation_store.get_negotiation(open_id, session=session).state
        done = apply_move(state, Party.BUYER, Action.walk_away())
        negotiation_store.record_progress(
            open_id, state, done, session=session, model_version=1, reward=-0.15
        )
        session.commit()
        with pytest.raises(negotiation_store.Conflict):
            negotiation_store.record_progress(
                open_id, state, done, session=session, model_version=1, reward=-0.15
            )
        session.rollback()
        after = metric_store.summary(session=session)
    assert (after.finished, after.negotiations) == (before.finished + 1, before.negotiations)


def test_a_fresh_store_has_no_totals(session: Session) -> None:
    summary = metric_store.summary(session=session)
    assert (summary.negotiations, summary.finished, summary.deals) == (0, 0, 0)
    assert summary.totals.savings_total == Decimal("0.00")


def test_the_model_version_counts_are_what_a_count_of_the_versions_gives(
    session: Session,
) -> None:
    """Published, judged, rejected and promoted versions: the counters the dashboard and
    /metrics read agree with a count of the versions in the store."""
    from haggler.store import experiments
    from haggler.store import snapshots as snapshot_store
    from haggler.store.tables import ModelSnapshotRow

    def scanned() -> dict[tuple[str, str], int]:
        rows = session.execute(
            select(ModelSnapshotRow.source, ModelSnapshotRow.status, ModelSnapshotRow.version)
        ).all()
        counts: dict[tuple[str, str], int] = {}
        for source, status, _ in rows:
            counts[(source, status)] = counts.get((source, status), 0) + 1
        return counts

    snapshot_store.publish_snapshot(
        b"w", session=session, version=1, expected_serving=None, source="starter", negotiations=0
    )
    snapshot_store.publish_snapshot(
        b"w", session=session, version=2, expected_serving=1, source="training", negotiations=5
    )
    for version, status in ((3, "candidate"), (4, "candidate"), (5, "rejected")):
        experiments.add_candidate(
            b"w",
            session=session,
            version=version,
            negotiations=10,
            status=status,
            reason="judged",
            evaluation=None,
        )
    experiments.set_status(4, "rejected", "lost its A/B test", session=session)
    experiments.promote(3, expected_serving=2, reason="passed the gate", session=session)
    snapshot_store.publish_snapshot(
        b"w", session=session, version=6, expected_serving=3, source="rollback", negotiations=10
    )
    session.commit()
    assert (
        snapshot_store.model_status_counts(session=session)
        == scanned()
        == {
            ("starter", "promoted"): 1,
            ("training", "promoted"): 2,
            ("training", "rejected"): 2,
            ("rollback", "promoted"): 1,
        }
    )
    assert snapshot_store.promotion_count(session=session) == 2
    assert metric_store.model_change_counts(session=session) == {
        "starter": 1,
        "training": 4,
        "rollback": 1,
    }
