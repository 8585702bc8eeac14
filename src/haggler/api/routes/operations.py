"""For the operator: summary metrics, training status and switch, checkpoints and restore."""

from __future__ import annotations

import time
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, status
from sqlalchemy.orm import Session

from haggler.api.deps import (
    OPERATORS,
    OperatorDep,
    Runtime,
    RuntimeDep,
    SessionDep,
    require_operator,
)
from haggler.api.schemas import (
    CheckpointOut,
    Estimate,
    FinishedPointOut,
    FinishedSeriesOut,
    ModelVersionOut,
    RestoreIn,
    SummaryOut,
    TrainingHistoryOut,
    TrainingIn,
    TrainingOut,
    TrainingPointOut,
)
from haggler.learning.checkpoints import (
    CheckpointError,
    list_checkpoints,
    resolve_checkpoint,
)
from haggler.learning.checkpoints import restore as restore_checkpoint
from haggler.safety.evaluation import mean_ci_of_moments, proportion_ci
from haggler.store import counters, maintenance
from haggler.store import metrics as metric_store
from haggler.store import snapshots as snapshot_store
from haggler.store.totals import Moments

# Operators' pages: every route here needs an operator account.
router = APIRouter(
    prefix="/api",
    tags=["operations"],
    dependencies=[Depends(require_operator)],
    responses=OPERATORS,
)

AUTH = OPERATORS


def _estimate(moments: Moments) -> Estimate:
    e = mean_ci_of_moments(moments.count, moments.total, moments.squares)
    return Estimate(**e.as_dict())


@router.get("/summary", summary="Summary metrics over all negotiations, with 95% intervals")
async def summary(session: SessionDep) -> SummaryOut:
    s = metric_store.summary(session=session)
    deal_rate = proportion_ci(s.deals, s.finished).as_dict()
    return SummaryOut(
        negotiations=s.negotiations,
        finished=s.finished,
        deals=s.deals,
        deal_rate=Estimate(**deal_rate),
        average_reward=_estimate(s.totals.reward),
        savings_total=s.totals.savings_total,
        average_savings_pct=_estimate(s.totals.savings_pct),
        average_rounds=_estimate(s.totals.rounds),
    )


def _training(runtime: Runtime, session: Session) -> TrainingOut:
    service = runtime.service
    history = metric_store.training_history(session=session, limit=50)
    latest = history[-1] if history else None
    saved = metric_store.last_checkpoint_point(session=session)
    delays = runtime.update_delays
    return TrainingOut(
        enabled=service.enable_training,
        epsilon=service.epsilon,
        model_version=service.snapshot.version,
        replay_buffer_size=latest.replay_buffer_size if latest else 0,
        negotiations_trained=counters.get_counter(counters.NEGOTIATIONS_LEARNED, session=session),
        last_loss=next((p.loss for p in reversed(history) if p.loss is not None), None),
        last_checkpoint=saved.checkpoint if saved else None,
        checkpoint_error=saved.checkpoint_error if saved else None,
        update_delay_median_s=float(np.median(delays)) if delays else None,
        learner_running=runtime.learner_alive() if runtime.learner_alive else None,
        learner_ready=maintenance.learner_lease_held(session=session, now=time.time()),
        learner_pending=latest.pending if latest else 0,
        learner_delay_s=next((p.delay_s for p in reversed(history) if p.delay_s is not None), None),
        samples_per_negotiation=next(
            (
                p.samples_per_negotiation
                for p in reversed(history)
                if p.samples_per_negotiation is not None
            ),
            None,
        ),
        negotiations_merged=counters.get_counter(counters.NEGOTIATIONS_MERGED, session=session),
    )


@router.get("/training", summary="Online training status")
async def training(runtime: RuntimeDep, session: SessionDep) -> TrainingOut:
    return _training(runtime, session)


@router.put("/training", summary="Turn online training on or off", responses=AUTH)
async def set_training(
    body: TrainingIn, runtime: RuntimeDep, session: SessionDep, _operator: OperatorDep
) -> TrainingOut:
    counters.set_counter(counters.TRAINING_ENABLED, int(body.enabled), session=session)
    session.commit()
    runtime.service.set_training(body.enabled)  # the learner and other processes follow the store
    return _training(runtime, session)


@router.get("/training/history", summary="The learner's updates: loss, buffer, exploration")
async def training_history(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 500
) -> TrainingHistoryOut:
    points = metric_store.training_history(session=session, limit=limit)
    return TrainingHistoryOut(points=[TrainingPointOut.model_validate(p) for p in points])


@router.get("/models", summary="The log of model changes, newest first")
async def models(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    status_: Annotated[
        Literal["promoted", "candidate", "rejected"] | None, Query(alias="status")
    ] = None,
    source: Literal["starter", "training", "restore", "rollback"] | None = None,
) -> list[ModelVersionOut]:
    found = snapshot_store.model_log(session=session, limit=limit, status=status_, source=source)
    return [ModelVersionOut.model_validate(m) for m in found]


@router.get("/metrics/negotiations", summary="Finished negotiations as a series, oldest first")
async def finished_series(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
) -> FinishedSeriesOut:
    return FinishedSeriesOut(
        points=[
            FinishedPointOut(
                id=p.id,
                finished_at=p.finished_at,
                outcome=p.outcome,
                deal=p.outcome == "deal",
                reward=p.reward,
                savings_pct=p.savings_pct,
                model_version=p.model_version,
            )
            for p in metric_store.finished_series(session=session, limit=limit)
        ]
    )


@router.get("/checkpoints", summary="The checkpoints, oldest first")
async def checkpoints(runtime: RuntimeDep) -> list[CheckpointOut]:
    return [
        CheckpointOut(
            name=info.path.name,
            negotiations=info.negotiations,
            saved_at=info.saved_at,
            size_bytes=info.size_bytes,
        )
        for info in list_checkpoints(runtime.settings.checkpoint_dir)
    ]


@router.post(
    "/checkpoints/restore",
    summary="Serve (and keep training) a checkpoint from now on",
    responses={
        **AUTH,
        400: {"description": "Outside the checkpoint folder, missing, or not a checkpoint."},
    },
)
async def restore(
    body: RestoreIn, runtime: RuntimeDep, session: SessionDep, _operator: OperatorDep
) -> TrainingOut:
    checkpoint_dir = runtime.settings.checkpoint_dir
    try:
        path = resolve_checkpoint(checkpoint_dir, body.checkpoint)
        restored = restore_checkpoint(path, checkpoint_dir, runtime.sessions)
    except CheckpointError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
    runtime.service.serve(restored)  # this process at once; the others within a poll
    return _training(runtime, session)
