"""`haggler serve` and `haggler learn`: the HTTP service and its online learner."""

from __future__ import annotations

import click

from haggler.cli.common import load_settings


@click.command()
@click.option("--host", default=None, help="Listen address [default: HOST, 127.0.0.1].")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Port [default: PORT, 8000]."
)
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP service (API docs at /docs) on the store at DATABASE_URL."""
    import logging

    import uvicorn

    from haggler.api.app import create_app

    settings = load_settings()
    if not settings.model_path.is_file():
        raise click.ClickException(
            f"no model at {settings.model_path}; train one first with `haggler train`"
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
        access_log=False,  # a line per move cost ~10% of the turns per second under load
    )


@click.command()
@click.option(
    "--parent",
    type=int,
    default=None,
    hidden=True,
    help="Stop when the process with this id (the service that started it) is gone.",
)
@click.option(
    "--low-priority",
    is_flag=True,
    help="Use only CPU time that serving processes on this machine leave idle.",
)
def learn(parent: int | None, low_priority: bool) -> None:
    """Run the online learner on the store at DATABASE_URL (`haggler serve` starts one itself;
    run this with LEARNER=external: one learner for several serving processes)."""
    import logging
    import signal
    import threading

    if parent is not None:
        _die_with(parent)
    if low_priority:  # before the imports: loading torch takes seconds of CPU that serving needs
        _lowest_cpu_priority()

    import torch

    from haggler.learning.store_learner import StoreLearner
    from haggler.store.database import make_engine, migrate, session_factory

    settings = load_settings()
    if not settings.model_path.is_file():
        raise click.ClickException(
            f"no model at {settings.model_path}; train one first with `haggler train`"
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    engine = make_engine(settings.database_url)
    migrate(engine)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        StoreLearner(settings, session_factory(engine)).run(stop, parent_pid=parent)
    finally:
        engine.dispose()


def _die_with(parent: int) -> None:
    """End this process the moment the service that started it ends, even by `kill -9`: a learner
    left behind would go on writing to a store that the service's next start also uses."""
    import contextlib
    import ctypes
    import os
    import signal

    # Linux: PR_SET_PDEATHSIG (1), a signal from the kernel when the parent exits; elsewhere the
    # learner's loop notices that the parent is gone.
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() != parent:  # it ended before the signal was set up
        raise SystemExit(0)


def _lowest_cpu_priority() -> None:
    """SCHED_IDLE where there is one (Linux): the process runs only on a core nothing else
    wants, and any serving process that wakes up takes the core at once; else nice 19."""
    import os

    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
