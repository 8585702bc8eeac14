"""A candidate model against the one serving: judged as the promotion gate would, or put to an
A/B test.

One path for every caller: the learner's gate (`SafeLearning.judge_candidate`), the operator's
commands (`haggler evaluate-candidate`, `haggler ab-test start`) and the HTTP API, so that a
candidate judged by hand gets the figures the gate would have given it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from haggler.config import Settings
from haggler.policy.snapshot import PolicySnapshot
from haggler.safety import promotion
from haggler.store import base as store
from haggler.store import experiments, versions
from haggler.store import snapshots as snapshot_store

LOGGED_EPISODES = 500
"""The newest logged negotiations the gate's off-policy estimates read."""


class NoWeights(store.NotFound):
    """The model version is stored, but its weights are gone (the store keeps only the newest)."""


class NoChampion(store.NotFound):
    """No model serves yet: there is nothing to judge a candidate against."""


@dataclass(frozen=True)
class Judgement:
    candidate: PolicySnapshot
    champion: PolicySnapshot
    """The model that served when the candidate was judged."""
    decision: promotion.GateDecision


def gate_config(settings: Settings) -> promotion.GateConfig:
    return promotion.GateConfig(
        reward_tolerance=settings.gate_reward_tolerance,
        surplus_tolerance=settings.gate_surplus_tolerance,
        max_deal_rate_drop=settings.gate_max_deal_rate_drop,
        strategies=settings.gate_strategies,
    )


def stored_candidate(version: int, *, session: Session) -> PolicySnapshot:
    """Model `version`'s weights from the store. store.NotFound if there is no such version,
    NoWeights if its weights are gone."""
    stored = snapshot_store.get_snapshot(version, session=session)
    if stored.weights is None:
        raise NoWeights(f"model version {version} has no weights left in the store")
    return PolicySnapshot.from_bytes(stored.weights, version)


def judge_against_serving(
    sessions: sessionmaker[Session],
    candidate: int | PolicySnapshot,
    config: promotion.GateConfig,
    *,
    rng: np.random.Generator | None = None,
) -> Judgement:
    """Judge `candidate` (a stored model version, or a snapshot such as a checkpoint's) against
    the serving model on the newest logged negotiations and the held-out suite. Writes nothing.

    NoChampion if no model serves; store.NotFound or NoWeights for a stored version that cannot
    be read. Without `rng`, the bootstrap is seeded with the candidate's version: the same
    candidate against the same champion and logs gets the same figures every time.
    """
    with sessions() as session:
        champion = versions.serving_snapshot(session)
        if champion is None:
            raise NoChampion("no model serves yet")
        if isinstance(candidate, int):
            candidate = stored_candidate(candidate, session=session)
        logged = experiments.logged_episodes(session=session, limit=LOGGED_EPISODES)
    if rng is None:
        rng = np.random.default_rng(candidate.version)
    decision = promotion.judge(candidate, champion, logged, config, rng=rng)
    return Judgement(candidate, champion, decision)


NO_AB_TEST_WHILE_IMMEDIATE = (
    "with PROMOTION=immediate and training on every update serves at once: an A/B test needs "
    "PROMOTION=gated, or training off"
)
"""Why an A/B test cannot run: the API's 409 and the CLI's error say the same."""


def start_ab_test(
    challenger_version: int, split: float, *, session: Session
) -> experiments.StoredABTest:
    """Start an A/B test of stored model `challenger_version` against the serving one, on
    `split` of new negotiations (the caller commits). store.NotFound or NoWeights if the
    challenger cannot serve; store.Conflict if it serves already or a test is running."""
    serving = snapshot_store.serving_version(session=session)
    stored = snapshot_store.get_snapshot(challenger_version, session=session)
    if stored.weights is None:
        raise NoWeights(f"model version {challenger_version} has no weights left in the store")
    if serving is None or serving == challenger_version:
        raise store.Conflict(f"model version {challenger_version} is the one serving")
    return experiments.start_ab_test(serving, challenger_version, split, session=session)
