"""What the commands share: the settings, a model file, the store, a path to write to."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from haggler.config import Settings

if TYPE_CHECKING:  # heavy imports (torch, SQLAlchemy) happen inside the helpers that need them
    from sqlalchemy.orm import Session, sessionmaker

    from haggler.learning.dqn import BuyerAgent


def load_settings() -> Settings:
    """The settings from the environment (and `.env`); a bad one is a one-line error."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(str(part) for part in first["loc"]).upper()
        raise click.ClickException(f"setting {name}: {first['msg']}") from None


def load_agent(path: Path) -> BuyerAgent:
    import torch

    from haggler.learning.dqn import BuyerAgent

    torch.set_num_threads(1)
    return BuyerAgent.from_file(path)


def check_writable(path: Path, what: str = "the model") -> None:
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


def store_sessions() -> sessionmaker[Session]:
    """Sessions on the store at DATABASE_URL (migrated), for the operator's commands."""
    from haggler.store.database import make_engine, migrate, session_factory

    engine = make_engine(load_settings().database_url)
    migrate(engine)
    return session_factory(engine)
