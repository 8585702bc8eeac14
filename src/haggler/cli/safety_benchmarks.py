"""`haggler bench-ope`, `bench-ab`, `bench-rollback` and `bench-safety`: are the guards of
online learning honest (off-policy intervals, the A/B stopping rule, the rollback monitor), and
what do they buy when the sellers shift or poison the learning?

The benchmark modules (`haggler.bench`) are imported inside the commands: `haggler --help` must
not load them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from haggler.cli.common import check_writable, load_agent, load_settings
from haggler.core.sellers import TRAINING_STRATEGIES


@click.command("bench-ope")
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
    from haggler.bench.ope_honesty import (
        HonestyConfig,
        format_honesty,
        honesty_trials,
        reference_policies,
    )
    from haggler.policy.exploration import Exploration

    champion, candidate = reference_policies(seed)
    config = HonestyConfig(
        trials=trials,
        episodes_per_trial=episodes,
        seed=seed,
        behaviour_exploration=Exploration(
            "safe" if logging_mode == "safe" else "epsilon", logging_epsilon
        ),
    )
    report = honesty_trials(
        config, behaviour=champion, target=candidate if target == "candidate" else champion
    )
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else format_honesty(report))


def _outcome_pool(model: Path | None, episodes: int, seed: int) -> tuple[str, list[Any]]:
    """Outcomes of the model (greedy) on a held-out suite: what the A/B and rollback
    simulations draw from."""
    from haggler.core.scenarios import EVALUATION_STREAM, scenario_suite
    from haggler.policy.snapshot import AgentBuyer
    from haggler.safety.ab_simulation import outcomes_of

    path = model or load_settings().model_path
    agent = load_agent(path)
    suite = scenario_suite(episodes, EVALUATION_STREAM * 1_000 + seed, TRAINING_STRATEGIES)
    return str(path), outcomes_of(AgentBuyer(agent.snapshot), suite)


@click.command("bench-ab")
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

    from haggler.safety.ab_simulation import aa_simulation, format_ab_simulation
    from haggler.safety.ab_testing import StoppingRule

    name, outcomes = _outcome_pool(model, pool, seed)
    click.echo(f"Outcome pool: {len(outcomes)} negotiations of {name} (greedy).")
    report = aa_simulation(outcomes, trials, StoppingRule(), split, rng=np.random.default_rng(seed))
    click.echo(format_ab_simulation(report))


@click.command("bench-rollback")
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


@click.command("bench-safety")
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

    check_writable(out / f"{which}.json", "the figures")
    options: dict[str, Any] = {"seeds": seeds}  # the rest: the benchmark's own defaults
    if modes:
        options["modes"] = modes
    if negotiations is not None:
        options["negotiations"] = negotiations
    if pretrain_env_steps is not None:
        options["pretrain_env_steps"] = pretrain_env_steps
    json_path, plot_path = out / f"{which}.json", out / f"{which}.html"
    if which == "shift":
        report = bench.shift_benchmark(
            bench.ShiftConfig(**options),
            json_path=json_path,
            plot_path=plot_path,
            jobs=jobs,
            verbose=True,
        )
    else:
        report = bench.poisoning_benchmark(
            bench.PoisoningConfig(**options),
            json_path=json_path,
            plot_path=plot_path,
            jobs=jobs,
            verbose=True,
        )
    click.echo(report.text)
    click.echo(f"Figures in {out / f'{which}.json'}, plot in {out / f'{which}.html'}.")
