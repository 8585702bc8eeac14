"""Server-sent events: one `update` event whenever what the pages show has changed.

The stream polls the store (and the serving model's version) about once a second and sends the
new state only when it differs from the last one sent, so idle pages cost one small read a second
and the pages refetch what they show when told. The store is read, not an in-process signal, so
a page sees negotiations that another service process on the same database has finished.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Query, Request
from sqlalchemy.orm import Session
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from haggler.api.deps import PrincipalDep, Runtime, RuntimeDep
from haggler.api.limits import StreamLimit, client_key
from haggler.api.schemas import MAX_ID
from haggler.store import base as store
from haggler.store import experiments
from haggler.store import metrics as metric_store
from haggler.store import negotiations as negotiation_store
from haggler.store import snapshots as snapshot_store
from haggler.store.accounts import Principal, Role

router = APIRouter(prefix="/api", tags=["events"])

POLL_SECONDS = 1.0
_jitter = random.Random(0)
"""Spreads the streams' polls over 0.75-1.25 s (in step, 200 streams took a core at once);
seeded, and nothing a page shows depends on it."""


def current_state(
    runtime: Runtime, principal: Principal, negotiation_id: int | None = None
) -> dict[str, Any]:
    """What the pages care about, small enough to compare every second; with `negotiation_id`,
    also how far that negotiation has got (a page following one negotiation's moves). Each role
    gets its own share: an operator everything, a purchaser its own negotiations, a seller the
    negotiation it follows (if it is party to it)."""
    followed: dict[str, Any] | None = None
    operator = principal.role is Role.OPERATOR
    mine = negotiation_store.NegotiationFilter(
        purchaser_id=principal.account_id if principal.role is Role.PURCHASER else None,
        seller_account_id=principal.account_id if principal.role is Role.SELLER else None,
    )
    with runtime.sessions() as session:
        if negotiation_id is not None:
            followed = {"turns": None, "finished": None}
            try:
                stored = negotiation_store.get_negotiation(
                    negotiation_id, session=session, with_decisions=False
                )
                party = operator or principal.account_id in (
                    stored.purchaser_id if principal.role is Role.PURCHASER else None,
                    stored.seller.account_id if principal.role is Role.SELLER else None,
                )
                if party:
                    followed = {
                        "turns": len(stored.state.transcript),
                        "finished": stored.state.is_over,
                    }
            except store.NotFound:
                pass
        newest = negotiation_store.newest_id(session=session, where=mine)
        negotiations, _ = negotiation_store.count_negotiations(session=session, where=mine)
        finished, _ = negotiation_store.count_negotiations(
            session=session, where=dataclasses.replace(mine, status="finished")
        )
        if not operator:
            return {
                "negotiations": negotiations,
                "finished": finished,
                "newest_id": newest,
                **({"negotiation": followed} if followed is not None else {}),
            }
        updates = metric_store.training_history(session=session, limit=1)
        safety = _safety_state(session)
    update = updates[-1] if updates else None
    service = runtime.service
    return {
        "negotiations": negotiations,
        "finished": finished,
        "newest_id": newest,
        "model_version": service.snapshot.version,
        "training_enabled": service.enable_training,
        "learner_updates": update.negotiations if update else 0,
        "replay_buffer_size": update.replay_buffer_size if update else 0,
        "last_checkpoint": update.checkpoint if update else None,
        **safety,
        **({"negotiation": followed} if followed is not None else {}),
    }


def _safety_state(session: Session) -> dict[str, Any]:
    """What safe learning changes without a negotiation finishing: the serving version in the
    store, the running A/B test and its last look (the learner records one every few seconds),
    and the model log (a candidate judged, a test decided, a rollback)."""
    running = experiments.running_ab_test(session=session)
    counts = snapshot_store.model_status_counts(session=session)
    return {
        "serving_version": snapshot_store.serving_version(session=session),
        "ab_test": (
            {"id": running.id, "look": (running.verdict or {}).get("reason")}
            if running is not None
            else None
        ),
        "model_versions": sorted(f"{src}/{status}: {n}" for (src, status), n in counts.items()),
    }


@router.get(
    "/events",
    summary="Server-sent events: `update` with the new state whenever it changes",
    response_class=EventSourceResponse,
)
async def events(
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    negotiation: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> EventSourceResponse:
    try:
        slot = runtime.stream_slots.acquire(client_key(request.scope))
    except StreamLimit as refused:
        raise HTTPException(
            refused.status_code, str(refused), headers={"Retry-After": str(refused.retry_after)}
        ) from None
    shutdown = anyio.Event()  # set when the server stops: the stream ends cleanly

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            last: dict[str, Any] | None = None
            while not shutdown.is_set() and not await request.is_disconnected():
                viewer = (
                    principal.role,
                    None if principal.role is Role.OPERATOR else principal.account_id,
                    negotiation,
                )
                state = runtime.stream_states.get(viewer)
                if state is None:
                    state = current_state(runtime, principal, negotiation)
                    runtime.stream_states[viewer] = state
                if state != last:
                    yield ServerSentEvent(data=json.dumps(state), event="update")
                    last = state
                with anyio.move_on_after(POLL_SECONDS * (0.75 + 0.5 * _jitter.random())):
                    await shutdown.wait()
        finally:
            slot.release()

    # The slot goes back when the stream ends, however it ends: the generator's `finally`, and
    # the background task for a response whose stream never started (released once).
    return EventSourceResponse(
        stream(),
        ping=15,
        shutdown_event=shutdown,
        shutdown_grace_period=POLL_SECONDS,
        background=BackgroundTask(slot.release),
    )
