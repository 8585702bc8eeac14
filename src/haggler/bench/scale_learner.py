"""Load and the learner for `bench.scale`: turns at a fixed rate from wrk (the seller script of
`bench.service`), the learner's capacity, and its lag at a share of that capacity.

Capacity is what the learner trains one negotiation at a time, as the spec asks (its steps for
each), at its default settings with nothing else to do. It merges what waits when the queue is
longer than a step's batch (64) or than half of LEARNER_MAX_DELAY of training, so it is
measured on a queue kept short: topped up with copies that end now to about 0.3 s of the
learner's work each time half of it is done, so that each step finds work and trains it one by
one.

Lag: wrk's sellers finish the offered negotiations a second; each negotiation's delay runs from
its end to the first version the serving process was seen serving (polled every 50 ms through
/api/training) after the commit that marked it learned, which is the commit that published the
version trained on it.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from haggler.bench.crash import ConnectionLost, KeepAlive
from haggler.bench.scale_fill import Pool, fill, newest_id
from haggler.bench.service import OPERATOR_TOKEN, SELLER_SCRIPT, _latency_ms
from haggler.store import counters, experiences
from haggler.store.tables import ModelSnapshotRow, NegotiationRow, TrainingPointRow

HOST = "127.0.0.1"
INF = float("inf")


@dataclass(frozen=True)
class TurnLoad:
    offered_turns_per_second: float
    turns_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    """Answers other than 2xx."""
    negotiations: int
    """Negotiations that finished during the run."""


@dataclass(frozen=True)
class LearnerLag:
    level: float
    """The share of the learner's capacity offered."""
    offered_negotiations_per_second: float
    negotiations_per_second: float
    """Finished during the load, a second."""
    turns: TurnLoad
    served_median_s: float
    """From a negotiation's end to the first version served that was trained on it (inf: not
    served by the end of the drain)."""
    served_p90_s: float
    learned_median_s: float
    """From its end to the commit that published the version trained on it (learned_at)."""
    pickup_median_s: float | None
    """From a version's commit to the serving process answering with it."""
    not_served: int
    samples_per_negotiation: float | None
    """Transitions sampled by gradient steps per negotiation taken in (5 steps of 128: 640)."""
    updates: int
    merged_updates: int
    merged_negotiations: int
    pending_at_end: int
    """Finished negotiations waiting for the learner when the load stopped."""


def wrk(
    port: int, work: Path, *, rate: float, seconds: int, connections: int, seed: int
) -> tuple[float, float, float, int, int]:
    """wrk's sellers offering `rate` turns a second: (turns/s, p50 ms, p99 ms, requests,
    answers other than 2xx)."""
    program = shutil.which("wrk")
    if program is None:
        raise RuntimeError("wrk is not installed: `apt-get install wrk`")
    script = work / "seller.lua"
    script.write_text(
        SELLER_SCRIPT.replace("THINK_MS", str(max(1, round(1000 * connections / max(rate, 0.1)))))
        .replace("SEED", str(seed))
        .replace("OPERATOR_TOKEN", OPERATOR_TOKEN)
    )
    command = [program, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    output = subprocess.run(
        [*command, f"http://{HOST}:{port}"], capture_output=True, text=True, check=True
    ).stdout
    achieved = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if achieved is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return (
        float(achieved[1]),
        _latency_ms(output, "50"),
        _latency_ms(output, "99"),
        int(total[1]),
        int(errors[1]) if errors else 0,
    )


def _finished_since(engine: Engine, after_id: int) -> int:
    with engine.connect() as connection:
        return int(
            connection.scalar(
                select(func.count()).where(
                    NegotiationRow.id > after_id, NegotiationRow.status == "finished"
                )
            )
            or 0
        )


def turn_load(
    port: int, engine: Engine, work: Path, *, rate: float, seconds: int, connections: int, seed: int
) -> TurnLoad:
    """Turns at `rate` a second offered for `seconds`."""
    before = newest_id(engine)
    achieved, p50, p99, requests, errors = wrk(
        port, work, rate=rate, seconds=seconds, connections=connections, seed=seed
    )
    return TurnLoad(rate, achieved, p50, p99, requests, errors, _finished_since(engine, before))


def _queued(engine: Engine) -> int:
    with Session(engine) as session:
        return experiences.count_to_learn(session=session)


def _learned(engine: Engine) -> int:
    with Session(engine) as session:
        return counters.get_counter(counters.NEGOTIATIONS_LEARNED, session=session)


def _last_point(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.max(TrainingPointRow.id))) or 0)


def _wait_for_queue(engine: Engine, timeout: float, what: str) -> float:
    """Seconds until the learner's queue is empty."""
    started = time.monotonic()
    while _queued(engine):
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{what}: the learner's queue was not empty in {timeout:.0f} s")
        time.sleep(0.01)
    return time.monotonic() - started


def _merged_since(engine: Engine, point: int) -> int:
    with engine.connect() as connection:
        merged = connection.scalar(
            select(func.coalesce(func.sum(TrainingPointRow.merged), 0)).where(
                TrainingPointRow.id > point
            )
        )
    return int(merged or 0)


def capacity(
    engine: Engine, pool: Pool, seconds: float, next_id: Callable[[int], int]
) -> tuple[float, int]:
    """Negotiations a second the learner trains one by one (see the module), over the seconds
    of `seconds` in which it merged none (if it merged in every one: over all of them), and
    how many it merged.

    The queue is kept at about 0.3 s of the learner's work, judged each second from what it
    did in the last: more when a step finished before the next poll, less after a merge."""

    def add(count: int) -> None:
        ended = datetime.now(UTC)
        first = next_id(count)
        fill(
            engine,
            pool,
            first_id=first,
            count=count,
            ends=lambda _: ended,
            learned=False,
            batch=count,
        )

    add(10)  # waits for the first update, which plays the replay anchor first
    _wait_for_queue(engine, 600, "the learner's first update")
    add(10)
    drained = _wait_for_queue(engine, 120, "the learner's second update")
    chunk = int(np.clip(round(0.3 * 10 / drained), 2, 60))
    trained = busy = everything = elapsed_all = 0.0
    merged = 0
    slices = max(1, round(seconds))
    for _ in range(slices):
        point, learned, started = _last_point(engine), _learned(engine), time.monotonic()
        while time.monotonic() - started < seconds / slices:
            waiting = _queued(engine)
            if waiting <= chunk // 2:
                add(chunk - waiting)
            time.sleep(0.01)
        elapsed, done = time.monotonic() - started, _learned(engine) - learned
        everything, elapsed_all = everything + done, elapsed_all + elapsed
        if merging := _merged_since(engine, point):
            merged += merging
            chunk = max(2, int(chunk * 0.6))
            continue
        trained, busy = trained + done, busy + elapsed
        chunk = int(np.clip(max(chunk, round(0.3 * done / elapsed)), 2, 60))
    _wait_for_queue(engine, 120, "the learner taking in the last ones")
    return (trained / busy if busy else everything / elapsed_all), merged


class _VersionWatch(threading.Thread):
    """When the serving process first answered with each model version."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.seen: dict[int, datetime] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with contextlib.closing(KeepAlive(self.port)) as connection:
            while not self.stop.is_set():
                try:
                    status, training = connection.request("GET", "/api/training", OPERATOR_TOKEN)
                except ConnectionLost:
                    status = 0
                if status == 200:
                    self.seen.setdefault(int(training["model_version"]), datetime.now(UTC))
                self.stop.wait(0.05)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _quantile(values: list[float], q: float) -> float:
    """Nearest rank (an infinite value stays one)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass(frozen=True)
class LagRun:
    """One lag run: the load and how long its negotiations may wait for the learner."""

    level: float
    capacity: float
    requests_per_negotiation: float
    """wrk's requests per negotiation (from the turn-latency run): turns a second to offer."""
    seconds: int
    drain_seconds: float
    connections: int
    seed: int


def lag(port: int, engine: Engine, work: Path, run: LagRun) -> LearnerLag:
    """wrk's sellers finishing `run.level` x `run.capacity` negotiations a second; then each
    negotiation's delay from its end to being served (see the module)."""
    offered = run.level * run.capacity
    first, point = newest_id(engine), _last_point(engine)
    with engine.connect() as connection:
        version0 = int(connection.scalar(select(func.max(ModelSnapshotRow.version))) or 0)
    watch = _VersionWatch(port)
    watch.start()
    try:
        achieved, p50, p99, requests, errors = wrk(
            port,
            work,
            rate=offered * run.requests_per_negotiation,
            seconds=run.seconds,
            connections=run.connections,
            seed=run.seed,
        )
        pending = _queued(engine)
        drained = time.monotonic() + run.drain_seconds
        while _queued(engine) and time.monotonic() < drained:
            time.sleep(0.05)
        time.sleep(0.2)  # two polls of the serving process: the last version reaches it
    finally:
        watch.stop.set()
        watch.join()
    with engine.connect() as connection:
        ended = connection.execute(
            select(NegotiationRow.finished_at, NegotiationRow.learned_at).where(
                NegotiationRow.id > first, NegotiationRow.status == "finished"
            )
        ).all()
        published = {
            int(version): _aware(at)
            for version, at in connection.execute(
                select(ModelSnapshotRow.version, ModelSnapshotRow.created_at).where(
                    ModelSnapshotRow.version > version0
                )
            )
        }
        points = connection.execute(
            select(
                TrainingPointRow.negotiations,
                TrainingPointRow.samples_per_negotiation,
                TrainingPointRow.merged,
            )
            .where(TrainingPointRow.id >= point)
            .order_by(TrainingPointRow.id)
        ).all()
    seen = sorted((at, version) for version, at in watch.seen.items() if version > version0)
    seen_at = [at for at, _ in seen]
    served, learned = [], []
    for finished_at, learned_at in ended:
        if learned_at is None or finished_at is None:
            served.append(INF)
            continue
        end, taken = _aware(finished_at), _aware(learned_at)
        learned.append((taken - end).total_seconds())
        # The first version seen after the commit that set learned_at serves what was trained on
        # it (its own, or a later one trained on it too).
        i = bisect.bisect_left(seen_at, taken)
        served.append((seen_at[i] - end).total_seconds() if i < len(seen_at) else INF)
    pickups = [(at - published[v]).total_seconds() for at, v in seen if v in published]
    samples = trained = 0.0
    for before, after in itertools.pairwise(points):
        count = after.negotiations - before.negotiations
        if after.samples_per_negotiation is not None and count > 0:
            samples += after.samples_per_negotiation * count
            trained += count
    merged = [p.merged for p in points[1:] if p.merged > 0]
    turns_offered = offered * run.requests_per_negotiation
    return LearnerLag(
        level=run.level,
        offered_negotiations_per_second=offered,
        negotiations_per_second=len(ended) / run.seconds,
        turns=TurnLoad(turns_offered, achieved, p50, p99, requests, errors, len(ended)),
        served_median_s=_quantile(served, 0.5),
        served_p90_s=_quantile(served, 0.9),
        learned_median_s=_quantile(learned, 0.5),
        pickup_median_s=float(np.median(pickups)) if pickups else None,
        not_served=sum(1 for s in served if s == INF),
        samples_per_negotiation=samples / trained if trained else None,
        updates=len(points) - 1,
        merged_updates=len(merged),
        merged_negotiations=sum(merged),
        pending_at_end=pending,
    )
