"""A/B tests over the store: a finished negotiation as an arm's outcome, and ending a test (the
learner's stopping rule or the operator's word): promote the challenger or reject it."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from haggler.config import Settings
from haggler.core.sellers import make_seller
from haggler.files import atomic_write
from haggler.safety import ab_testing
from haggler.store import base as store
from haggler.store import experiments
from haggler.store import snapshots as snapshot_store

log = logging.getLogger("haggler.safety")


def write_main_model(settings: Settings, checkpoint: str | None) -> None:
    """In gated mode the main model file follows what serves, never the learner: copy the
    promoted candidate's checkpoint over it (atomically)."""
    if checkpoint is None:
        return
    source = settings.checkpoint_dir / checkpoint
    try:
        atomic_write(settings.model_path, source.read_bytes())
    except OSError as error:
        log.error("[Safety] %s not copied to %s: %s", source, settings.model_path, error)


def arm_outcome(outcome: experiments.FinishedOutcome) -> ab_testing.ArmOutcome:
    """A finished negotiation's figures; surplus only where the seller's reserve is known (a
    simulated persona, rebuilt from its stored seed exactly as it was played)."""
    deal = outcome.outcome == "deal" and outcome.deal_price is not None
    savings = None
    if deal and outcome.deal_price is not None:
        savings = 100.0 * (outcome.list_price - outcome.deal_price) / outcome.list_price
    surplus = None
    if (
        outcome.seller_kind == "simulated"
        and outcome.seller_strategy is not None
        and outcome.seller_seed is not None
    ):
        try:
            seller = make_seller(
                outcome.seller_strategy,
                outcome.list_price,
                np.random.default_rng(outcome.seller_seed),
            )
        except ValueError:  # a strategy this version no longer knows
            seller = None
        if seller is not None and seller.reserve <= outcome.buyer_limit:
            zone = outcome.buyer_limit - seller.reserve
            surplus = 0.0
            if deal and outcome.deal_price is not None and zone > 0:
                surplus = (outcome.buyer_limit - outcome.deal_price) / zone
    return ab_testing.ArmOutcome(
        reward=outcome.reward, deal=deal, savings_pct=savings, surplus=surplus
    )


def decide_ab_test(
    sessions: sessionmaker[Session],
    test_id: int,
    decision: Literal["promote", "reject"],
    *,
    decided_by: str,
    reason: str,
    verdict: dict[str, object] | None = None,
    settings: Settings | None = None,
) -> experiments.StoredABTest:
    """End a running A/B test: promote its challenger (it serves everywhere from the next poll)
    or reject it (the champion serves on). store.Conflict if the test is not running or the
    serving model changed meanwhile; store.NotFound if there is no such test."""
    with sessions() as session:
        test = experiments.get_ab_test(test_id, session=session)
        if test.status != "running":
            raise store.Conflict(f"A/B test {test_id} is {test.status}, not running")
        if decision == "promote":
            experiments.promote(
                test.challenger_version,
                expected_serving=test.champion_version,
                reason=f"won A/B test {test_id}: {reason}",
                session=session,
            )
            status = "promoted"
        else:
            experiments.set_status(
                test.challenger_version,
                "rejected",
                f"lost A/B test {test_id}: {reason}",
                session=session,
            )
            status = "rejected"
        ended = experiments.end_ab_test(
            test_id,
            session=session,
            status=status,
            decided_by=decided_by,
            reason=reason,
            verdict=dict(verdict) if verdict is not None else None,
        )
        session.commit()
    log.info("[Safety] A/B test %d: challenger %s (%s: %s)", test_id, status, decided_by, reason)
    if status == "promoted" and settings is not None and settings.promotion == "gated":
        with sessions() as session:
            checkpoint = snapshot_store.get_snapshot(
                test.challenger_version, session=session
            ).checkpoint
        write_main_model(settings, checkpoint)
    return ended
