"""Long-lived objects built in the lifespan, and the FastAPI dependencies that hand them out."""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from cachetools import LRUCache, TTLCache
from fastapi import Depends, HTTPException, Request, status
from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haggler.api.limits import StreamSlots, credentials_verified
from haggler.config import Settings
from haggler.serving.service import NegotiationService
from haggler.store import accounts
from haggler.store.accounts import Principal, Role
from haggler.store.negotiations import StoredNegotiation

PRINCIPAL_SECONDS = 5.0
"""How long a process trusts what it read about a token or session: a token revoked or an
account disabled by another process (the CLI) is refused within this time; by this one, at once."""


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
    update_delays: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    """Seconds from a negotiation's end to this process serving weights trained on it."""
    learner_alive: Callable[[], bool] | None = None
    """Whether the learner this process started still runs (None: it started none)."""
    keep_learner_alive: Callable[[], None] | None = None
    """Restarts the learner process this process started, if it died."""
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    """This app's Prometheus metrics (its own registry: several apps may share a process)."""
    turn_latency: Histogram | None = None
    principals: TTLCache[str, Principal | None] = field(
        default_factory=lambda: TTLCache(maxsize=10_000, ttl=PRINCIPAL_SECONDS)
    )
    """Who each token or session cookie signs in, as last read (revoked elsewhere: seconds)."""
    stream_states: TTLCache[tuple[Any, ...], dict[str, Any]] = field(
        default_factory=lambda: TTLCache(maxsize=10_000, ttl=0.5)
    )
    """What each viewer's event streams last read: one read a viewer, however many streams."""
    stream_slots: StreamSlots = field(init=False)
    """Places for event streams: MAX_STREAMS_PER_CLIENT a client, MAX_STREAMS in all."""

    def __post_init__(self) -> None:
        self.stream_slots = StreamSlots(
            self.settings.max_streams_per_client, self.settings.max_streams
        )


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


hash_token = accounts.token_hash
"""SHA-256 of a secret: how the store keeps tokens, sessions and seller tokens."""


SESSION_COOKIE = "haggler_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SIGN_IN = "send `Authorization: Bearer <token>`, or sign in at /login"


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _remembered(
    runtime: Runtime, key: str, read: Callable[[Session], Principal | None]
) -> Principal | None:
    """Who `key` signs in, read from the store at most once per PRINCIPAL_SECONDS."""
    if key in runtime.principals:
        return runtime.principals[key]
    with runtime.sessions() as session:
        principal = read(session)
    runtime.principals[key] = principal
    return principal


def account_token_principal(runtime: Runtime, token: str) -> Principal | None:
    """The account a bearer token signs in (None: unknown, revoked, or account disabled)."""
    return _remembered(
        runtime,
        "t:" + hash_token(token),
        lambda session: accounts.principal_for_token(token, session=session),
    )


def session_principal(runtime: Runtime, request: Request) -> Principal | None:
    """The account the request's session cookie signs in (None: no cookie, or it expired)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 200:
        return None
    return _remembered(
        runtime,
        "s:" + hash_token(cookie),
        lambda session: accounts.principal_for_session(cookie, session=session),
    )


def principal_of(runtime: Runtime, request: Request) -> Principal | None:
    """Who sent the request: a bearer token's account, else the session cookie's (whose unsafe
    requests must carry the page's CSRF token), else nobody. A bearer token that signs in no
    account is refused outright (401), whatever cookie comes with it."""
    token = bearer(request.headers.get("authorization"))
    if token is not None:
        principal = account_token_principal(runtime, token)
        if principal is None:
            raise unauthorized(f"unknown or revoked token; {SIGN_IN}")
        credentials_verified(request.scope)  # the rate limits' strikes spare it (api.limits)
        return principal
    principal = session_principal(runtime, request)
    if principal is not None:
        credentials_verified(request.scope)
    if principal is not None and request.method not in SAFE_METHODS:
        # The cookie goes with every request to this site, forms of other sites included; the
        # CSRF token only with the pages' own requests (it is in the page, not in a cookie).
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), (principal.csrf_token or "").encode()):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"missing or wrong {CSRF_HEADER} header: reload the page and try again",
            )
    return principal


async def optional_principal(request: Request, runtime: RuntimeDep) -> Principal | None:
    return principal_of(runtime, request)


async def require_principal(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    if principal is None:
        raise unauthorized(f"this needs an account: {SIGN_IN}")
    return principal


PrincipalDep = Annotated[Principal, Depends(require_principal)]
"""Any signed-in account."""


def _role_check(*roles: Role) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    wanted = " or ".join(
        f"a{'n' if role.value[0] in 'aeiou' else ''} {role.value}" for role in roles
    )

    async def check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this needs {wanted} account; {principal.name!r} is a {principal.role.value}",
            )
        return principal

    return check


require_operator = _role_check(Role.OPERATOR)
OPERATORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No token or login."},
    403: {"description": "Not an operator account."},
}
OperatorDep = Annotated[Principal, Depends(require_operator)]
"""An operator."""
PurchaserDep = Annotated[Principal, Depends(_role_check(Role.PURCHASER, Role.OPERATOR))]
"""A purchaser, or an operator (who may do whatever a purchaser may)."""
SellerDep = Annotated[Principal, Depends(_role_check(Role.SELLER, Role.OPERATOR))]
"""A seller account, or an operator."""
