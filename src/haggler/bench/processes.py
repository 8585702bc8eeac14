"""Several serving processes on one PostgreSQL store: throughput with 1, 2 and 3 of them, and the
time a newly promoted model version takes to reach all of them.

Each configuration runs on a wiped store (`DATABASE_URL` must be given explicitly, as its schema
is dropped), training off, with one wrk per process playing external sellers flat out (the
seller script of `bench.service`). Throughput is finished negotiations per second, read from
the store before and after the load; medians over rounds. Promotion reach: a new version is
published to the store as a learner or a restore publishes it, and every process is polled
until it serves it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from haggler.bench.crash import KeepAlive, ServeProcess, wipe_postgres
from haggler.bench.service import OPERATOR_TOKEN, SELLER_SCRIPT, _latency_ms


@dataclass(frozen=True)
class ProcessesConfig:
    database_url: str
    """A PostgreSQL database whose schema the benchmark drops and recreates."""
    model_path: Path
    processes: tuple[int, ...] = (1, 2, 3)
    rounds: int = 3
    """Runs per number of processes; the figures are medians over them."""
    seconds: int = 15
    """wrk's load per run."""
    connections: int = 8
    """Negotiations in flight per process."""
    promotions: int = 10
    """New versions published per number of processes, each timed to reach every process."""


@dataclass(frozen=True)
class ProcessesResult:
    processes: int
    negotiations_per_second: float
    """Median over rounds of finished negotiations per second, all processes together."""
    rounds: tuple[float, ...]
    p50_ms: float
    p99_ms: float
    errors: int
    reach_median_s: float
    reach_max_s: float
    """Seconds from a version's publication to the last process serving it."""


def run_processes(config: ProcessesConfig, *, progress: bool = True) -> list[ProcessesResult]:
    if not config.database_url.startswith(("postgresql", "postgres")):
        raise ValueError("several processes share a PostgreSQL store: give a postgresql:// URL")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: `apt-get install wrk`")
    results = []
    for count in config.processes:
        rates, p50s, p99s, errors, reaches = [], [], [], 0, []
        for round_ in range(config.rounds):
            wipe_postgres(config.database_url)
            with tempfile.TemporaryDirectory(prefix="haggler-processes-") as folder:
                servers = _start(config, Path(folder), count)
                try:
                    rate, p50, p99, failed = _load(config, servers, Path(folder), wrk)
                    if round_ == 0:
                        reaches = _promotions(config, servers)
                finally:
                    for server in servers:
                        server.stop()
            rates.append(rate)
            p50s.append(p50)
            p99s.append(p99)
            errors += failed
            if progress:
                print(
                    f"{count} processes, round {round_ + 1}: {rate:.0f} negotiations/s", flush=True
                )
        results.append(
            ProcessesResult(
                processes=count,
                negotiations_per_second=statistics.median(rates),
                rounds=tuple(rates),
                p50_ms=statistics.median(p50s),
                p99_ms=statistics.median(p99s),
                errors=errors,
                reach_median_s=statistics.median(reaches),
                reach_max_s=max(reaches),
            )
        )
    return results


def _start(config: ProcessesConfig, work: Path, count: int) -> list[ServeProcess]:
    servers = []
    for i in range(count):
        home = work / f"server-{i}"
        home.mkdir()
        model = home / "buyer_agent.pth"
        shutil.copyfile(config.model_path, model)
        env = {
            **os.environ,
            "DATABASE_URL": config.database_url,
            "MODEL_PATH": str(model),
            "CHECKPOINT_DIR": str(home / "checkpoints"),
            "ENABLE_TRAINING": "false",
            "LEARNER": "external",
            "OPERATOR_TOKEN": OPERATOR_TOKEN,
            "RATE_LIMIT_PER_SECOND": "0",
        }
        servers.append(ServeProcess(env, home))
    # One after the other: the first creates the schema, the others find it.
    for server in servers:
        server.start()
        server.wait_until_ready(OPERATOR_TOKEN, learner=False)
    return servers


def _finished(server: ServeProcess) -> int:
    with contextlib.closing(KeepAlive(server.port)) as connection:
        status, summary = connection.request("GET", "/api/summary", OPERATOR_TOKEN)
    assert status == 200, summary
    return int(summary["finished"])


def _load(
    config: ProcessesConfig, servers: list[ServeProcess], work: Path, wrk: str
) -> tuple[float, float, float, int]:
    """Every process loaded by its own wrk at once: (negotiations/s, p50 ms, p99 ms, errors)."""
    script = work / "seller.lua"
    script.write_text(
        SELLER_SCRIPT.replace("THINK_MS", "0")
        .replace("SEED", "1")
        .replace("OPERATOR_TOKEN", OPERATOR_TOKEN)
    )
    before = _finished(servers[0])
    started = time.monotonic()
    loads = [
        subprocess.Popen(
            [
                wrk,
                "-t1",
                f"-c{config.connections}",
                f"-d{config.seconds}s",
                "--latency",
                "-s",
                str(script),
                f"http://127.0.0.1:{server.port}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for server in servers
    ]
    outputs = [load.communicate()[0] for load in loads]
    elapsed = time.monotonic() - started
    finished = _finished(servers[0]) - before
    p50 = statistics.median(_latency_ms(output, "50") for output in outputs)
    p99 = max(_latency_ms(output, "99") for output in outputs)
    errors = 0
    for output in outputs:
        for line in output.splitlines():
            if "Non-2xx or 3xx responses:" in line:
                errors += int(line.rsplit(":", 1)[1])
    return finished / elapsed, p50, p99, errors


def _promotions(config: ProcessesConfig, servers: list[ServeProcess]) -> list[float]:
    """Publish new versions as the learner does; time each until every process serves it."""
    from haggler.store import snapshots as snapshot_store
    from haggler.store import versions
    from haggler.store.database import make_engine, session_factory

    engine = make_engine(config.database_url)
    sessions = session_factory(engine)
    connections = [KeepAlive(server.port) for server in servers]
    reaches = []
    try:
        for _ in range(config.promotions):
            with sessions() as session:
                serving = snapshot_store.serving_version(session=session)
                snapshot = versions.serving_snapshot(session)
                assert serving is not None and snapshot is not None
                new = snapshot_store.highest_version(session=session) + 1
                published = dataclasses.replace(snapshot, version=new)
                versions.publish(
                    session,
                    published,
                    expected_serving=serving,
                    source="restore",
                    negotiations=0,
                    reason="bench-processes: a promotion timed to reach every process",
                )
                session.commit()
            at = time.monotonic()
            waiting = set(range(len(servers)))
            while waiting:
                for i in list(waiting):
                    status, training = connections[i].request(
                        "GET", "/api/training", OPERATOR_TOKEN
                    )
                    if status == 200 and training["model_version"] == new:
                        waiting.discard(i)
                if time.monotonic() - at > 30:
                    raise RuntimeError(f"version {new} did not reach every process in 30 s")
            reaches.append(time.monotonic() - at)
            time.sleep(0.25)
    finally:
        for connection in connections:
            connection.close()
        engine.dispose()
    return reaches


def table(results: list[ProcessesResult]) -> str:
    one = results[0].negotiations_per_second if results else 0.0
    lines = [
        "processes  negotiations/s  x one   rounds                 p50 ms  p99 ms  errors"
        "  promotion reaches all: median / max s"
    ]
    for r in results:
        rounds = " ".join(f"{x:.0f}" for x in r.rounds)
        ratio = r.negotiations_per_second / one
        lines.append(
            f"{r.processes:>9}  {r.negotiations_per_second:>14.1f}  {ratio:>5.2f}"
            f"   {rounds:<21}  {r.p50_ms:>6.2f}  {r.p99_ms:>6.2f}  {r.errors:>6}"
            f"  {r.reach_median_s:.3f} / {r.reach_max_s:.3f}"
        )
    return "\n".join(lines)


def as_json(results: list[ProcessesResult]) -> str:
    return json.dumps([dataclasses.asdict(r) for r in results], indent=2)
