"""The FastAPI app: built from one Settings object; engine, agent and learner in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from haggler import __version__
from haggler.api.deps import Runtime
from haggler.api.routes import catalogue, events, negotiations, operations, selling
from haggler.config import Settings
from haggler.negotiation import ProtocolError
from haggler.service import NegotiationService
from haggler.store import repository as repo
from haggler.store.database import make_engine, migrate, session_factory
from haggler.web import pages

log = logging.getLogger("haggler.api")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(1)  # measured: a second thread only added latency spikes
        engine = make_engine(settings.database_url)
        migrate(engine)
        sessions = session_factory(engine)
        with sessions() as session:
            repo.seed_catalogue(session=session)
            session.commit()
            finished = repo.summary(session=session).finished
        service = NegotiationService(
            settings.model_path,
            enable_training=settings.enable_training,
            settings=settings,
            negotiations_done=finished,
        )
        with sessions() as session:
            experiences = repo.finished_experiences(
                session=session, limit=service.agent.config.buffer_size
            )
        if experiences is not None:  # the replay buffer comes back from the store
            service.agent.add_transitions(experiences)
        log.info(
            "haggler %s serving model version %d (training %s), replay buffer %d",
            __version__,
            service.agent.snapshot.version,
            "on" if settings.enable_training else "off",
            service.agent.buffer_size,
        )
        app.state.runtime = Runtime(settings, engine, sessions, service)
        try:
            yield
        finally:
            service.close()
            engine.dispose()

    app = FastAPI(
        title="haggler",
        version=__version__,
        summary="A buyer-side negotiation agent that haggles unit prices and learns online.",
        lifespan=lifespan,
    )

    @app.exception_handler(ProtocolError)
    async def protocol_error(_request: Request, error: ProtocolError) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(error)})

    app.include_router(catalogue.router)
    app.include_router(negotiations.router)
    app.include_router(operations.router)
    app.include_router(selling.router)
    app.include_router(events.router, include_in_schema=False)  # an endless stream
    pages.install(app)
    return app
