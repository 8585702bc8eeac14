"""`haggler archive`: move old finished negotiations out of the store at DATABASE_URL into a
file, load them back, and see how big the store is."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from haggler.cli.common import load_settings, store_sessions

if TYPE_CHECKING:
    from haggler.store.archive import Needs


@click.group()
def archive() -> None:
    """Archive old negotiations to a file (and back): keeping everything is the default."""


def _needs() -> Needs:
    """What the live parts read, from the settings and the model's replay buffer size."""
    from haggler.config import DQNConfig
    from haggler.learning.dqn import read_checkpoint
    from haggler.safety.candidates import LOGGED_EPISODES
    from haggler.safety.safe_learning import REFERENCE_WINDOWS
    from haggler.store.archive import Needs

    settings = load_settings()
    buffer_size = DQNConfig().buffer_size
    if settings.model_path.exists():
        config = read_checkpoint(settings.model_path).get("config") or {}
        buffer_size = int(config.get("buffer_size", buffer_size))
    return Needs(
        replay_transitions=buffer_size,
        gate_negotiations=LOGGED_EPISODES,
        reference_negotiations=REFERENCE_WINDOWS * settings.rollback_window,
    )


def _date(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.ClickException(
            f"bad date {value!r}: give one like 2026-11-01 or 2026-11-01T12:00+01:00"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@archive.command("export")
@click.option(
    "--finished-before",
    required=True,
    help="Archive negotiations that ended before this date (ISO 8601; UTC unless it says).",
)
@click.option(
    "--to",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="A new archive file (gzip JSON lines), e.g. archive-2026-11.jsonl.gz.",
)
def archive_export(finished_before: str, path: Path) -> None:
    """Write old finished negotiations to a file, then remove them from the store.

    Never the ones something live still reads: negotiations in progress or waiting for the
    learner, the running A/B test's, the newest the promotion gate replays, the rollback
    monitor's reference window, and those a restarted learner reloads into its replay buffer.
    """
    from haggler.store.archive import ArchiveError
    from haggler.store.archive import archive as archive_negotiations

    before = _date(finished_before)
    needs = _needs()
    with store_sessions()() as session:
        try:
            done = archive_negotiations(
                path,
                session=session,
                finished_before=before,
                needs=needs,
            )
        except ArchiveError as error:
            raise click.ClickException(str(error)) from None
    if done.negotiations == 0:
        click.echo(
            f"Archived nothing; kept from negotiation {done.protection.from_id} on, "
            f"for {done.protection.reason}."
        )
    else:
        size = path.stat().st_size
        click.echo(
            f"Archived {done.negotiations:,} negotiations ({done.first_id} to {done.last_id}) to "
            f"{path} ({size / 1e6:.1f} MB) and removed them from the store."
        )
    click.echo(
        f"Kept: every negotiation from {done.protection.from_id} on ({done.protection.reason}), "
        "and every one that ended after the date."
    )


@archive.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def archive_load(path: Path) -> None:
    """Put the negotiations of an archive file back in the store (all or, on an error, none)."""
    from haggler.store.archive import ArchiveError, load

    with store_sessions()() as session:
        try:
            loaded = load(path, session=session)
        except ArchiveError as error:
            session.rollback()
            raise click.ClickException(str(error)) from None
        session.commit()
    click.echo(
        f"Loaded {loaded.loaded:,} negotiations from {path}"
        + (f"; {loaded.skipped:,} were in the store already" if loaded.skipped else "")
        + "."
    )


@archive.command("status")
def archive_status() -> None:
    """How many negotiations the store holds, its size on disk, and what archiving would keep."""
    from sqlalchemy import func, select

    from haggler.store.archive import protected_from, store_bytes
    from haggler.store.tables import NegotiationRow

    needs = _needs()
    with store_sessions()() as session:
        held = session.scalar(select(func.count()).select_from(NegotiationRow)) or 0
        size = store_bytes(session=session)
        protection = protected_from(needs, session=session)
    click.echo(f"Negotiations in the store: {held:,}")
    if size is not None:
        per = f", {size / held:,.0f} bytes per negotiation" if held else ""
        click.echo(f"Store size: {size / 1e6:,.1f} MB{per}")
    click.echo(
        f"Archiving keeps every negotiation from {protection.from_id} on ({protection.reason})."
    )
