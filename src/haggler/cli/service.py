"""`haggler serve` and `haggler learn`: the HTTP service and its online learner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

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
    # The command line wins over HOST and PORT (the sign-in address the first start prints too).
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": port or settings.port}
    )
    if not settings.model_path.is_file():
        raise click.ClickException(
            f"no model at {settings.model_path}; train one first with `haggler train`"
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,  # a line per move cost ~10% of the turns per second under load
        # Beyond this many open connections (or requests in flight) every request gets a 503
        # instead of the process running out of file descriptors and memory: event streams hold
        # one each (MAX_STREAMS at most), the rest are short. Under the usual 1024 descriptors.
        limit_concurrency=settings.max_streams + 500,
        timeout_keep_alive=5,  # uvicorn's default, said here: idle keep-alive closes after 5 s
        timeout_graceful_shutdown=10,  # on stop, requests still open after 10 s are cancelled
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
    help="Run at a lower CPU priority than serving (nice +10): serving wins a busy core, "
    "the learner still gets a share of it.",
)
def learn(parent: int | None, low_priority: bool) -> None:
    """Run the online learner on the store at DATABASE_URL (`haggler serve` starts one itself;
    run this with LEARNER=external: one learner for several serving processes)."""
    import contextlib
    import logging
    import signal
    import threading

    if parent is not None:
        _die_with(parent)
    settings = load_settings()
    write_priority = None
    if low_priority:  # before the imports: loading torch takes seconds of CPU that serving needs
        write_priority = _background_cpu_priority(settings.learner_nice)

    import torch

    from haggler.learning.store_learner import StoreLearner
    from haggler.store.database import make_engine, migrate, session_factory

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
        learner = StoreLearner(
            settings,
            session_factory(engine),
            write_priority=write_priority or contextlib.nullcontext,
        )
        learner.run(stop, parent_pid=parent)
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


def _background_cpu_priority(nice: int) -> Callable[[], AbstractContextManager[None]]:
    """Lower this process's CPU priority by `nice`; return what the learner enters around
    its writes: the service's priority while it holds the store's write lock, for which on
    SQLite every serving process waits. Taking a priority back needs CAP_SYS_NICE (or an
    RLIMIT_NICE that allows it); without it, writes stay at the lower priority, which still
    gets its share of a busy core (SCHED_IDLE got none while anything else wanted it)."""
    import contextlib
    import logging
    import os

    try:
        serving = os.getpriority(os.PRIO_PROCESS, 0)
        background = os.nice(nice)
    except (AttributeError, OSError):  # not on this platform: run at the service's priority
        return contextlib.nullcontext
    if background == serving:
        return contextlib.nullcontext
    may_raise = True

    @contextlib.contextmanager
    def serving_priority() -> Iterator[None]:
        nonlocal may_raise
        if may_raise:
            try:  # per thread on Linux: the learner writes from its main thread
                os.setpriority(os.PRIO_PROCESS, 0, serving)
            except PermissionError:
                may_raise = False
                logging.getLogger("haggler.training").info(
                    "[Training] The learner writes at nice %d: taking the service's priority "
                    "(%d) back needs CAP_SYS_NICE",
                    background,
                    serving,
                )
        if not may_raise:
            yield
            return
        try:
            yield
        finally:
            os.setpriority(os.PRIO_PROCESS, 0, background)

    return serving_priority
