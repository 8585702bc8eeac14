"""Long-lived objects built in the lifespan, and the FastAPI dependencies that hand them out."""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated

from cachetools import LRUCache
from fastapi import Depends, Header, HTTPException, Request, status
from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haggler.config import Settings
from haggler.serving.service import NegotiationService
from haggler.store.catalogue import StoredProduct
from haggler.store.negotiations import StoredNegotiation


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    service: NegotiationService
    open_negotiations: LRUCache[int, StoredNegotiation] = field(
        default_factory=lambda: LRUCache(maxsize=100_000)
    )
    """Negotiations in progress as last stored by this process: a move reads no rows. A stale
    entry (another serving process moved meanwhile) fails the store's optimistic check."""
    products: dict[int, StoredProduct] = field(default_factory=dict)
    """Products by id as read from the store (a stored product never changes)."""
    update_delays: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    """Seconds from a negotiation's end to this process serving weights trained on it."""
    learner_alive: Callable[[], bool] | None = None
    """Whether the learner this process started still runs (None: it started none)."""
    keep_learner_alive: Callable[[], None] | None = None
    """Restarts the learner process this process started, if it died."""
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    """This app's Prometheus metrics (its own registry: several apps may share a process)."""
    turn_latency: Histogram | None = None


# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in its thread
# pool, and a session opened there while handlers use the database on the event loop deadlocked
# under load (pool exhausted by sessions whose clean-up waited for the blocked loop). Database
# work is short and synchronous, on the loop, one request at a time: SQLite has one writer anyway.


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[Session]:
    """One request, one transaction: committed by the handler, rolled back on any error."""
    with runtime.sessions() as session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise


SessionDep = Annotated[Session, Depends(get_session)]


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (None: no such header)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str | None:
    return bearer(authorization)


TokenDep = Annotated[str | None, Depends(bearer_token)]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def require_operator(runtime: RuntimeDep, token: TokenDep) -> None:
    expected = runtime.settings.operator_token
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "operator actions need `Authorization: Bearer <OPERATOR_TOKEN>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if expected is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "operator actions are disabled: OPERATOR_TOKEN is not set"
        )
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong operator token")


OperatorDep = Annotated[None, Depends(require_operator)]
