"""The FastAPI app: built from one Settings object; engine, agent and learner in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from haggler import __version__
from haggler.api import docs, security
from haggler.api.deps import Runtime
from haggler.api.json_bodies import RefuseDuplicateKeys
from haggler.api.limits import RequestLimits
from haggler.api.routes import (
    accounts as account_routes,
)
from haggler.api.routes import (
    catalogue,
    events,
    metrics,
    negotiations,
    operations,
    safety,
    selling,
)
from haggler.config import Settings
from haggler.core.negotiation import ProtocolError
from haggler.learning.checkpoints import read_snapshot
from haggler.policy.snapshot import ModelFileError, PolicySnapshot
from haggler.serving.learner_supervisor import LearnerProcess
from haggler.serving.service import NegotiationService
from haggler.store import accounts, counters, experiments, maintenance, versions
from haggler.store import base as store
from haggler.store import catalogue as catalogue_store
from haggler.store import snapshots as snapshot_store
from haggler.store.database import make_engine, migrate, session_factory
from haggler.web import pages

log = logging.getLogger("haggler.api")

LearnerStop = Callable[[], None]

POLL_SECONDS = 0.05
"""How often a serving process looks for a new model version or a training switch (one cheap
read): half of a negotiation's delay to the weights that learned from it was this wait."""
WAL_CHECK_SECONDS = 0.5
"""How often a serving process looks at SQLite's write-ahead log (a `stat` and a 20-byte read)."""


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        migrate(engine)
        sessions = session_factory(engine)
        with sessions() as session:
            catalogue_store.seed_catalogue(session=session)
            counters.set_counter(
                counters.TRAINING_ENABLED, int(settings.enable_training), session=session
            )
            session.commit()
        _bootstrap_accounts(settings, sessions)
        # The model file is read (with torch) only for a store that serves no version yet.
        snapshot = versions.ensure_serving(sessions, lambda: read_snapshot(settings.model_path))
        service = NegotiationService(
            settings.model_path,
            enable_training=settings.enable_training,
            settings=settings,
            learn_inline=False,  # the learner trains from the store, never in a request
            snapshot=snapshot,
        )
        runtime = Runtime(settings, engine, sessions, service)
        runtime.turn_latency = metrics.turn_latency_histogram(runtime.metrics)
        runtime.metrics.register(metrics.StoreCollector(sessions, service))
        app.state.runtime = runtime
        stop_learner = _start_learner(settings, runtime)
        follower = asyncio.create_task(_follow_store(runtime))
        folding = asyncio.create_task(_fold_write_ahead_log(runtime))
        # Everything built so far lives as long as the app: keep the collector from scanning it
        # again and again (full collections over torch's objects showed as latency spikes).
        gc.freeze()
        log.info(
            "haggler %s serving model version %d (training %s, learner: %s)",
            __version__,
            service.snapshot.version,
            "on" if settings.enable_training else "off",
            settings.learner,
        )
        try:
            yield
        finally:
            for task in (follower, folding):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            stop_learner()
            engine.dispose()

    app = FastAPI(
        title="haggler",
        version=__version__,
        summary="A buyer-side negotiation agent that haggles unit prices and learns online.",
        lifespan=lifespan,
        # Served by `docs` instead: from local files, and only to signed-in accounts.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(ProtocolError)
    async def protocol_error(_request: Request, error: ProtocolError) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(error)})

    @app.exception_handler(OperationalError)
    async def store_unavailable(_request: Request, error: OperationalError) -> JSONResponse:
        log.warning("Store unavailable: %s", error.orig)
        return JSONResponse(
            status_code=503,
            content={"detail": "the store is unavailable; try again shortly"},
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input, and JSON's NaN/Infinity literals (which
        # Python's parser accepts) cannot be written back: that was a 500 instead of a 422.
        return JSONResponse(
            status_code=422, content={"detail": _json_safe(jsonable_encoder(error.errors()))}
        )

    app.include_router(account_routes.router)
    app.include_router(catalogue.router)
    app.include_router(negotiations.router)
    app.include_router(operations.router)
    app.include_router(safety.router)
    app.include_router(metrics.router)
    app.include_router(selling.router)
    app.include_router(events.router, include_in_schema=False)  # an endless stream
    pages.install(app)
    docs.install(app)
    # Innermost: compression of what the pages read (see CompressReads).
    app.add_middleware(CompressReads)
    # Inside the host check and the security headers (a 429 or 413 carries them too), outside
    # everything else: a refused request reaches no route, page or docs.
    app.add_middleware(RefuseDuplicateKeys)
    app.add_middleware(RequestLimits, settings=settings)
    security.install(app, settings)  # last: the outermost middleware
    return app


class CompressReads:
    """Answers of 1 kB or more to GET requests go gzip-compressed to a client that accepts it:
    pages, their scripts, the dashboard's series (5-10 times smaller on the wire). Moves and new
    negotiations (POST), the service's hot path, are left alone: small answers, and Starlette's
    middleware cost ~6 µs a request even when it compresses nothing.

    The event stream is not held back: text/event-stream is among Starlette's default exclusions
    (older Starlettes buffered streams; tests/e2e/test_dashboard_charts.py checks that an update
    arrives while the stream is open), and an answer compressed already (plotly.js,
    `pages.plotly_js`) goes as it is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024, compresslevel=6)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _bootstrap_accounts(settings: Settings, sessions: sessionmaker[Session]) -> None:
    """OPERATOR_TOKEN as the `operator` account's token; on a fresh store, the `admin` operator,
    whose password is printed once (it is stored only as a hash)."""
    for attempt in range(2):  # two processes starting at once: the loser reads the winner's
        with sessions() as session:
            try:
                password = accounts.bootstrap(
                    session=session, operator_token=settings.operator_token
                )
                session.commit()
                break
            except store.Conflict:
                session.rollback()
                if attempt:
                    raise
    if password is not None:
        where = f"http://{settings.host}:{settings.port}/login"
        log.warning(
            "\n  Created the operator account %r. Sign in at %s\n"
            "  name: %s   password: %s\n"
            "  (shown once; change it with `haggler users password %s`, add accounts with "
            "`haggler users add`)\n",
            accounts.LOCAL_OPERATOR,
            where,
            accounts.LOCAL_OPERATOR,
            password,
            accounts.LOCAL_OPERATOR,
        )


def _json_safe(value: Any) -> Any:
    """`value` with every non-finite float written as text ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _start_learner(settings: Settings, runtime: Runtime) -> LearnerStop:
    """Start the learner the settings ask for; return how to stop it."""
    if settings.learner == "external":
        return lambda: None
    if settings.learner == "thread":
        stop = threading.Event()
        from haggler.learning.store_learner import StoreLearner  # loads torch

        learner = StoreLearner(settings, runtime.sessions)
        thread = threading.Thread(target=learner.run, args=(stop,), name="haggler-learner")
        thread.start()
        runtime.learner_alive = thread.is_alive

        def stop_thread() -> None:
            stop.set()
            thread.join(30)

        return stop_thread
    process = LearnerProcess(settings)
    runtime.learner_alive = process.alive
    runtime.keep_learner_alive = process.keep_alive
    return process.stop


async def _fold_write_ahead_log(runtime: Runtime) -> None:
    """Fold SQLite's write-ahead log when the learner does not (behind, busy, stopped), in a
    worker thread so that the fold never holds up the event loop. Nothing on PostgreSQL."""
    fold = maintenance.WriteAheadLogFold(runtime.engine)
    if fold.path is None:
        return
    while True:
        await asyncio.sleep(WAL_CHECK_SECONDS)
        try:
            if fold.due():
                await asyncio.to_thread(fold.fold)
        except OperationalError as error:  # a busy store: the next look tries again
            log.warning("could not fold the write-ahead log (%s)", error.orig)
        except Exception:  # anything else must not end the folding for good
            log.exception("could not fold the write-ahead log")


async def _follow_store(runtime: Runtime) -> None:
    """Act with the version the store names as serving, and follow the training switch and
    the A/B test. Each poll is one cheap read; weights are read only when they changed."""
    service = runtime.service
    while True:
        await asyncio.sleep(POLL_SECONDS)
        try:
            with runtime.engine.connect() as connection:
                followed = snapshot_store.followed(session=connection)
            version = followed.serving_version
            new_serving = version is not None and version != service.snapshot.version
            new_test = followed.ab_test_id is not None and (
                service.ab_test is None
                or service.ab_test[0] != followed.ab_test_id
                or service.challenger is None
                or service.challenger.version != followed.challenger_version
            )
            stored = test = challenger = None
            if new_serving or new_test:
                with runtime.sessions() as session:
                    if new_serving and version is not None:
                        stored = snapshot_store.get_snapshot(version, session=session)
                    test = experiments.running_ab_test(session=session) if new_test else None
                    if test is not None:
                        challenger = snapshot_store.get_snapshot(
                            test.challenger_version, session=session
                        )
        except OperationalError as error:  # busy database: the next poll tries again
            log.warning("could not read the serving model version (%s)", error.orig)
            continue
        except Exception:  # anything else must not end the following for good
            log.exception("could not read the serving model version")
            continue
        if runtime.keep_learner_alive is not None:
            runtime.keep_learner_alive()
        if followed.training_enabled != service.enable_training:
            service.set_training(followed.training_enabled)
        try:
            if followed.ab_test_id is None:
                service.ab_test, service.challenger = None, None
            elif test is not None and challenger is not None and challenger.weights is not None:
                service.challenger = PolicySnapshot.from_bytes(
                    challenger.weights, challenger.version
                )
                service.ab_test = (test.id, test.split)
            if stored is not None and stored.weights is not None:
                service.serve(PolicySnapshot.from_bytes(stored.weights, stored.version))
        except ModelFileError:  # unreadable weights: keep serving what this process has
            log.exception("could not load a model version from the store")
            continue
        if stored is not None and stored.weights is not None and stored.trained_from is not None:
            delay = datetime.now(UTC) - _aware(stored.trained_from)
            runtime.update_delays.append(delay.total_seconds())


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
