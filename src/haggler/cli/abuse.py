"""`haggler bench-abuse`: does a normal client's turn latency hold beside abusive clients?"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from haggler.cli.common import load_settings


@click.command("bench-abuse")
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Model file [default: MODEL_PATH, else the starter model shipped with haggler].",
)
@click.option(
    "--negotiations",
    type=click.IntRange(10, 100_000),
    default=200,
    show_default=True,
    help="Negotiations the normal client plays in each condition.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 20),
    default=2,
    show_default=True,
    help="Times the conditions take turns (the negotiations shared among them).",
)
@click.option(
    "--rate",
    type=click.FloatRange(1, 1000),
    default=100.0,
    show_default=True,
    help="The normal client's requests a second.",
)
@click.option(
    "--streams",
    type=click.IntRange(0, 10_000),
    default=800,
    show_default=True,
    help="Event streams the stream abuser asks for.",
)
@click.option(
    "--flood-connections",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Connections of the flooding client (16 pipelined requests each).",
)
@click.option(
    "--flood-key",
    type=click.Choice(["token", "address", "rotating-tokens"]),
    default="token",
    show_default=True,
    help=(
        "The flood's credentials: an account's token, none (the seller's address), or a "
        "made-up bearer token on each request."
    ),
)
@click.option(
    "--server-env",
    multiple=True,
    metavar="NAME=VALUE",
    help="A setting of the server, e.g. RATE_LIMIT_PER_SECOND=0 (repeatable).",
)
def bench_abuse(
    model_path: Path | None,
    negotiations: int,
    rounds: int,
    rate: float,
    streams: int,
    flood_connections: int,
    flood_key: str,
    server_env: tuple[str, ...],
) -> None:
    """Start `haggler serve` on a fresh store and measure one seller's turn latency alone,
    beside many open event streams, and beside a flooding client (~1.5 minutes)."""
    from importlib.resources import as_file, files

    from haggler.bench.abuse import AbuseConfig, FloodKey, run_abuse

    if any("=" not in setting for setting in server_env):
        raise click.BadParameter("give NAME=VALUE", param_hint="--server-env")
    environment = dict(setting.split("=", 1) for setting in server_env)
    path = model_path or load_settings().model_path
    with as_file(files("haggler.data").joinpath("starter_model.pth")) as starter:
        if model_path is None and not path.is_file():
            click.echo(f"no model at {path}: serving the starter model", err=True)
            path = starter
        if not path.is_file():
            raise click.ClickException(f"no model at {path}")
        flood = cast(FloodKey, flood_key)
        config = AbuseConfig(
            model_path=path,
            negotiations=negotiations,
            rounds=rounds,
            requests_per_second=rate,
            streams=streams,
            flood_connections=flood_connections,
            flood_key=flood,
            server_env=environment,
        )
        result = run_abuse(config, progress=lambda line: click.echo(line, err=True))

    alone = result.conditions[0]
    click.echo(
        f"\nOne seller at {rate:.0f} requests/s, {negotiations} negotiations a condition in "
        f"{rounds} rounds, one server process on SQLite (learner in its own process); the "
        "abuser's figures are a round's:\n"
    )
    click.echo(
        f"{'condition':28s} {'turns':>6s} {'median ms':>10s} {'p99 ms':>8s} "
        f"{'x alone':>12s}  {'refused':>8s}  abuser"
    )
    for condition in result.conditions:
        ratio = f"{condition.median_ms / alone.median_ms:.2f}/{condition.p99_ms / alone.p99_ms:.2f}"
        refused = " ".join(f"{status}:{n}" for status, n in sorted(condition.refused.items()))
        abuser = ", ".join(f"{key} {value:.0f}" for key, value in sorted(condition.abuser.items()))
        click.echo(
            f"{condition.name:28s} {condition.turns:6d} {condition.median_ms:10.2f} "
            f"{condition.p99_ms:8.2f} {ratio:>12s}  {refused or '-':>8s}  {abuser}"
        )
    click.echo(
        "\nx alone: median/p99 over the same figures alone (target: within 2x); refused: the "
        "seller's answers other than 2xx by status (0: none in 30 s)"
    )
