"""`haggler bench-service` and `bench-latency`: how fast the service and the agent answer.

The benchmark modules (`haggler.bench`) are imported inside the commands: `haggler --help` must
not load them.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from haggler.cli.common import load_agent, load_settings
from haggler.core.sellers import TRAINING_STRATEGIES

if TYPE_CHECKING:
    from haggler.bench.service import LoadResult


@click.command("bench-service")
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Model file [default: MODEL_PATH].",
)
@click.option(
    "--seconds",
    type=click.IntRange(5, 600),
    default=20,
    show_default=True,
    help="Load duration of each run.",
)
@click.option(
    "--connections",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="Negotiations in flight at once.",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="wrk threads (each a core's worth of client).",
)
@click.option(
    "--rate",
    type=click.FloatRange(1, 100_000),
    default=520,
    show_default=True,
    help="Offered turns per second of the fixed-rate runs (spread over the connections).",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 10),
    default=3,
    show_default=True,
    help="Runs per setting; medians are printed.",
)
def bench_service(
    model_path: Path | None,
    seconds: int,
    connections: int,
    threads: int,
    rate: float,
    repeats: int,
) -> None:
    """Load-test the service with external-seller negotiations, training off and on (needs wrk):
    latency at a fixed offered rate, and capacity flat out."""
    from haggler.bench.service import run_once
    from haggler.learning.dqn import read_checkpoint

    path = model_path or load_settings().model_path
    read_checkpoint(path)
    settings = [(rate, False), (rate, True), (None, False), (None, True)]
    runs: dict[tuple[float | None, bool], list[LoadResult]] = {key: [] for key in settings}
    for repeat in range(repeats):
        for offered, training in settings:  # interleaved: drift on a shared machine hits all
            result = run_once(
                path,
                training=training,
                seconds=seconds,
                connections=connections,
                threads=threads,
                rate=offered,
            )
            runs[offered, training].append(result)
            click.echo(
                f"run {repeat + 1} {'flat out' if offered is None else f'at {offered:.0f}/s'} "
                f"training {'on ' if training else 'off'}: "
                f"{result.requests_per_second:7.0f} turns/s  p50 {result.p50_ms:6.2f} ms  "
                f"p99 {result.p99_ms:6.2f} ms  ({result.requests} turns, {result.errors} errors)",
                err=True,
            )

    def median(values: list[float]) -> float:
        return statistics.median(values)

    click.echo(
        f"\n{connections} concurrent external-seller negotiations, {seconds} s a run, "
        f"median of {repeats} runs, one server process on SQLite (learner in its own process):"
    )
    for offered, title in ((rate, f"offered {rate:.0f} turns/s"), (None, "flat out (capacity)")):
        off, on = runs[offered, False], runs[offered, True]
        click.echo(f"\n{title:22s} {'training off':>14s} {'training on':>14s} {'on/off':>8s}")
        for label, attribute in (
            ("turns per second", "requests_per_second"),
            ("turn latency p50 (ms)", "p50_ms"),
            ("turn latency p99 (ms)", "p99_ms"),
        ):
            a = median([getattr(r, attribute) for r in off])
            b = median([getattr(r, attribute) for r in on])
            click.echo(f"{label:22s} {a:14.2f} {b:14.2f} {b / a:8.2f}")
        errors = sum(r.errors for r in off + on)
        click.echo(f"{'errors (non-2xx)':22s} {errors:14d}")
    delays = [
        r.update_delay_median_s for r in runs[rate, True] if r.update_delay_median_s is not None
    ]
    if delays:
        click.echo(
            f"\nnegotiation end -> serving weights updated (at {rate:.0f}/s): "
            f"median {median(delays):.3f} s (target < 1 s)"
        )
    click.echo("targets at the offered rate: p99 < 15 ms, >= 500 turns/s, p99 on/off <= 1.3")


@click.command("bench-latency")
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Model file [default: MODEL_PATH; a fresh untrained network if none].",
)
@click.option("--calls", type=click.IntRange(min=100), default=20_000, show_default=True)
def bench_latency(model_path: Path | None, calls: int) -> None:
    """Measure the agent's in-process decision latency for one observation."""
    import numpy as np

    from haggler.core.features import legal_moves, observe
    from haggler.core.negotiation import open_negotiation
    from haggler.core.scenarios import scenario_suite
    from haggler.learning.dqn import BuyerAgent

    path = model_path or load_settings().model_path
    agent = load_agent(path) if model_path is not None or path.exists() else BuyerAgent()
    suite = scenario_suite(256, 7, TRAINING_STRATEGIES)
    states = [open_negotiation(s.terms, s.seller().opening_ask()) for s in suite]
    inputs = [(observe(state), legal_moves(state)) for state in states]
    decision = np.empty(calls)
    turn = np.empty(calls)
    for i in range(calls):
        observation, mask = inputs[i % len(inputs)]
        start = time.perf_counter_ns()
        agent.act(observation, mask)
        decision[i] = time.perf_counter_ns() - start
    for i in range(calls):  # observation features + decision, as a served turn pays them
        state = states[i % len(states)]
        start = time.perf_counter_ns()
        agent.act(observe(state), legal_moves(state))
        turn[i] = time.perf_counter_ns() - start
    click.echo(f"agent decision latency, one observation, {calls} calls (target p99 < 200 µs):")
    for name, timings in (("decision", decision), ("features + decision", turn)):
        median, p99 = np.percentile(timings, [50, 99]) / 1000
        click.echo(f"  {name:20s} median {median:6.1f} µs   p99 {p99:6.1f} µs")


@click.command("bench-processes")
@click.option(
    "--database-url",
    required=True,
    help="A PostgreSQL database the benchmark may wipe (its schema is dropped and recreated).",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Model file [default: MODEL_PATH].",
)
@click.option(
    "--processes",
    default="1,2,3",
    show_default=True,
    help="Numbers of serving processes to compare, comma-separated.",
)
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option(
    "--seconds", type=click.IntRange(3, 600), default=15, show_default=True, help="Load per run."
)
@click.option(
    "--connections",
    type=click.IntRange(1, 200),
    default=8,
    show_default=True,
    help="Negotiations in flight per process.",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
def bench_processes(
    database_url: str,
    model_path: Path | None,
    processes: str,
    rounds: int,
    seconds: int,
    connections: int,
    json_path: Path | None,
) -> None:
    """Several serving processes on one PostgreSQL store (needs wrk): throughput with each
    number of processes, training off, and the time a promoted version takes to reach all."""
    from haggler.bench.processes import ProcessesConfig, as_json, run_processes, table
    from haggler.learning.dqn import read_checkpoint

    try:
        counts = tuple(int(part) for part in processes.split(","))
    except ValueError:
        raise click.ClickException(
            f"bad --processes {processes!r}: give numbers like 1,2,3"
        ) from None
    if not counts or any(not 1 <= count <= 8 for count in counts):
        raise click.ClickException("--processes: each number must be between 1 and 8")
    if not database_url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise click.ClickException(
            "--database-url: several processes share a PostgreSQL store; give postgresql://..."
        )
    path = model_path or load_settings().model_path
    read_checkpoint(path)
    config = ProcessesConfig(
        database_url=database_url,
        model_path=path,
        processes=counts,
        rounds=rounds,
        seconds=seconds,
        connections=connections,
    )
    results = run_processes(config)
    click.echo(table(results))
    if json_path is not None:
        json_path.write_text(as_json(results))
