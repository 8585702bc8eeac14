"""`haggler bench-crash`: does a kill -9 of the service lose a move it acknowledged?"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import click

if TYPE_CHECKING:
    from collections import Counter

    from haggler.bench.crash import Backend, CrashResult

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
"""The PostgreSQL server of this machine's test suite (`HAGGLER_TEST_POSTGRES_URL`)."""


@click.command("bench-crash")
@click.option(
    "--backend",
    type=click.Choice(["sqlite", "postgresql", "both"]),
    default="sqlite",
    show_default=True,
    help="The store: a fresh SQLite file, the PostgreSQL database at --postgres-url, or both.",
)
@click.option(
    "--postgres-url",
    default=POSTGRES_URL,
    show_default=True,
    help="PostgreSQL database of a postgresql run. ITS `public` SCHEMA IS DROPPED, with all its "
    "data (the test suite's database is wiped the same way).",
)
@click.option(
    "--kills",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="SIGKILLs of the server (with its learner), each after 0.5-3 s of load.",
)
@click.option(
    "--clients",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Client threads playing negotiations flat out.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds kills and moves.")
def bench_crash(backend: str, postgres_url: str, kills: int, clients: int, seed: int) -> None:
    """Kill `haggler serve` with SIGKILL under load, again and again, and check that no
    acknowledged move is lost (~2 minutes a backend). A postgresql run WIPES the database at
    --postgres-url (drops its `public` schema)."""
    from importlib.resources import as_file, files

    from haggler.bench.crash import CrashConfig, run_crash

    backends = ["sqlite", "postgresql"] if backend == "both" else [backend]
    results = []
    with as_file(files("haggler.data").joinpath("starter_model.pth")) as starter:
        for name in backends:
            click.echo(f"{name}: {kills} kills, {clients} clients...", err=True)
            config = CrashConfig(
                backend=cast("Backend", name),
                model_path=starter,
                postgres_url=postgres_url,
                kills=kills,
                clients=clients,
                seed=seed,
            )
            results.append(run_crash(config))
    _print_table(results, clients=clients, kills=kills, seed=seed)
    broken = [
        result.backend
        for result in results
        if result.moves_lost
        or result.negotiations_diverging
        or result.clients.kept_answer_differs
        or result.trained > result.finished
    ]
    if broken:
        for result in results:
            click.echo(f"\n{result.backend} server log, last lines:\n{result.server_log_tail}")
        raise click.ClickException(f"acknowledged work lost or counted twice on {broken}")


def _print_table(results: list[CrashResult], *, clients: int, kills: int, seed: int) -> None:
    rows: list[tuple[str, list[object]]] = [
        ("negotiations acknowledged", [len(r.clients.acknowledged) for r in results]),
        ("moves acknowledged", [r.clients.moves for r in results]),
        ("kills (server and learner)", [r.kills for r in results]),
        ("  with the learner at work", [r.kills_learning for r in results]),
        ("  median seconds to answer again", [f"{r.restart_seconds:.1f}" for r in results]),
        ("moves lost (must be 0)", [r.moves_lost for r in results]),
        ("negotiations diverging (must be 0)", [r.negotiations_diverging for r in results]),
        ("retried moves answered from their key", [r.clients.from_key for r in results]),
        ("  of which not as stored (must be 0)", [r.clients.kept_answer_differs for r in results]),
        ("retried moves applied by the retry", [r.clients.applied_on_retry for r in results]),
        ("openings unanswered (not acknowledged)", [r.clients.unanswered_opens for r in results]),
        ("answers refused, by status", [_statuses(r.clients.refused) for r in results]),
        ("finished negotiations (store)", [r.finished for r in results]),
        ("learned from (must be <= finished)", [r.trained for r in results]),
        ("seconds", [f"{r.seconds:.0f}" for r in results]),
    ]
    click.echo(
        f"\nacknowledged moves lost under kill -9 ({clients} clients, {kills} kills, seed {seed})\n"
    )
    click.echo(f"{'':40s}" + "".join(f"{r.backend:>12s}" for r in results))
    for label, values in rows:
        click.echo(f"{label:40s}" + "".join(f"{value!s:>12s}" for value in values))


def _statuses(refused: Counter[int]) -> str:
    return ",".join(f"{status}x{count}" for status, count in sorted(refused.items())) or "none"
