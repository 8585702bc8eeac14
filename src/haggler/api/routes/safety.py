"""Safe online learning for the operator: the state of the guards, candidates judged on demand,
A/B tests (list, start, promote or reject by hand)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from starlette.concurrency import run_in_threadpool

from haggler.api.deps import OPERATORS, OperatorDep, RuntimeDep, SessionDep, require_operator
from haggler.api.routes.operations import AUTH
from haggler.api.schemas import (
    MAX_ID,
    ABDecisionIn,
    ABTestIn,
    ABTestOut,
    CandidateEvaluationOut,
    ModelEventOut,
    ModelVersionOut,
    SafetyOut,
)
from haggler.policy.snapshot import ModelFileError
from haggler.safety import ab_decisions, candidates
from haggler.store import base as store
from haggler.store import experiments, versions
from haggler.store import snapshots as snapshot_store

# Operators' pages: every route here needs an operator account.
router = APIRouter(
    prefix="/api",
    tags=["safe learning"],
    dependencies=[Depends(require_operator)],
    responses=OPERATORS,
)

TestId = Annotated[int, Path(ge=1, le=MAX_ID, description="The A/B test's id.")]
Version = Annotated[int, Path(ge=1, le=MAX_ID, description="A model version.")]


@router.get("/safety", summary="Promotion mode, the known good version, A/B test and rollbacks")
async def safety_status(runtime: RuntimeDep, session: SessionDep) -> SafetyOut:
    settings = runtime.settings
    counts = snapshot_store.model_status_counts(session=session)
    rollbacks = snapshot_store.model_log(session=session, limit=1, source="rollback")
    running = experiments.running_ab_test(session=session)
    return SafetyOut(
        promotion=settings.promotion,
        exploration=settings.exploration,
        ab_split=settings.ab_split,
        auto_rollback=settings.auto_rollback,
        serving_version=snapshot_store.serving_version(session=session),
        known_good_version=experiments.monitor_mark(session=session).known_good,
        running_test=ABTestOut.model_validate(running) if running else None,
        promotions=snapshot_store.promotion_count(session=session),
        rejections=sum(n for (_, st), n in counts.items() if st == "rejected"),
        rollbacks=sum(n for (src, _), n in counts.items() if src == "rollback"),
        last_rollback=ModelVersionOut.model_validate(rollbacks[0]) if rollbacks else None,
    )


@router.get(
    "/safety/events",
    summary="Restores, rollbacks, promotions and A/B test starts and ends, newest first",
    description=(
        "What the dashboard's charts mark. A version the learner publishes to serve at once "
        "(PROMOTION=immediate) is no event: it is the learning the charts show."
    ),
)
async def model_events(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[ModelEventOut]:
    found = [
        ModelEventOut(
            at=change.at,
            kind=change.kind,
            version=change.version,
            checkpoint=change.checkpoint if change.kind == "restore" else None,
            copy_of=change.copy_of,
            reason=change.reason,
        )
        for change in snapshot_store.serving_changes(session=session, limit=limit)
    ]
    for test in experiments.ab_tests(session=session, limit=limit):
        arms = {
            "version": test.challenger_version,
            "champion_version": test.champion_version,
            "ab_test_id": test.id,
        }
        found.append(ModelEventOut(at=test.started_at, kind="ab_test_start", **arms))
        if test.ended_at is not None and test.status != "running":
            found.append(
                ModelEventOut(
                    at=test.ended_at,
                    kind="ab_test_end",
                    outcome=test.status,
                    reason=test.reason,
                    **arms,
                )
            )
    found.sort(key=lambda event: _utc(event.at), reverse=True)
    return found[:limit]


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.get("/ab-tests", summary="A/B tests, newest first")
async def ab_tests(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 20
) -> list[ABTestOut]:
    return [ABTestOut.model_validate(t) for t in experiments.ab_tests(session=session, limit=limit)]


@router.get(
    "/ab-tests/{test_id}",
    summary="One A/B test with its last per-arm figures",
    responses={404: {"description": "No such A/B test."}},
)
async def ab_test(test_id: TestId, session: SessionDep) -> ABTestOut:
    try:
        return ABTestOut.model_validate(experiments.get_ab_test(test_id, session=session))
    except store.NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


@router.post(
    "/ab-tests",
    status_code=status.HTTP_201_CREATED,
    summary="Start an A/B test of a stored model version against the serving one",
    responses={
        **AUTH,
        404: {"description": "No such model version, or its weights are gone."},
        409: {
            "description": "A test runs already, the version is the one serving, or every "
            "update serves at once (immediate promotion with training on)."
        },
    },
)
async def start_ab_test(
    body: ABTestIn, runtime: RuntimeDep, session: SessionDep, _operator: OperatorDep
) -> ABTestOut:
    if runtime.settings.promotion == "immediate" and runtime.service.enable_training:
        raise HTTPException(status.HTTP_409_CONFLICT, candidates.NO_AB_TEST_WHILE_IMMEDIATE)
    try:
        test = candidates.start_ab_test(body.challenger_version, body.split, session=session)
        session.commit()
    except store.NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except store.Conflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    return ABTestOut.model_validate(test)


@router.post(
    "/ab-tests/{test_id}/decision",
    summary="Decide a running A/B test by hand: promote the challenger or reject it",
    responses={
        **AUTH,
        404: {"description": "No such A/B test."},
        409: {"description": "The test is not running, or the serving model changed."},
    },
)
async def decide_ab_test(
    test_id: TestId, body: ABDecisionIn, runtime: RuntimeDep, _operator: OperatorDep
) -> ABTestOut:
    try:
        ended = ab_decisions.decide_ab_test(
            runtime.sessions,
            test_id,
            body.decision,
            decided_by="operator",
            reason=body.reason,
            settings=runtime.settings,
        )
    except store.NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except store.Conflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    if ended.status == "promoted":  # this process at once; the others within a poll
        with runtime.sessions() as session:
            promoted = versions.serving_snapshot(session)
        if promoted is not None:
            runtime.service.serve(promoted)
    return ABTestOut.model_validate(ended)


@router.post(
    "/models/{version}/evaluate",
    summary="Judge a stored model version as the gate would, against the serving one",
    description=(
        "Off-policy estimates on the newest logged negotiations (per-decision weighted "
        "importance sampling and doubly robust, with bootstrap intervals and effective sample "
        "sizes) and both models on the fixed held-out suite of simulated sellers. Takes a "
        "second or two; changes nothing."
    ),
    responses={**AUTH, 404: {"description": "No such model version, or its weights are gone."}},
)
async def evaluate_version(
    version: Version, runtime: RuntimeDep, _operator: OperatorDep
) -> CandidateEvaluationOut:
    # Off the event loop: the moves of other negotiations go on being answered meanwhile.
    try:
        judged = await run_in_threadpool(
            candidates.judge_against_serving,
            runtime.sessions,
            version,
            candidates.gate_config(runtime.settings),
        )
    except (store.NotFound, ModelFileError) as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    return CandidateEvaluationOut(
        version=judged.candidate.version,
        champion_version=judged.champion.version,
        passed=judged.decision.passed,
        reason=judged.decision.reason,
        figures=judged.decision.figures,
    )
