"""Scale benchmark: the service's reads, turns and learner with 10k, 100k and 1M negotiations in
its store, on SQLite or PostgreSQL.

The store is filled fast (`bench.scale_fill`: a pool of negotiations played for real, copied in
bulk, with the learner's history). At each size a real `haggler serve` (with its learner process)
is started afresh on it, after the fill's pages are written back, so that every size is measured
in the same state (without either, one run measured the event stream's first event 3x slower at
100k and 1M than at 10k, though nothing it reads grows with the store). With training off, every
read endpoint is timed one request at a time, all endpoints in turn, and wrk loads the service
with turns at a fixed rate. Then training is switched on (`PUT /api/training`, default settings
otherwise) and the learner's capacity and its lag at 50%, 100% and 200% of it are measured
(`bench.scale_learner`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from haggler.bench.crash import KeepAlive, ServeProcess, wipe_postgres
from haggler.bench.scale_fill import Accounts, Pool, fill, history_clock, newest_id, play_pool
from haggler.bench.scale_learner import LagRun, LearnerLag, TurnLoad, capacity, lag, turn_load
from haggler.bench.service import OPERATOR_TOKEN
from haggler.store import maintenance
from haggler.store.tables import NegotiationRow

HOST = "127.0.0.1"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ScaleConfig:
    """What `run_scale` fills, times and loads."""

    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    """Negotiations in the store at each measurement, filled up to in turn."""
    database_url: str | None = None
    """The store: None for a temporary SQLite file. A PostgreSQL database is WIPED first (its
    `public` schema dropped); an SQLite file must not hold negotiations yet."""
    model_path: Path = Path("models/buyer_agent.pth")
    """The model the server starts from (copied into the run's temporary folder)."""
    pool: int = 2_000
    """Negotiations played for real; the fill copies them."""
    batch: int = 5_000
    """Negotiations copied per transaction."""
    history_days: float = 30.0
    """The copies end over this much time before the run (the largest size's worth)."""
    updates_per_negotiation: float = 0.1
    """Learner updates (a model version and a training point each) in the filled history per
    negotiation: 0.1 is the learner's 5 steps a second under 50 negotiations a second; a quiet
    service, whose every negotiation gets a step of its own, has 1."""
    requests: int = 200
    """Timed requests per read endpoint, after three untimed rounds."""
    turn_rate: float = 300.0
    """Turns a second wrk offers in the turn-latency run (training off)."""
    load_seconds: int = 15
    connections: int = 50
    """Negotiations wrk keeps in flight."""
    capacity_seconds: float = 10.0
    """How long the learner's capacity is measured."""
    lag_levels: tuple[float, ...] = (0.5, 1.0, 2.0)
    """Shares of the learner's capacity offered, as finished negotiations a second."""
    lag_seconds: int = 40
    drain_seconds: float = 30.0
    """After each lag run, how long its negotiations may wait for the learner."""
    replay_anchor_negotiations: int | None = None
    """REPLAY_ANCHOR_NEGOTIATIONS of the server (None: the setting's default)."""
    settle: bool = True
    """Wait for the learner process to be ready before the first reads (its start takes
    seconds of CPU: loading torch, the replay buffer)."""
    seed: int = 0

    @classmethod
    def quick(cls, **changes: Any) -> ScaleConfig:
        """Every phase in seconds, on tiny stores: a check that it all runs."""
        quick: dict[str, Any] = {
            "sizes": (200, 1_000),
            "pool": 100,
            "batch": 250,
            "requests": 3,
            "turn_rate": 100.0,
            "load_seconds": 1,
            "connections": 10,
            "capacity_seconds": 1.0,
            "lag_seconds": 1,
            "drain_seconds": 3.0,
            "replay_anchor_negotiations": 20,
            "settle": False,
        }
        return cls(**(quick | changes))


@dataclass(frozen=True)
class ReadTiming:
    path: str
    """The endpoint as requested (`<mid>`: an id half-way through the history)."""
    median_ms: float
    p99_ms: float
    errors: int
    """Answers other than 200."""


@dataclass(frozen=True)
class SizeResult:
    size: int
    negotiations: int
    """In the store when its reads were timed."""
    filled: int
    fill_seconds: float
    store_bytes: int
    reads: tuple[ReadTiming, ...]
    turns: TurnLoad
    capacity: float
    """Negotiations a second the learner trains one by one (the spec's steps for each)."""
    capacity_merged: int
    """Negotiations merged while the capacity was measured (0: it trained one by one)."""
    lag: tuple[LearnerLag, ...]


@dataclass(frozen=True)
class ScaleResult:
    backend: str
    pool: int
    requests: int
    sizes: tuple[SizeResult, ...]
    seconds: float


# -- reads ---------------------------------------------------------------------------------------


READ_ENDPOINTS = (
    "/api/summary",
    "/metrics",
    "/api/metrics/negotiations?limit=1000",
    "/api/negotiations",
    "/api/negotiations?outcome=deal",
    "/api/negotiations?seller=boulware&outcome=deal",
    "/api/negotiations?before=<mid>",
    "/api/negotiations/<mid>",
    "/api/training",
    "/api/training/history",
    "/api/models",
    "/api/products",
    "/api/checkpoints",
    "/api/safety",
    "/api/safety/events",
    "/api/ab-tests",
    "/api/events (first event)",
    "/api/events?negotiation=<mid> (first event)",
    "/api/negotiations (purchaser)",
    "/api/sell/negotiations (seller)",
)
"""Every read endpoint timed, as the operator unless a (purchaser) or (seller) says otherwise;
`<mid>` is an id half-way through the history. An event stream is timed to its first event."""


def _read_paths(mid: int) -> list[tuple[str, str]]:
    """(label, path) of every read endpoint."""
    return [(label, label.split(" ")[0].replace("<mid>", str(mid))) for label in READ_ENDPOINTS]


class _Reader:
    """Timed GETs on one keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection(HOST, port, timeout=60)

    def get(self, path: str, token: str) -> tuple[int, float]:
        """(status, seconds) of one GET; an event stream counts until its first event."""
        headers = {"Authorization": f"Bearer {token}"}
        if path.startswith("/api/events"):
            with contextlib.closing(http.client.HTTPConnection(HOST, self.port, timeout=60)) as c:
                started = time.perf_counter()
                c.request("GET", path, headers={**headers, "Accept": "text/event-stream"})
                with contextlib.closing(c.getresponse()) as answer:
                    while answer.status == 200:
                        line = answer.readline()
                        if not line or line.startswith(b"data:"):
                            break
                    return answer.status, time.perf_counter() - started
        started = time.perf_counter()
        self.connection.request("GET", path, headers=headers)
        answer = self.connection.getresponse()
        answer.read()
        elapsed = time.perf_counter() - started
        if answer.getheader("connection", "").lower() == "close":
            self.close()
            self.connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
        return answer.status, elapsed

    def close(self) -> None:
        self.connection.close()


def time_reads(port: int, mid: int, accounts: Accounts, requests: int) -> tuple[ReadTiming, ...]:
    """Every read endpoint `requests` times, one request at a time, the endpoints in turn (so
    that whatever else the machine does falls on all of them alike); three untimed rounds first."""
    endpoints = _read_paths(mid)
    who = {"(purchaser)": accounts.purchaser_token, "(seller)": accounts.seller_token}
    token_of = [who.get(label.split(" ")[-1], OPERATOR_TOKEN) for label, _ in endpoints]
    seconds: list[list[float]] = [[] for _ in endpoints]
    errors = [0] * len(endpoints)
    reader = _Reader(port)
    try:
        for round_ in range(3 + requests):
            for i, (_, path) in enumerate(endpoints):
                status, elapsed = reader.get(path, token_of[i])
                if round_ >= 3:
                    seconds[i].append(elapsed)
                    errors[i] += status != 200
    finally:
        reader.close()
    return tuple(
        ReadTiming(
            label,
            float(np.median(times)) * 1000,
            float(np.percentile(times, 99)) * 1000,
            failed,
        )
        for (label, _), times, failed in zip(endpoints, seconds, errors, strict=True)
    )


def check_summary(port: int, engine: Engine) -> int:
    """GET /api/summary against the store's own count: the totals kept while filling must be
    what the negotiations add up to. Returns the number of negotiations."""
    with contextlib.closing(KeepAlive(port)) as connection:
        status, summary = connection.request("GET", "/api/summary", OPERATOR_TOKEN)
    if status != 200:
        raise RuntimeError(f"GET /api/summary: {status} {summary}")
    finished = NegotiationRow.status == "finished"
    with engine.connect() as connection:
        counted = connection.execute(
            select(
                func.count(),
                func.count().filter(finished),
                func.count().filter(NegotiationRow.outcome == "deal"),
                func.avg(NegotiationRow.reward).filter(finished),
            ).select_from(NegotiationRow)
        ).one()
    reward = summary["average_reward"]["mean"]
    if (summary["negotiations"], summary["finished"], summary["deals"]) != tuple(counted[:3]) or (
        reward is not None and abs(reward - float(counted[3])) > 1e-6
    ):
        raise RuntimeError(f"/api/summary {summary} does not match the store's {tuple(counted)}")
    return int(summary["negotiations"])


# -- the run -------------------------------------------------------------------------------------


def _environment(config: ScaleConfig, work: Path, database_url: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MODEL_PATH": str(work / "buyer_agent.pth"),
        "CHECKPOINT_DIR": str(work / "checkpoints"),
        "ENABLE_TRAINING": "false",
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
        # One client makes every request: the per-client limits would be what is measured.
        "RATE_LIMIT_PER_SECOND": "0",
        "MAX_STREAMS_PER_CLIENT": "100",
    }
    if config.replay_anchor_negotiations is not None:
        env["REPLAY_ANCHOR_NEGOTIATIONS"] = str(config.replay_anchor_negotiations)
    return env


def _tidy(engine: Engine) -> None:
    """After a fill, the store as a while in service leaves it: PostgreSQL's statistics and
    visibility map up to date (autovacuum's work), SQLite's write-ahead log folded."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    else:
        with Session(engine) as session:
            maintenance.checkpoint_write_ahead_log(session=session, restart_frames=0, truncate=True)
    # The fill leaves gigabytes of dirty pages for the kernel to write back: without this, the
    # write-back ran during the reads after the fill to 1M and slowed every one (the event stream's
    # first event, which opens a connection each time, 2-3x), though no read grew with the store.
    os.sync()


def _store_bytes(engine: Engine) -> int:
    from haggler.store.archive import store_bytes

    with Session(engine) as session:
        return store_bytes(session=session) or 0


@contextlib.contextmanager
def _store(config: ScaleConfig) -> Iterator[tuple[str, Path]]:
    """(database URL, a folder for the run's files): a temporary SQLite file by default; a
    PostgreSQL database is wiped first."""
    with tempfile.TemporaryDirectory(prefix="haggler-scale-") as folder:
        work = Path(folder)
        url = config.database_url or f"sqlite:///{work / 'haggler.db'}"
        if url.startswith(("postgresql", "postgres")):
            wipe_postgres(url)
        yield url, work


def _set_training(server: ServeProcess, enabled: bool) -> None:
    with contextlib.closing(KeepAlive(server.port)) as connection:
        status, answer = connection.request(
            "PUT", "/api/training", OPERATOR_TOKEN, {"enabled": enabled}
        )
    if status != 200:
        raise RuntimeError(f"PUT /api/training: {status} {answer}")


@dataclass
class _Run:
    """What every size's measurement shares."""

    config: ScaleConfig
    engine: Engine
    server: ServeProcess
    work: Path
    pool: Pool
    accounts: Accounts
    ends: Callable[[int], datetime]
    progress: Progress
    newest: int = 0

    def next_ids(self, count: int) -> int:
        """The first of `count` new ids for copies (past any the service gave meanwhile)."""
        self.newest = max(self.newest, newest_id(self.engine))
        first = self.newest + 1
        self.newest += count
        return first


def run_scale(config: ScaleConfig, progress: Progress = lambda _: None) -> ScaleResult:
    """Fill the store to each size in turn and measure it; see the module's docstring."""
    from haggler.store.database import make_engine

    started = time.monotonic()
    ends = history_clock(max(config.sizes), config.history_days, datetime.now(UTC))
    results = []
    with _store(config) as (url, work):
        engine = make_engine(url)
        server = ServeProcess(_environment(config, work, url), work)
        try:
            shutil.copyfile(config.model_path, work / "buyer_agent.pth")
            backend = engine.dialect.name
            progress(f"{backend}: playing a pool of {config.pool:,} negotiations")
            pool, accounts = play_pool(
                engine, config.model_path, size=config.pool, seed=config.seed, ends=ends
            )
            run = _Run(config, engine, server, work, pool, accounts, ends, progress)
            for size in sorted(config.sizes):
                results.append(_measure(run, size))
            server.stop()
        finally:
            server.kill()
            engine.dispose()
    seconds = time.monotonic() - started
    return ScaleResult(backend, config.pool, config.requests, tuple(results), seconds)


def _fill_to(run: _Run, size: int) -> int:
    """Copies of the pool up to `size` negotiations in the store; how many."""
    backend, config = run.engine.dialect.name, run.config
    missing = max(0, size - newest_id(run.engine))
    if not missing:
        return 0
    first = run.next_ids(missing)
    every = max(1, round(missing / 10 / config.batch)) * config.batch  # about ten lines

    def filled(done: int) -> None:
        if done % every == 0 or done == missing:
            run.progress(f"{backend}: filled {first + done - 1:,} of {size:,}")

    fill(
        run.engine,
        run.pool,
        first_id=first,
        count=missing,
        ends=run.ends,
        learned=True,
        batch=config.batch,
        updates_per_negotiation=config.updates_per_negotiation,
        progress=filled,
    )
    _tidy(run.engine)
    return missing


def _measure(run: _Run, size: int) -> SizeResult:
    backend, config, server, engine = run.engine.dialect.name, run.config, run.server, run.engine
    server.stop()  # the previous size's process: the fill then has the machine to itself
    fill_started = time.monotonic()
    filled = _fill_to(run, size)
    fill_seconds = time.monotonic() - fill_started
    run.progress(f"{backend} {size:,}: starting haggler serve")
    server.start()
    server.wait_until_ready(OPERATOR_TOKEN, learner=config.settle)
    held = check_summary(server.port, engine)
    run.progress(
        f"{backend} {size:,}: {len(_read_paths(0))} read endpoints, {config.requests} each"
    )
    reads = time_reads(server.port, held // 2, run.accounts, config.requests)
    run.progress(f"{backend} {size:,}: turns under load, {config.turn_rate:.0f}/s offered")
    turns = turn_load(
        server.port,
        engine,
        run.work,
        rate=config.turn_rate,
        seconds=config.load_seconds,
        connections=config.connections,
        seed=config.seed,
    )
    stored = _store_bytes(engine)
    run.progress(f"{backend} {size:,}: training on; the learner's capacity")
    _set_training(server, True)
    try:
        rate, merged = capacity(engine, run.pool, config.capacity_seconds, run.next_ids)
        lags = []
        for level in config.lag_levels:
            run.progress(
                f"{backend} {size:,}: the learner at {level:.0%} of its capacity "
                f"({level * rate:.1f} negotiations/s)"
            )
            lag_run = LagRun(
                level=level,
                capacity=rate,
                requests_per_negotiation=turns.requests / max(1, turns.negotiations),
                seconds=config.lag_seconds,
                drain_seconds=config.drain_seconds,
                connections=config.connections,
                seed=config.seed + round(100 * level),
            )
            lags.append(lag(server.port, engine, run.work, lag_run))
    finally:
        _set_training(server, False)
    return SizeResult(
        size=size,
        negotiations=held,
        filled=filled,
        fill_seconds=fill_seconds,
        store_bytes=stored,
        reads=reads,
        turns=turns,
        capacity=rate,
        capacity_merged=merged,
        lag=tuple(lags),
    )


def as_json(result: ScaleResult) -> str:
    def finite(value: Any) -> Any:
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(dataclasses.asdict(result)), indent=2)
