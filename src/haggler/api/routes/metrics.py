"""Prometheus metrics at `/metrics`: what the store knows (so every serving process reports the
same totals, and they survive restarts) and this process's turn latency."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Depends, Response
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from haggler.api.deps import OPERATORS, RuntimeDep, require_operator
from haggler.serving.service import NegotiationService
from haggler.store import counters, totals
from haggler.store import metrics as metric_store
from haggler.store import snapshots as snapshot_store

# Operators' pages: every route here needs an operator account.
router = APIRouter(
    tags=["operations"], dependencies=[Depends(require_operator)], responses=OPERATORS
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

NEWEST_VERSIONS = 20
"""Model versions with series of their own in `haggler_negotiations`: with training on, a new
version serves every few seconds, and a series per version would grow without bound."""

# Buckets around the service's target (p99 under 15 ms) and its tail.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def turn_latency_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "haggler_turn_latency_seconds",
        "Time to answer a seller's move or a negotiation's start, in this serving process.",
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )


class StoreCollector(Collector):
    """Reads the store at scrape time."""

    def __init__(self, sessions: sessionmaker[Session], service: NegotiationService) -> None:
        self.sessions = sessions
        self.service = service

    def collect(self) -> Iterator[Metric]:
        with self.sessions() as session:
            counts = totals.version_counts(session=session, newest=NEWEST_VERSIONS)
            history = metric_store.training_history(session=session, limit=50)
            trained = counters.get_counter(counters.NEGOTIATIONS_LEARNED, session=session)
            merged = counters.get_counter(counters.NEGOTIATIONS_MERGED, session=session)
            changes = metric_store.model_change_counts(session=session)
            statuses = snapshot_store.model_status_counts(session=session)
            promotions = snapshot_store.promotion_count(session=session)
        negotiations = CounterMetricFamily(
            "haggler_negotiations",
            "Negotiations by outcome ('open' while in progress) and the version that played "
            f"them: the {NEWEST_VERSIONS} newest versions, and every older one as 'older'.",
            labels=["outcome", "model_version"],
        )
        for outcome, version, count in counts:
            negotiations.add_metric([outcome, version], count)
        yield negotiations
        latest = history[-1] if history else None
        loss = next((p.loss for p in reversed(history) if p.loss is not None), None)
        for name, text, value in (
            ("haggler_training_loss", "Mean loss of the learner's last update.", loss),
            (
                "haggler_replay_buffer_size",
                "Transitions in the learner's replay buffer.",
                latest.replay_buffer_size if latest else 0,
            ),
            (
                "haggler_exploration_rate",
                "Epsilon this process explores with.",
                self.service.epsilon,
            ),
            (
                "haggler_model_version",
                "The model version this process serves.",
                self.service.snapshot.version,
            ),
            (
                "haggler_training_enabled",
                "1 while online training is on.",
                int(self.service.enable_training),
            ),
        ):
            if value is not None:
                yield GaugeMetricFamily(name, text, value=float(value))
        yield CounterMetricFamily(
            "haggler_negotiations_trained", "Negotiations the learner trained on.", value=trained
        )
        yield CounterMetricFamily(
            "haggler_negotiations_merged",
            "Negotiations a learner that had fallen behind merged into larger updates.",
            value=merged,
        )
        for name, text, value in (
            (
                "haggler_learner_pending_negotiations",
                "Finished negotiations waiting for the learner after its last update.",
                latest.pending if latest else 0,
            ),
            (
                "haggler_learner_delay_seconds",
                "Median seconds from the end of the last update's negotiations to its version.",
                next((p.delay_s for p in reversed(history) if p.delay_s is not None), None),
            ),
            (
                "haggler_learner_samples_per_negotiation",
                "Transitions the last update sampled per negotiation it took in.",
                next(
                    (
                        p.samples_per_negotiation
                        for p in reversed(history)
                        if p.samples_per_negotiation is not None
                    ),
                    None,
                ),
            ),
        ):
            if value is not None:
                yield GaugeMetricFamily(name, text, value=float(value))
        model_changes = CounterMetricFamily(
            "haggler_model_changes",
            "Model versions published to serve, by source: 'training', 'restore', 'rollback'.",
            labels=["source"],
        )
        for source, count in sorted(changes.items()):
            model_changes.add_metric([source], count)
        yield model_changes
        yield CounterMetricFamily(
            "haggler_promotions",
            "Trained versions that went on to serve (every update when PROMOTION=immediate).",
            value=promotions,
        )
        yield CounterMetricFamily(
            "haggler_rollbacks",
            "Automatic rollbacks to the last known good version.",
            value=changes.get("rollback", 0),
        )
        candidates = GaugeMetricFamily(
            "haggler_model_versions",
            "Model versions by status now: 'candidate' (waiting or in an A/B test), 'rejected' "
            "(by the gate or an A/B test), 'promoted' (served).",
            labels=["status"],
        )
        by_status: dict[str, int] = {}
        for (_, status), count in statuses.items():
            by_status[status] = by_status.get(status, 0) + count
        for status, count in sorted(by_status.items()):
            candidates.add_metric([status], count)
        yield candidates


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics), media_type=CONTENT_TYPE)
