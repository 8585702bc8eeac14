"""`haggler bench-scale`: reads, turns and the learner at 10k, 100k and 1M negotiations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from haggler.bench.scale import ScaleResult

READ_GROWTH = 1.5
"""The issue's target: every read at the largest size within this factor of the smallest."""
FIXED_READ_MS = 20.0
"""... and /metrics and /api/summary within this at any size."""
SERVED_KEPT_UP_S, SERVED_MERGED_S = 0.1, 2.0
"""Median end -> serving delay where the learner keeps up, and at full load (merging)."""


def _sizes(
    _context: click.Context, _parameter: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        sizes = tuple(sorted({int(part.replace("_", "")) for part in value.split(",")}))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of numbers like 10000,100000") from None
    if sizes[0] < 1:
        raise click.BadParameter("sizes are positive numbers of negotiations")
    return sizes


@click.command("bench-scale")
@click.option(
    "--sizes",
    callback=_sizes,
    default=None,
    help="Negotiations in the store at each measurement, comma-separated "
    "[default: 10000,100000,1000000; with --quick 200,1000].",
)
@click.option(
    "--database-url",
    default=None,
    help="The store [default: a temporary SQLite file]. A postgresql:// database is WIPED "
    "first (its `public` schema dropped, with all its data); an SQLite file must be new.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the figures to this file as JSON.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Tiny stores, 3 requests per endpoint, a second of each load: checks that every "
    "phase runs (~40 s); measures nothing worth keeping.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the pool and loads.")
def bench_scale(
    sizes: tuple[int, ...] | None,
    database_url: str | None,
    json_path: Path | None,
    quick: bool,
    seed: int,
) -> None:
    """Fill a store fast to each size (copies of negotiations played for real) and measure a
    real `haggler serve` on it: every read endpoint (median, p99), turns under load, the
    learner's lag at 50%, 100% and 200% of its capacity, and the store's size. Needs wrk;
    about 15 minutes on SQLite with the default sizes, 20 on PostgreSQL."""
    from importlib.resources import as_file, files

    from haggler.bench.scale import ScaleConfig, as_json, run_scale

    changes: dict[str, Any] = {"database_url": database_url, "seed": seed}
    if sizes is not None:
        changes["sizes"] = sizes
    with as_file(files("haggler.data").joinpath("starter_model.pth")) as starter:
        changes["model_path"] = starter
        config = ScaleConfig.quick(**changes) if quick else ScaleConfig(**changes)
        result = run_scale(config, progress=lambda line: click.echo(line, err=True))
    click.echo(
        f"\nhaggler bench-scale: {result.backend}, {result.pool:,} negotiations played and copied, "
        f"{result.requests} requests per read endpoint, {result.seconds / 60:.0f} min\n"
    )
    click.echo(table(result))
    click.echo("\ntargets:")
    for line in targets(result):
        click.echo(f"  {line}")
    if json_path is not None:
        json_path.write_text(as_json(result))


def _ms(median: float, p99: float) -> str:
    return f"{median:.1f} / {p99:.1f}"


def _seconds(value: float | None) -> str:
    if value is None or value != value:  # None or nan: nothing to say
        return "-"
    return "never" if value == float("inf") else f"{value:.2f}"


def table(result: ScaleResult) -> str:
    """One column per size: the store, the reads, the turns under load, the learner."""
    sizes = result.sizes
    rows: list[tuple[str, list[str]]] = [
        ("negotiations in the store", [f"{s.negotiations:,}" for s in sizes]),
        ("filled: copies (seconds)", [f"{s.filled:,} ({s.fill_seconds:.0f})" for s in sizes]),
        ("store size, MB", [f"{s.store_bytes / 2**20:,.0f}" for s in sizes]),
        ("  bytes per negotiation", [f"{s.store_bytes / s.negotiations:,.0f}" for s in sizes]),
        ("read, ms: median / p99", []),
    ]
    for i, timing in enumerate(sizes[0].reads):
        rows.append(
            (f"  {timing.path}", [_ms(s.reads[i].median_ms, s.reads[i].p99_ms) for s in sizes])
        )
    for i, timing in enumerate(sizes[0].reads):
        if any(s.reads[i].errors for s in sizes):
            rows.append((f"  errors: {timing.path}", [str(s.reads[i].errors) for s in sizes]))
    offered = sizes[0].turns.offered_turns_per_second
    rows += [
        (
            f"turns, {offered:.0f}/s offered: done",
            [f"{s.turns.turns_per_second:.0f}" for s in sizes],
        ),
        ("  latency ms: p50 / p99", [_ms(s.turns.p50_ms, s.turns.p99_ms) for s in sizes]),
        ("  errors", [str(s.turns.errors) for s in sizes]),
        ("learner capacity, negotiations/s", [f"{s.capacity:.1f}" for s in sizes]),
        ("  merged meanwhile (0: one by one)", [str(s.capacity_merged) for s in sizes]),
    ]
    for i, level in enumerate(sizes[0].lag):
        lags = [s.lag[i] for s in sizes]
        rows += [
            (
                f"learner at {level.level:.0%}: negotiations/s offered / done",
                [
                    f"{x.offered_negotiations_per_second:.1f} / {x.negotiations_per_second:.1f}"
                    for x in lags
                ],
            ),
            (
                "  merged? negotiations (updates)",
                [
                    f"{'yes' if x.merged_negotiations else 'no'} {x.merged_negotiations} "
                    f"({x.merged_updates}/{x.updates})"
                    for x in lags
                ],
            ),
            (
                "  end -> served s: median / p90",
                [f"{_seconds(x.served_median_s)} / {_seconds(x.served_p90_s)}" for x in lags],
            ),
            ("  samples per negotiation", [_number(x.samples_per_negotiation) for x in lags]),
            ("  end -> learned (store), median s", [_seconds(x.learned_median_s) for x in lags]),
            ("  version -> served, median s", [_seconds(x.pickup_median_s) for x in lags]),
            ("  not served after the drain", [str(x.not_served) for x in lags]),
            ("  pending when the load stopped", [str(x.pending_at_end) for x in lags]),
            ("  turn latency ms: p50 / p99", [_ms(x.turns.p50_ms, x.turns.p99_ms) for x in lags]),
        ]
    width = max(len(label) for label, _ in rows) + 2
    lines = [f"{'':{width}}" + "".join(f"{s.size:>18,}" for s in sizes)]
    lines += [f"{label:{width}}" + "".join(f"{v:>18}" for v in values) for label, values in rows]
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def targets(result: ScaleResult) -> list[str]:
    """The issue's targets, one line each: met or MISSED, with the figures."""
    first, last = result.sizes[0], result.sizes[-1]
    lines = []
    for before, after in zip(first.reads, last.reads, strict=True):
        ratio = after.median_ms / before.median_ms
        verdict = "MISSED" if ratio > READ_GROWTH else "met"
        lines.append(
            f"{verdict}: {after.path} median x{ratio:.2f} from {first.negotiations:,} to "
            f"{last.negotiations:,} ({before.median_ms:.1f} -> {after.median_ms:.1f} ms)"
        )
    for size in result.sizes:
        for timing in size.reads:
            if timing.path in ("/api/summary", "/metrics"):
                verdict = "MISSED" if timing.median_ms > FIXED_READ_MS else "met"
                lines.append(
                    f"{verdict}: {timing.path} <= {FIXED_READ_MS:.0f} ms at "
                    f"{size.negotiations:,}: median {timing.median_ms:.1f} ms"
                )
    for size in result.sizes:
        for level in size.lag:
            kept_up = level.merged_negotiations == 0
            limit = SERVED_KEPT_UP_S if kept_up else SERVED_MERGED_S
            verdict = "met" if level.served_median_s <= limit else "MISSED"
            lines.append(
                f"{verdict}: learner at {level.level:.0%} of capacity, {size.negotiations:,} "
                f"negotiations: end -> served median {_seconds(level.served_median_s)} s "
                f"({'kept up' if kept_up else 'merged'}: <= {limit:g} s)"
            )
    return lines
