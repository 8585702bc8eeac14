"""`haggler bench-generalisation`: the agent against seller families it never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import click

from haggler.cli.common import check_writable
from haggler.core.sellers import FAMILIES, HELD_OUT_FAMILY


@click.command("bench-generalisation")
@click.option(
    "--seeds",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Training seeds (0, 1, ...): one model per seed and left-out family.",
)
@click.option(
    "--family",
    "families",
    type=click.Choice(tuple(FAMILIES)),
    multiple=True,
    help="Leave out only these families [default: every family in turn].",
)
@click.option(
    "--env-steps",
    type=click.IntRange(min=1_000),
    default=None,
    help="Pretraining budget of every model [default: the starter model's].",
)
@click.option(
    "--episodes",
    type=click.IntRange(min=50),
    default=1000,
    show_default=True,
    help="Held-out negotiations per family.",
)
@click.option(
    "--stream",
    "stream_negotiations",
    type=click.IntRange(min=0),
    default=3000,
    show_default=True,
    help="Negotiations of the online stream per seed (0: skip it).",
)
@click.option(
    "--stream-family",
    "stream_families",
    type=click.Choice((*FAMILIES, "all")),
    multiple=True,
    help=f"Stream against these families, one stream each; `all`: every family [default: "
    f"{HELD_OUT_FAMILY}, the starter's held-out family].",
)
@click.option(
    "--limit-episodes",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="Negotiations of the limit-inference attack (0: skip it).",
)
@click.option(
    "--starter-seeds",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Seeds of the starter recipe evaluated like `haggler evaluate` (0: skip).",
)
@click.option(
    "--jobs", type=click.IntRange(1, 16), default=2, show_default=True, help="Worker processes."
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("models/bench/generalisation"),
    show_default=True,
    help="Folder of the cached pretrained models.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the figures as JSON to this file.",
)
def bench_generalisation(
    seeds: int,
    families: tuple[str, ...],
    env_steps: int | None,
    episodes: int,
    stream_negotiations: int,
    stream_families: tuple[str, ...],
    limit_episodes: int,
    starter_seeds: int,
    jobs: int,
    cache_dir: Path,
    json_path: Path | None,
) -> None:
    """Leave one seller family out of training, every family in turn, over several seeds: the
    agent against the best rules and the type oracle on the family it never saw; then how much
    of its limit its moves give away, online learning against an unseen family at the default
    settings, and the starter recipe over more seeds."""
    import dataclasses

    from haggler.bench.generalisation import (
        GeneralisationConfig,
        format_report,
        run_generalisation,
    )

    if json_path is not None:
        check_writable(json_path)
    config = GeneralisationConfig(
        seeds=tuple(range(seeds)),
        episodes=episodes,
        stream_negotiations=stream_negotiations,
        limit_episodes=limit_episodes,
        starter_seeds=starter_seeds,
        jobs=jobs,
        cache_dir=cache_dir,
    )
    if families:
        config = dataclasses.replace(config, families=families)
    if "all" in stream_families:
        stream_families = tuple(FAMILIES)
    if stream_families:
        config = dataclasses.replace(config, stream_families=tuple(dict.fromkeys(stream_families)))
    if env_steps is not None:
        config = dataclasses.replace(config, env_steps=env_steps)
    report = run_generalisation(config, log=lambda line: click.echo(line, err=True))
    click.echo(format_report(report))
    if json_path is not None:
        json_path.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        click.echo(f"Wrote {json_path}")
