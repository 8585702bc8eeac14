"""`haggler train`, `evaluate` and `negotiate`: the model on its own, without a store."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from haggler.cli.common import check_writable, load_agent, load_settings
from haggler.config import DQNConfig
from haggler.core.catalogue import SEED_CATALOGUE, find_product
from haggler.core.sellers import ALL_STRATEGIES, HELD_OUT_STRATEGIES

if TYPE_CHECKING:  # heavy imports (torch) happen inside the commands that need them
    from haggler.safety.evaluation import Evaluation

STRATEGY = click.Choice(ALL_STRATEGIES)


STARTER_MODEL = "starter_model.pth"
"""The starter model shipped in `haggler.data`: `haggler train --seed 0` with the defaults."""


@click.command()
@click.option(
    "--env-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Budget in buyer moves [default: the starter model's, 400,000].",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=None,
    help="Also stop after this many seconds (then the model depends on the machine's speed).",
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

    The same seed and budget give the same model. The seller family held out of evaluation
    (deadline sellers) is never used in training.
    """
    settings = load_settings()
    path = model_path or settings.model_path
    if if_missing and path.exists():
        click.echo(f"Model {path} exists; not training (remove it or drop --if-missing).")
        return
    check_writable(path)
    import torch
    from tqdm import tqdm

    from haggler.learning.dqn import BuyerAgent
    from haggler.learning.pretraining import (
        STARTER_ENV_STEPS,
        PretrainConfig,
        PretrainProgress,
        budget_used,
        pretrain,
    )

    torch.set_num_threads(1)  # one thread: the same result on every machine, and no slower
    config = PretrainConfig(seconds=seconds, env_steps=env_steps or STARTER_ENV_STEPS, seed=seed)
    agent = BuyerAgent(DQNConfig(seed=seed))
    total = 1000
    # A bar only on a terminal: redrawn into a log file it is thousands of lines. Elsewhere one
    # line every tenth of the budget.
    on_terminal = sys.stderr.isatty()
    bar = tqdm(
        total=total,
        disable=quiet or not on_terminal,
        unit="‰",
        desc="training",
        bar_format=("{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}"),
    )
    next_line = [0.1]

    def report(progress: PretrainProgress) -> None:
        used = budget_used(config, progress)
        figures = (
            f"negotiations={progress.episodes} updates={progress.gradient_steps} "
            f"eps={progress.epsilon:.2f} return={progress.mean_return:.3f} "
            f"loss={progress.loss:.4f}"
        )
        if not bar.disable:
            bar.update(min(total, int(used * total)) - bar.n)
            bar.set_postfix_str(figures, refresh=False)
        elif not quiet and used >= next_line[0] - 1e-9:
            click.echo(f"training: {min(used, 1.0):4.0%} {figures}", err=True)
            while next_line[0] <= used + 1e-9:
                next_line[0] += 0.1

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


@click.command("starter-model")
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to put it [default: MODEL_PATH, models/buyer_agent.pth].",
)
@click.option("--if-missing", is_flag=True, help="Do nothing if the model file already exists.")
def starter_model(model_path: Path | None, if_missing: bool) -> None:
    """Install the starter model shipped with haggler as the model file.

    It is `haggler train --seed 0` with the default budget (`make starter-model` reproduces it),
    so that a fresh install serves at once instead of training for minutes first.
    """
    from importlib.resources import files

    from haggler.files import atomic_write

    path = model_path or load_settings().model_path
    if if_missing and path.exists():
        click.echo(f"Model {path} exists; keeping it (remove it or drop --if-missing).")
        return
    check_writable(path)
    atomic_write(path, files("haggler.data").joinpath(STARTER_MODEL).read_bytes())
    click.echo(f"Installed the starter model as {path}")


@click.command()
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
    help="Fix the buyer's rounds [default: drawn from 5-40].",
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
    from haggler.policy.baselines import BASELINES
    from haggler.policy.snapshot import AgentBuyer
    from haggler.safety.evaluation import across_models, evaluation_suites, format_evaluation
    from haggler.safety.evaluation import evaluate as run_evaluation

    paths = model_paths or (load_settings().model_path,)
    agents = [AgentBuyer(load_agent(path).snapshot) for path in paths]
    suites = evaluation_suites(episodes, seed, strategies, max_rounds)
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
            output["across_models"] = across_models(main)
        if "held_out" in results:
            held = results["held_out"]
            output["held_out"] = (
                held[0].as_dict()
                if len(held) == 1
                else {"runs": [e.as_dict() for e in held], "across_models": across_models(held)}
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
            summary = across_models(runs)
            click.echo(f"Across {len(paths)} models ({name} suite), mean ± sd:")
            for key, value in summary.items():
                click.echo(f"  {key:34s} {value['mean']:+.3f} ± {value['sd']:.3f}")


@click.command()
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
@click.option(
    "--token",
    envvar="HAGGLER_TOKEN",
    default=None,
    help="With --url: a purchaser's (or operator's) API token, which opens the negotiation "
    "[default: HAGGLER_TOKEN].",
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
    token: str | None,
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

        if not token:
            raise click.ClickException(
                "--url needs a purchaser's API token: --token or HAGGLER_TOKEN "
                "(`haggler users token NAME` makes one)"
            )
        play_seller(url, token, item.name, buyer_limit, rounds, quantity)
        return
    terms = Terms(item.list_price, buyer_limit, max_rounds=rounds, quantity=quantity)
    agent = load_agent(model_path or load_settings().model_path)
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
