"""The `haggler` command: train, evaluate, negotiate, serve, bench-latency, checkpoints.

Bad input ends with one line `haggler: error: ...` on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from haggler.config import DQNConfig, Settings
from haggler.core.catalogue import SEED_CATALOGUE, find_product
from haggler.core.sellers import ALL_STRATEGIES, HELD_OUT_STRATEGIES, TRAINING_STRATEGIES
from haggler.store import base as store
from haggler.store import snapshots as snapshot_store

if TYPE_CHECKING:  # heavy imports (torch) happen inside the commands that need them
    from haggler.bench.service import LoadResult
    from haggler.learning.dqn import BuyerAgent
    from haggler.safety.evaluation import Evaluation

STRATEGY = click.Choice(ALL_STRATEGIES)


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(str(part) for part in first["loc"]).upper()
        raise click.ClickException(f"setting {name}: {first['msg']}") from None


def _load_agent(path: Path) -> BuyerAgent:
    import torch

    from haggler.learning.dqn import BuyerAgent

    torch.set_num_threads(1)
    return BuyerAgent.from_file(path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="haggler")
def cli() -> None:
    """haggler: a buyer-side negotiation agent that haggles prices and learns online."""


@cli.command()
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=None,
    help="Wall-clock budget [default: STARTER_TRAIN_SECONDS, 170].",
)
@click.option(
    "--env-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Budget in buyer moves (stops at whichever budget comes first).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seeds the network, the training scenarios and exploration.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the model [default: MODEL_PATH, models/buyer_agent.pth].",
)
@click.option("--if-missing", is_flag=True, help="Do nothing if the model file already exists.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(
    seconds: float | None,
    env_steps: int | None,
    seed: int,
    model_path: Path | None,
    if_missing: bool,
    quiet: bool,
) -> None:
    """Pretrain the agent against the simulated sellers and write the model file.

    The seller strategies listed as held out are never used in training.
    """
    settings = _settings()
    path = model_path or settings.model_path
    if if_missing and path.exists():
        click.echo(f"Model {path} exists; not training (remove it or drop --if-missing).")
        return
    _check_writable(path)
    import torch
    from tqdm import tqdm

    from haggler.learning.dqn import BuyerAgent
    from haggler.learning.pretraining import (
        PretrainConfig,
        PretrainProgress,
        budget_used,
        pretrain,
    )

    torch.set_num_threads(1)
    if seconds is None and env_steps is None:
        seconds = settings.starter_train_seconds
    config = PretrainConfig(seconds=seconds, env_steps=env_steps, seed=seed)
    agent = BuyerAgent(DQNConfig(seed=seed))
    total = 1000
    bar = tqdm(
        total=total,
        disable=quiet,
        unit="‰",
        desc="training",
        bar_format=("{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}"),
    )

    def report(progress: PretrainProgress) -> None:
        bar.update(min(total, int(budget_used(config, progress) * total)) - bar.n)
        bar.set_postfix_str(
            f"negotiations={progress.episodes} updates={progress.gradient_steps} "
            f"eps={progress.epsilon:.2f} return={progress.mean_return:.3f} "
            f"loss={progress.loss:.4f}",
            refresh=False,
        )

    started = time.perf_counter()
    progress = pretrain(agent, config, report)
    bar.close()
    agent.model_version = 1  # pretraining's many updates make up the first version
    agent.save_model(
        path,
        trained_on=list(config.strategies),
        held_out=list(HELD_OUT_STRATEGIES),
        pretrain_seed=seed,
        pretrain_env_steps=progress.env_steps,
        pretrain_negotiations=progress.episodes,
        pretrain_seconds=round(progress.seconds, 1),
    )
    click.echo(
        f"Trained for {time.perf_counter() - started:.0f} s: {progress.episodes} negotiations, "
        f"{progress.gradient_steps} updates; wrote {path}"
    )


def _check_writable(path: Path, what: str = "the model") -> None:
    """Fail now, not after the whole training budget, if the model cannot be written there."""
    if path.is_dir():
        raise click.ClickException(f"{path} is a folder; give a file name for {what}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise click.ClickException(f"cannot write {what} to {path}: {error.strerror}") from None


@cli.command()
@click.option(
    "--model",
    "model_paths",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Model file; repeat to report the mean and spread over several [default: MODEL_PATH].",
)
@click.option(
    "--episodes",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Negotiations in the main suite (and again in the held-out family's).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Seeds the evaluation scenarios; they never coincide with training ones.",
)
@click.option(
    "--strategy",
    "strategies",
    type=STRATEGY,
    multiple=True,
    help="Evaluate on these seller strategies only [default: all trained ones].",
)
@click.option(
    "--max-rounds",
    type=click.IntRange(1, 100),
    default=None,
    help="Fix the buyer's rounds [default: drawn from 6-14].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def evaluate(
    model_paths: tuple[Path, ...],
    episodes: int,
    seed: int,
    strategies: tuple[str, ...],
    max_rounds: int | None,
    as_json: bool,
) -> None:
    """Play the model and every baseline on the same held-out negotiations and compare."""
    from haggler.core.scenarios import scenario_suite
    from haggler.learning.pretraining import EVALUATION_STREAM, scenario_rng
    from haggler.policy.baselines import BASELINES
    from haggler.policy.snapshot import AgentBuyer
    from haggler.safety.evaluation import evaluate as run_evaluation
    from haggler.safety.evaluation import format_evaluation

    paths = model_paths or (_settings().model_path,)
    agents = [AgentBuyer(_load_agent(path).snapshot) for path in paths]
    main_strategies = strategies or TRAINING_STRATEGIES
    suite_seed = int(scenario_rng(EVALUATION_STREAM, seed).integers(2**63))
    suites = {"main": scenario_suite(episodes, suite_seed, main_strategies, max_rounds)}
    if not strategies:
        suites["held_out"] = scenario_suite(
            episodes, suite_seed + 1, HELD_OUT_STRATEGIES, max_rounds
        )
    results: dict[str, list[Evaluation]] = {
        name: [run_evaluation(agent, BASELINES, suite) for agent in agents]
        for name, suite in suites.items()
    }
    if as_json:
        output: dict[str, Any] = {
            "episodes": episodes,
            "seed": seed,
            "models": [str(p) for p in paths],
        }
        main = results["main"]
        output.update(
            main[0].as_dict() if len(main) == 1 else {"runs": [e.as_dict() for e in main]}
        )
        if len(main) > 1:
            output["across_models"] = _across_models(main)
        if "held_out" in results:
            held = results["held_out"]
            output["held_out"] = (
                held[0].as_dict()
                if len(held) == 1
                else {"runs": [e.as_dict() for e in held], "across_models": _across_models(held)}
            )
        click.echo(json.dumps(output, indent=2))
        return
    for path, evaluation in zip(paths, results["main"], strict=True):
        title = (
            f"Model {path}: {episodes} held-out negotiations (seed {seed}) against "
            f"{', '.join(evaluation.strategies)}"
        )
        click.echo(format_evaluation(evaluation, title) + "\n")
    # Without --strategy there is a second suite, of the family kept out of training.
    for path, evaluation in zip(paths, results.get("held_out", []), strict=False):
        title = (
            f"Model {path}: {episodes} negotiations against the seller family kept out of "
            f"training ({', '.join(HELD_OUT_STRATEGIES)})"
        )
        click.echo(format_evaluation(evaluation, title) + "\n")
    if len(paths) > 1:
        for name, runs in results.items():
            summary = _across_models(runs)
            click.echo(f"Across {len(paths)} models ({name} suite), mean ± sd:")
            for key, value in summary.items():
                click.echo(f"  {key:34s} {value['mean']:+.3f} ± {value['sd']:.3f}")


def _across_models(evaluations: list[Evaluation]) -> dict[str, dict[str, float]]:
    figures = {
        "agent surplus": [e.reports["agent"].normalised_surplus.mean for e in evaluations],
        "agent agreement": [e.reports["agent"].agreement_rate_feasible.mean for e in evaluations],
        "best baseline surplus": [
            e.reports[e.best_baseline].normalised_surplus.mean for e in evaluations
        ],
        "type oracle surplus": [
            e.reports["type_oracle"].normalised_surplus.mean for e in evaluations
        ],
        "agent - best baseline": [e.agent_vs_best_baseline.surplus_diff.mean for e in evaluations],
        "agent - type oracle": [e.agent_vs_type_oracle.surplus_diff.mean for e in evaluations],
        "agreement: agent - best baseline": [
            e.reports["agent"].agreement_rate_feasible.mean
            - e.reports[e.best_baseline].agreement_rate_feasible.mean
            for e in evaluations
        ],
    }
    return {
        key: {
            "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
        for key, values in figures.items()
    }


@cli.command()
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Model file [default: MODEL_PATH].",
)
@click.option(
    "--seller",
    type=STRATEGY,
    default="tit_for_tat",
    show_default=True,
    help="Simulated seller strategy.",
)
@click.option(
    "--product",
    default=SEED_CATALOGUE[0].name,
    show_default=True,
    help="Product name from the catalogue.",
)
@click.option(
    "--limit",
    type=float,
    default=None,
    help="The buyer's maximum unit price [default: the list price].",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 100),
    default=10,
    show_default=True,
    help="The buyer's maximum number of moves.",
)
@click.option("--quantity", type=click.IntRange(1, 1_000_000), default=1, show_default=True)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seeds the seller's hidden reserve, deadline and parameters.",
)
@click.option(
    "--url",
    default=None,
    help="A running service (e.g. http://127.0.0.1:8000): you are the seller and type your moves.",
)
def negotiate(
    model_path: Path | None,
    seller: str,
    product: str,
    limit: float | None,
    rounds: int,
    quantity: int,
    seed: int,
    url: str | None,
) -> None:
    """Play one negotiation: the agent against a simulated seller (transcript printed), or with
    --url against a running service where you play the seller."""
    from haggler.core.negotiation import Terms, money, result
    from haggler.core.scenarios import Scenario, play
    from haggler.policy.snapshot import AgentBuyer

    item = find_product(product)
    buyer_limit = money(limit) if limit is not None else item.list_price
    if url is not None:
        from haggler.cli.remote import play_seller

        play_seller(url, item.name, buyer_limit, rounds, quantity)
        return
    terms = Terms(item.list_price, buyer_limit, max_rounds=rounds, quantity=quantity)
    agent = _load_agent(model_path or _settings().model_path)
    played = play(Scenario(item, terms, seller, seed), AgentBuyer(agent.snapshot))
    click.echo(
        f"{item.name}: list price {item.list_price:.2f}, buyer limit {buyer_limit:.2f}, "
        f"{rounds} rounds, seller '{seller}' (hidden reserve {played.reserve:.2f})"
    )
    for turn in played.state.transcript:
        price = f"{turn.price:10.2f}" if turn.price is not None else " " * 10
        click.echo(f"  round {turn.round:2d}  {turn.party.value:6s}  {turn.move.value:9s} {price}")
    summary = result(played.state)
    if summary.deal_price is not None:
        click.echo(
            f"Deal at {summary.deal_price:.2f} per unit after {summary.rounds} rounds: "
            f"saved {summary.savings_per_unit:.2f} per unit ({summary.savings_pct:.1f}% "
            f"of list), {summary.savings_total:.2f} in total; normalised surplus "
            f"{played.normalised_surplus:.3f}."
        )
    else:
        click.echo(f"No deal ({summary.outcome.value}) after {summary.rounds} rounds.")


@cli.command()
@click.option("--host", default=None, help="Listen address [default: HOST, 127.0.0.1].")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Port [default: PORT, 8000]."
)
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP service (API docs at /docs) on the store at DATABASE_URL."""
    import logging

    import uvicorn

    from haggler.api.app import create_app

    settings = _settings()
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


@cli.command()
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

    from haggler.learning.learner_process import StoreLearner
    from haggler.store.database import make_engine, migrate, session_factory

    settings = _settings()
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


@cli.command("bench-service")
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

    path = model_path or _settings().model_path
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


@cli.command("bench-latency")
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

    path = model_path or _settings().model_path
    agent = _load_agent(path) if model_path is not None or path.exists() else BuyerAgent()
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


@cli.command("bench-ope")
@click.option("--trials", type=click.IntRange(min=1), default=200, show_default=True)
@click.option(
    "--episodes",
    type=click.IntRange(min=2),
    default=500,
    show_default=True,
    help="Logged negotiations per trial.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--target",
    type=click.Choice(["greedy", "candidate"]),
    default="greedy",
    show_default=True,
    help="The policy estimated: the logging network played greedily, or a candidate trained "
    "50 gradient steps further (the gate's case, and the harder one).",
)
@click.option(
    "--logging",
    "logging_mode",
    type=click.Choice(["safe", "epsilon"]),
    default="safe",
    show_default=True,
    help="How the logging policy explores.",
)
@click.option("--logging-epsilon", type=click.FloatRange(0.01, 1.0), default=0.3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def bench_ope(
    trials: int,
    episodes: int,
    seed: int,
    target: str,
    logging_mode: str,
    logging_epsilon: float,
    as_json: bool,
) -> None:
    """Are the off-policy estimates honest? Log negotiations of a known policy exploring, estimate
    a second known policy's reward (PDWIS and doubly robust, bootstrap 95% intervals), and count
    how often the interval covers that policy's true value, played on-policy."""
    from haggler.bench.ope_honesty import format_honesty, honesty_trials, reference_policies
    from haggler.policy.exploration import Exploration

    champion, candidate = reference_policies(seed)
    report = honesty_trials(
        trials,
        episodes,
        seed,
        behaviour=champion,
        target=candidate if target == "candidate" else champion,
        behaviour_exploration=Exploration(
            "safe" if logging_mode == "safe" else "epsilon", logging_epsilon
        ),
    )
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else format_honesty(report))


def _outcome_pool(model: Path | None, episodes: int, seed: int) -> tuple[str, list[Any]]:
    """Outcomes of the model (greedy) on a held-out suite: what the A/B and rollback
    simulations draw from."""
    from haggler.core.scenarios import scenario_suite
    from haggler.learning.pretraining import EVALUATION_STREAM
    from haggler.policy.snapshot import AgentBuyer
    from haggler.safety.ab_testing import outcomes_of

    path = model or _settings().model_path
    agent = _load_agent(path)
    suite = scenario_suite(episodes, EVALUATION_STREAM * 1_000 + seed, TRAINING_STRATEGIES)
    return str(path), outcomes_of(AgentBuyer(agent.snapshot), suite)


@cli.command("bench-ab")
@click.option(
    "--model",
    "model",
    type=click.Path(path_type=Path),
    default=None,
    help="The model both arms play [default: MODEL_PATH].",
)
@click.option("--trials", type=click.IntRange(min=1), default=1_000, show_default=True)
@click.option(
    "--split",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=0.5,
    show_default=True,
)
@click.option(
    "--pool",
    type=click.IntRange(min=100),
    default=3_000,
    show_default=True,
    help="Negotiations played to make the pool of outcomes.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def bench_ab(model: Path | None, trials: int, split: float, pool: int, seed: int) -> None:
    """The A/B stopping rule in simulation: the false-promotion rate of A/A tests (both arms the
    same model) and how often and fast a better challenger is promoted."""
    import numpy as np

    from haggler.safety.ab_testing import StoppingRule, aa_simulation, format_ab_simulation

    name, outcomes = _outcome_pool(model, pool, seed)
    click.echo(f"Outcome pool: {len(outcomes)} negotiations of {name} (greedy).")
    report = aa_simulation(outcomes, trials, StoppingRule(), split, rng=np.random.default_rng(seed))
    click.echo(format_ab_simulation(report))


@cli.command("bench-rollback")
@click.option(
    "--model",
    "model",
    type=click.Path(path_type=Path),
    default=None,
    help="The model whose outcomes are drawn [default: MODEL_PATH].",
)
@click.option("--trials", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--pool", type=click.IntRange(min=100), default=3_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def bench_rollback(model: Path | None, trials: int, pool: int, seed: int) -> None:
    """The rollback monitor in simulation: false alarms on an unchanged model checked after every
    negotiation, and how fast a fall in reward or deal rate is caught."""
    import numpy as np

    from haggler.safety.rollback import MonitorConfig, detection_simulation, format_detection

    name, outcomes = _outcome_pool(model, pool, seed)
    click.echo(f"Outcome pool: {len(outcomes)} negotiations of {name} (greedy).")
    report = detection_simulation(
        outcomes, MonitorConfig(), rng=np.random.default_rng(seed), trials=trials
    )
    click.echo(format_detection(report))


BENCH_RESULTS = Path("bench-results/safety")
SAFETY_MODES = ("immediate+epsilon", "immediate+safe", "gated+epsilon", "gated+safe")


@cli.command("bench-safety")
@click.argument("which", type=click.Choice(["shift", "poisoning"]))
@click.option(
    "--seed",
    "seeds",
    type=int,
    multiple=True,
    default=(0, 1, 2),
    show_default=True,
    help="Stream seeds (repeat the option).",
)
@click.option(
    "--mode",
    "modes",
    type=click.Choice(SAFETY_MODES),
    multiple=True,
    help="Promotion+exploration modes, side by side [default: immediate+epsilon, "
    "gated+epsilon, and gated+safe for the shift].",
)
@click.option(
    "--negotiations",
    type=click.IntRange(min=10),
    default=None,
    help="Negotiations streamed [default: 3000 for shift, 1000 for poisoning].",
)
@click.option(
    "--pretrain-env-steps",
    type=click.IntRange(min=1_000),
    default=None,
    help="Pretraining budget of each cached model [default: 400000 shift, 300000 poisoning].",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 32),
    default=1,
    show_default=True,
    help="Streams run side by side in worker processes.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=BENCH_RESULTS,
    show_default=True,
    help="Folder for the figures (JSON) and the plot (self-contained HTML).",
)
def bench_safety(
    which: str,
    seeds: tuple[int, ...],
    modes: tuple[str, ...],
    negotiations: int | None,
    pretrain_env_steps: int | None,
    jobs: int,
    out: Path,
) -> None:
    """The safety benchmarks of online learning. `shift`: pretrained on one seller population,
    streamed another where it loses; how much of the lost surplus the served agent wins back,
    whether it is ever served worse than the frozen agent, and the live surplus of what was
    played. `poisoning`: sellers that teach overpaying; the served model's held-out surplus in
    each promotion mode."""
    from haggler.bench import safety as bench

    _check_writable(out / f"{which}.json", "the figures")
    options: dict[str, Any] = {
        "seeds": seeds,
        "jobs": jobs,
        "json_path": out / f"{which}.json",
        "plot_path": out / f"{which}.html",
        "verbose": True,
    }
    if modes:
        options["modes"] = modes
    if negotiations is not None:
        options["negotiations"] = negotiations
    if pretrain_env_steps is not None:
        options["pretrain_env_steps"] = pretrain_env_steps
    if which == "shift":
        report = bench.shift_benchmark(**options)
    else:
        report = bench.poisoning_benchmark(**options)
    click.echo(report.text)
    click.echo(f"Figures in {out / f'{which}.json'}, plot in {out / f'{which}.html'}.")


@cli.group()
def checkpoints() -> None:
    """List checkpoints or restore one as the main model."""


@checkpoints.command("list")
def checkpoints_list() -> None:
    """The checkpoints in CHECKPOINT_DIR, oldest first."""
    from haggler.learning.checkpoints import list_checkpoints

    settings = _settings()
    found = list_checkpoints(settings.checkpoint_dir)
    if not found:
        click.echo(f"No checkpoints in {settings.checkpoint_dir}.")
        return
    click.echo(f"{'checkpoint':48s} {'negotiations':>12s}  {'saved (UTC)':19s} {'size':>8s}")
    for info in found:
        saved = info.saved_at.strftime("%Y-%m-%d %H:%M:%S")
        click.echo(
            f"{info.path.name:48s} {info.negotiations:12d}  {saved:19s} "
            f"{info.size_bytes / 1024:6.0f} KB"
        )


@checkpoints.command("restore")
@click.argument("path")
def checkpoints_restore(path: str) -> None:
    """Make the checkpoint PATH (inside CHECKPOINT_DIR) the main model at MODEL_PATH.

    A running service picks it up when restored through its API; the CLI replaces the file.
    """
    from haggler.files import atomic_write
    from haggler.learning.checkpoints import resolve_checkpoint

    settings = _settings()
    source = resolve_checkpoint(settings.checkpoint_dir, path)
    atomic_write(settings.model_path, source.read_bytes())
    click.echo(f"Restored {source.name} as {settings.model_path}.")


def _store_sessions() -> Any:
    """Sessions on the store at DATABASE_URL (migrated), for the operator's commands."""
    from haggler.store.database import make_engine, migrate, session_factory

    engine = make_engine(_settings().database_url)
    migrate(engine)
    return session_factory(engine)


@cli.command("evaluate-candidate")
@click.argument("version", type=click.IntRange(min=1), required=False)
@click.option(
    "--checkpoint",
    "checkpoint",
    default=None,
    help="Judge this checkpoint file (inside CHECKPOINT_DIR) instead of a stored version.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def evaluate_candidate(version: int | None, checkpoint: str | None, as_json: bool) -> None:
    """Judge model VERSION from the store (or a --checkpoint) as the promotion gate would,
    against the serving model: off-policy estimates on the newest logged negotiations and both
    models on the held-out simulated suite. Changes nothing."""
    import dataclasses

    import numpy as np

    from haggler.learning.checkpoints import resolve_checkpoint
    from haggler.policy.snapshot import PolicySnapshot
    from haggler.safety import promotion
    from haggler.safety import safe_learning as safety
    from haggler.serving import model_versions
    from haggler.store import experiments

    if (version is None) == (checkpoint is None):
        raise click.UsageError("give a model VERSION or --checkpoint PATH, not both")
    settings = _settings()
    sessions = _store_sessions()
    with sessions() as session:
        champion = model_versions.serving_snapshot(session)
        if champion is None:
            raise click.ClickException("no model serves yet: start the service once")
        if version is not None:
            try:
                stored = snapshot_store.get_snapshot(version, session=session)
            except store.NotFound as error:
                raise click.ClickException(str(error)) from None
            if stored.weights is None:
                raise click.ClickException(f"model version {version} has no weights left")
            candidate = PolicySnapshot.from_bytes(stored.weights, version)
        logged = experiments.logged_episodes(session=session, limit=safety.LOGGED_EPISODES)
    if checkpoint is not None:
        path = resolve_checkpoint(settings.checkpoint_dir, checkpoint)
        candidate = dataclasses.replace(_load_agent(path).snapshot, version=0)
    decision = promotion.judge(
        candidate,
        champion,
        logged,
        safety.gate_config(settings),
        rng=np.random.default_rng(candidate.version),
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "candidate": version or checkpoint,
                    "champion_version": champion.version,
                    "passed": decision.passed,
                    "reason": decision.reason,
                    "figures": decision.figures,
                },
                indent=2,
            )
        )
        return
    name = f"version {version}" if version is not None else checkpoint
    verdict = "PASSES" if decision.passed else "FAILS"
    click.echo(f"Candidate {name} against serving version {champion.version}: {verdict} the gate")
    click.echo(f"  {decision.reason}")
    click.echo(json.dumps(decision.figures, indent=2))


@cli.group("ab-test")
def ab_test() -> None:
    """A/B tests of a challenger against the serving model, on the store at DATABASE_URL."""


@ab_test.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
def ab_test_list(limit: int) -> None:
    """The newest A/B tests with their last per-arm figures."""
    from haggler.store import experiments

    with _store_sessions()() as session:
        tests = experiments.ab_tests(session=session, limit=limit)
    if not tests:
        click.echo("No A/B tests yet.")
        return
    for test in tests:
        click.echo(
            f"test {test.id}: challenger v{test.challenger_version} against champion "
            f"v{test.champion_version} on {100 * test.split:.0f}%: {test.status}"
            + (f" ({test.decided_by}: {test.reason})" if test.reason else "")
        )
        for arm in ("champion", "challenger"):
            figures = (test.verdict or {}).get(arm)
            if figures:
                click.echo(f"  {arm:10s} {_arm_line(figures)}")


def _arm_line(figures: dict[str, Any]) -> str:
    def estimate(name: str, scale: float = 1.0) -> str:
        e = figures.get(name) or {}
        if e.get("mean") is None:
            return f"{name} -"
        low, high = e.get("ci_low"), e.get("ci_high")
        interval = ""
        if low is not None and high is not None:
            interval = f" [{scale * low:.3f}, {scale * high:.3f}]"
        return f"{name} {scale * e['mean']:.3f}{interval}"

    return f"n={figures.get('negotiations', 0)}  " + "  ".join(
        estimate(name) for name in ("deal_rate", "reward", "surplus")
    )


@ab_test.command("start")
@click.argument("version", type=click.IntRange(min=1))
@click.option(
    "--split",
    type=click.FloatRange(0.05, 0.95),
    default=0.2,
    show_default=True,
    help="The challenger's share of new negotiations.",
)
def ab_test_start(version: int, split: float) -> None:
    """Test stored model VERSION against the serving one."""
    from haggler.store import experiments

    with _store_sessions()() as session:
        serving = snapshot_store.serving_version(session=session)
        try:
            stored = snapshot_store.get_snapshot(version, session=session)
        except store.NotFound as error:
            raise click.ClickException(str(error)) from None
        if stored.weights is None:
            raise click.ClickException(f"model version {version} has no weights left")
        if serving is None or serving == version:
            raise click.ClickException(f"model version {version} is the one serving")
        try:
            test = experiments.start_ab_test(serving, version, split, session=session)
        except store.Conflict as error:
            raise click.ClickException(str(error)) from None
        session.commit()
    click.echo(f"A/B test {test.id}: version {version} against {serving} on {100 * split:.0f}%.")


@ab_test.command("promote")
@click.argument("test_id", type=click.IntRange(min=1))
@click.option("--reason", default="the operator's decision", show_default=True)
def ab_test_promote(test_id: int, reason: str) -> None:
    """End running test TEST_ID by promoting its challenger."""
    _decide(test_id, "promote", reason)


@ab_test.command("reject")
@click.argument("test_id", type=click.IntRange(min=1))
@click.option("--reason", default="the operator's decision", show_default=True)
def ab_test_reject(test_id: int, reason: str) -> None:
    """End running test TEST_ID by rejecting its challenger (the champion serves on)."""
    _decide(test_id, "reject", reason)


def _decide(test_id: int, decision: Literal["promote", "reject"], reason: str) -> None:
    from haggler.safety import safe_learning as safety

    try:
        ended = safety.decide_ab_test(
            _store_sessions(),
            test_id,
            decision,
            decided_by="operator",
            reason=reason,
            settings=_settings(),
        )
    except (store.NotFound, store.Conflict) as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"A/B test {ended.id}: challenger v{ended.challenger_version} {ended.status}; "
        f"the service follows within a second."
    )


def main() -> None:
    """Entry point: one-line errors, no tracebacks, for every bad input."""
    from haggler.core.negotiation import ProtocolError
    from haggler.learning.checkpoints import CheckpointError
    from haggler.policy.snapshot import ModelFileError

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        click.echo("haggler: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        click.echo(f"haggler: error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except (ModelFileError, CheckpointError, ProtocolError, ValueError, OSError) as error:
        click.echo(f"haggler: error: {error}", err=True)
        sys.exit(1)
