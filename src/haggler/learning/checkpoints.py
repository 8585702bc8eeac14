"""Checkpoint files: names, atomic saving with retention, listing, and safe restore paths."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from haggler.files import atomic_write
from haggler.policy.snapshot import ModelFileError, PolicySnapshot
from haggler.store import base as store
from haggler.store import snapshots as snapshot_store
from haggler.store import versions

if TYPE_CHECKING:  # torch loads only where a model file is read or written
    from haggler.learning.dqn import BuyerAgent

log = logging.getLogger("haggler.models")

CHECKPOINT_PATTERN = re.compile(r"^buyer_agent_n(?P<n>\d+)_(?P<stamp>\d{8}_\d{6})\.pth$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be written, found or restored."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    negotiations: int
    saved_at: datetime
    size_bytes: int


def checkpoint_name(negotiations: int, now: datetime) -> str:
    """`buyer_agent_n{N}_{YYYYMMDD_HHMMSS}.pth`."""
    return f"buyer_agent_n{negotiations}_{now.strftime('%Y%m%d_%H%M%S')}.pth"


def list_checkpoints(directory: Path) -> list[CheckpointInfo]:
    """The checkpoints in `directory`, oldest first; an entry that resolves outside it (a link
    to a file elsewhere) is none of them."""
    if not directory.is_dir():
        return []
    root = directory.resolve()
    found = []
    for path in directory.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match is None or not path.is_file() or not path.resolve().is_relative_to(root):
            continue
        saved_at = datetime.strptime(match["stamp"], "%Y%m%d_%H%M%S").replace(tzinfo=UTC)
        stat = path.stat()
        found.append(
            (stat.st_mtime_ns, CheckpointInfo(path, int(match["n"]), saved_at, stat.st_size))
        )
    # Write order, not the count in the name: a count that starts again (a new store) must not
    # make the newest checkpoint look like the oldest.
    found.sort(key=lambda item: (item[1].saved_at, item[0], item[1].path.name))
    return [info for _, info in found]


def save_checkpoint(
    agent: BuyerAgent,
    directory: Path,
    *,
    negotiations: int,
    keep: int,
    main_path: Path | None = None,
    now: datetime | None = None,
) -> Path:
    """Write a checkpoint (and the main model file), then keep only the newest `keep`.

    Raises CheckpointError, with the folder in the message, when the folder cannot be written.
    """
    now = now or datetime.now(UTC)
    path = directory / checkpoint_name(negotiations, now)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        agent.save_model(path, negotiations=negotiations)
        if main_path is not None:  # the same bytes, written atomically as the main model
            atomic_write(main_path, path.read_bytes())
    except OSError as error:
        raise CheckpointError(
            f"cannot write checkpoint to {directory}: {error.strerror or error}"
        ) from None
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.path.unlink(missing_ok=True)
    return path


def resolve_checkpoint(directory: Path, requested: str | Path) -> Path:
    """The checkpoint `requested` names, if it is a haggler checkpoint inside `directory`.

    A bare file name is looked up in `directory`; any path that leads outside it is refused. A
    name in the folder that resolves outside it (a link to a file elsewhere) is not one of its
    checkpoints: refused as unknown, as `list_checkpoints` leaves it out.
    """
    requested = Path(requested)
    root = directory.resolve()
    # A relative path may be meant from the working directory or from the checkpoint folder.
    candidates = [requested] if requested.is_absolute() else [requested, directory / requested]
    inside = [c.resolve() for c in candidates if c.resolve().is_relative_to(root)]
    unknown = CheckpointError(f"no checkpoint {requested} in {directory}")
    if not inside:
        folder = os.path.abspath(directory)
        if any(Path(os.path.abspath(c)).is_relative_to(folder) for c in candidates):
            raise unknown  # named inside the folder, and links out of it
        raise CheckpointError(f"{requested} is outside the checkpoint folder {directory}")
    existing = [c for c in inside if c.is_file()]
    if not existing:
        raise unknown
    resolved = existing[0]
    from haggler.learning.dqn import read_checkpoint  # loads torch

    try:
        read_checkpoint(resolved)
    except ModelFileError as error:
        raise CheckpointError(str(error)) from None
    return resolved


def restore(
    path: Path, checkpoint_dir: Path, sessions: sessionmaker[Session], *, attempts: int = 5
) -> PolicySnapshot:
    """Make the checkpoint at `path` serve everywhere as a new version (the learner follows)."""
    from haggler.learning.dqn import BuyerAgent  # loads torch

    try:
        restored = BuyerAgent.from_file(path)
    except ModelFileError as error:
        raise CheckpointError(str(error)) from None
    name = str(path.resolve().relative_to(checkpoint_dir.resolve()))
    for _ in range(attempts):  # a learner may publish in between: then restore over its version
        with sessions() as session:
            version = snapshot_store.highest_version(session=session) + 1
            published = dataclasses.replace(restored.snapshot, version=version)
            try:
                versions.publish(
                    session,
                    published,
                    expected_serving=snapshot_store.serving_version(session=session),
                    source="restore",
                    negotiations=int(restored.metadata.get("negotiations", 0)),
                    checkpoint=name,
                )
                session.commit()
            except store.Conflict:
                session.rollback()
                continue
        log.info("[Training] Restored %s as model version %d", name, published.version)
        return published
    raise CheckpointError("the serving model kept changing; try the restore again")


def read_snapshot(path: Path) -> PolicySnapshot:
    """The weights of the model file at `path`, to act with (ModelFileError if it is not one)."""
    from haggler.learning.dqn import BuyerAgent  # loads torch

    return BuyerAgent.from_file(path).snapshot
