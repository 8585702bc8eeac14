"""For the operator: summary metrics, training status and switch, checkpoints and restore."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, status

from haggler.api.deps import OperatorDep, RuntimeDep, SessionDep
from haggler.api.schemas import (
    CheckpointOut,
    Estimate,
    RestoreIn,
    SummaryOut,
    TrainingIn,
    TrainingOut,
)
from haggler.checkpoints import CheckpointError, list_checkpoints, resolve_checkpoint
from haggler.evaluation import mean_ci, proportion_ci
from haggler.store import repository as repo

router = APIRouter(prefix="/api", tags=["operations"])

AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "No operator token."},
    403: {"description": "Wrong operator token, or none configured."},
}


def _estimate(values: list[float] | list[int]) -> Estimate:
    e = mean_ci(np.asarray(values, dtype=float))
    return Estimate(**e.as_dict())


@router.get("/summary", summary="Summary metrics over all negotiations, with 95% intervals")
async def summary(session: SessionDep) -> SummaryOut:
    s = repo.summary(session=session)
    deal_rate = proportion_ci(s.deals, s.finished).as_dict()
    return SummaryOut(
        negotiations=s.negotiations,
        finished=s.finished,
        deals=s.deals,
        deal_rate=Estimate(**deal_rate),
        average_reward=_estimate(s.rewards),
        savings_total=s.savings_total,
        average_savings_pct=_estimate(s.savings_pct),
        average_rounds=_estimate(s.rounds),
    )


def _training(runtime: RuntimeDep) -> TrainingOut:
    service = runtime.service
    learner = service.learner
    learner_status = learner.status if learner is not None else None
    return TrainingOut(
        enabled=service.enable_training,
        epsilon=service.epsilon,
        model_version=service.agent.snapshot.version,
        replay_buffer_size=service.agent.buffer_size,
        negotiations_trained=learner_status.negotiations if learner_status else 0,
        last_loss=learner_status.last_loss if learner_status else None,
        last_checkpoint=learner_status.last_checkpoint.name
        if learner_status and learner_status.last_checkpoint
        else None,
        checkpoint_error=learner_status.checkpoint_error if learner_status else None,
        update_delay_median_s=float(np.median(learner_status.update_delays))
        if learner_status and learner_status.update_delays
        else None,
    )


@router.get("/training", summary="Online training status")
async def training(runtime: RuntimeDep) -> TrainingOut:
    return _training(runtime)


@router.put("/training", summary="Turn online training on or off", responses=AUTH)
async def set_training(
    body: TrainingIn, runtime: RuntimeDep, _operator: OperatorDep
) -> TrainingOut:
    runtime.service.set_training(body.enabled)
    return _training(runtime)


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
async def restore(body: RestoreIn, runtime: RuntimeDep, _operator: OperatorDep) -> TrainingOut:
    try:
        path = resolve_checkpoint(runtime.settings.checkpoint_dir, body.checkpoint)
        runtime.service.restore(path)
    except CheckpointError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
    return _training(runtime)
