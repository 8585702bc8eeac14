"""`haggler bench-page-load`: how long a page takes, in Chromium, until its charts are drawn."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from haggler.bench.page_load import Timings


@click.command("bench-page-load")
@click.option("--path", default="/dashboard", show_default=True, help="The page to load.")
@click.option(
    "--loads",
    type=click.IntRange(1, 200),
    default=10,
    show_default=True,
    help="Measured loads with a cold cache, and as many with a warm one.",
)
@click.option(
    "--negotiations",
    type=click.IntRange(10, 10_000),
    default=200,
    show_default=True,
    help="Finished negotiations in the store, all learned from.",
)
@click.option(
    "--size",
    default="1440x900",
    show_default=True,
    help="Browser window, WIDTHxHEIGHT in CSS pixels.",
)
@click.option(
    "--chromium",
    type=click.Path(path_type=Path),
    default=Path("/usr/bin/chromium"),
    show_default=True,
    help="The Chromium to drive.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write every load's figure to this file.",
)
def bench_page_load(
    path: str, loads: int, negotiations: int, size: str, chromium: Path, json_path: Path | None
) -> None:
    """Load a page (the dashboard by default) signed in as an operator, in headless Chromium,
    against a real `haggler serve` on a fresh store holding NEGOTIATIONS finished negotiations,
    and print the time from navigation start until every chart on it is drawn with data:
    cold cache (a first visit) and warm cache (a visit again). Needs Playwright (the dev extra)."""
    from haggler.bench.page_load import PageLoadConfig, run

    try:
        width, height = (int(part) for part in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter("give WIDTHxHEIGHT, like 1440x900", param_hint="--size") from None
    config = PageLoadConfig(
        path=path,
        loads=loads,
        negotiations=negotiations,
        width=width,
        height=height,
        chromium=chromium,
    )
    click.echo(
        f"Filling a store with {negotiations} negotiations, then loading {path}...", err=True
    )
    result = run(config)

    def line(name: str, timings: Timings) -> str:
        return (
            f"  {name}  median {timings.median_ms / 1000:.3f} s   min {timings.min_ms / 1000:.3f} s"
            f"   max {timings.max_ms / 1000:.3f} s"
        )

    click.echo(
        f"{path} at {width}x{height}, from navigation start until every chart is drawn with data "
        f"({loads} loads each):"
    )
    click.echo(line("cold cache", result.cold))
    click.echo(line("warm cache", result.warm))
    click.echo("scripts of a cold load (transferred / decoded, time):")
    for script in result.scripts:
        click.echo(
            f"  {script.url.split('/', 3)[-1]:40s} {script.transferred_bytes / 1024:8.0f} KiB"
            f" / {script.decoded_bytes / 1024:6.0f} KiB  {script.duration_ms:6.0f} ms"
        )
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(asdict(result), indent=2, default=str))
