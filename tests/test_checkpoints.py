"""Checkpoint names, retention, listing and safe restore paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from haggler.config import DQNConfig
from haggler.learning.checkpoints import (
    CheckpointError,
    checkpoint_name,
    list_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)
from haggler.learning.dqn import BuyerAgent

START = datetime(2023, 12, 25, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def agent(tiny_config: DQNConfig) -> BuyerAgent:
    return BuyerAgent(tiny_config)


def test_the_name_carries_the_negotiation_count_and_the_time() -> None:
    assert checkpoint_name(10, START) == "buyer_agent_n10_20231225_120000.pth"


def test_saving_writes_the_checkpoint_and_the_main_model(agent: BuyerAgent, tmp_path: Path) -> None:
    main = tmp_path / "models" / "buyer_agent.pth"
    path = save_checkpoint(
        agent,
        tmp_path / "models" / "checkpoints",
        negotiations=10,
        keep=3,
        main_path=main,
        now=START,
    )
    assert path.name == "buyer_agent_n10_20231225_120000.pth"
    assert BuyerAgent.from_file(path).metadata["negotiations"] == 10
    assert BuyerAgent.from_file(main).metadata["negotiations"] == 10


def test_only_the_newest_checkpoints_are_kept(agent: BuyerAgent, tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    for i in range(1, 6):
        save_checkpoint(
            agent, folder, negotiations=10 * i, keep=2, now=START + timedelta(seconds=i)
        )
    kept = list_checkpoints(folder)
    assert [info.negotiations for info in kept] == [40, 50]
    assert sorted(p.name for p in folder.iterdir()) == [info.path.name for info in kept]


def test_listing_ignores_other_files_and_a_missing_folder(
    agent: BuyerAgent, tmp_path: Path
) -> None:
    assert list_checkpoints(tmp_path / "nowhere") == []
    folder = tmp_path / "checkpoints"
    save_checkpoint(agent, folder, negotiations=20, keep=5, now=START)
    (folder / "notes.txt").write_text("not a checkpoint")
    (folder / "buyer_agent_nX_bad.pth").write_text("not a checkpoint either")
    [info] = list_checkpoints(folder)
    assert info.negotiations == 20
    assert info.saved_at == START
    assert info.size_bytes > 0


def test_a_folder_that_is_a_file_is_a_clear_error(agent: BuyerAgent, tmp_path: Path) -> None:
    blocker = tmp_path / "checkpoints"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(CheckpointError, match="cannot write checkpoint to"):
        save_checkpoint(agent, blocker, negotiations=10, keep=2, now=START)
    assert blocker.read_text() == "a file where the folder should be"


def test_restore_paths_resolve_inside_the_folder_only(agent: BuyerAgent, tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    path = save_checkpoint(agent, folder, negotiations=10, keep=2, now=START)
    assert resolve_checkpoint(folder, path.name) == path.resolve()
    assert resolve_checkpoint(folder, path) == path.resolve()
    outside = tmp_path / "elsewhere.pth"
    agent.save_model(outside)
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        resolve_checkpoint(folder, outside)
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        resolve_checkpoint(folder, "../elsewhere.pth")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_checkpoint(folder, "buyer_agent_n99_20231225_120000.pth")


def test_a_link_out_of_the_folder_is_neither_listed_nor_restored(
    agent: BuyerAgent, tmp_path: Path
) -> None:
    folder = tmp_path / "checkpoints"
    kept = save_checkpoint(agent, folder, negotiations=10, keep=5, now=START)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = agent.save_model(elsewhere / "buyer_agent_n20_20231225_130000.pth")
    # A file link and a folder link, each named like a checkpoint of the folder.
    (folder / "buyer_agent_n20_20231225_130000.pth").symlink_to(outside)
    (folder / "more").symlink_to(elsewhere, target_is_directory=True)

    assert [info.path for info in list_checkpoints(folder)] == [kept]
    for name in (
        "buyer_agent_n20_20231225_130000.pth",
        folder / "buyer_agent_n20_20231225_130000.pth",
        "more/buyer_agent_n20_20231225_130000.pth",
    ):
        with pytest.raises(CheckpointError, match="no checkpoint") as refused:
            resolve_checkpoint(folder, name)
        assert "outside" not in str(refused.value)  # the same answer as for a name never saved
    # A link that stays inside the folder is as good as its target.
    (folder / "buyer_agent_n30_20231225_140000.pth").symlink_to(kept)
    assert resolve_checkpoint(folder, "buyer_agent_n30_20231225_140000.pth") == kept.resolve()


def test_a_file_that_is_not_a_checkpoint_cannot_be_restored(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "buyer_agent_n10_20231225_120000.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable model file"):
        resolve_checkpoint(folder, "buyer_agent_n10_20231225_120000.pth")


def test_retention_keeps_the_newest_even_when_the_count_starts_again(
    agent: BuyerAgent, tmp_path: Path
) -> None:
    folder = tmp_path / "checkpoints"
    for i, n in enumerate((80, 90, 100, 10, 20)):  # a new store counts from zero again
        save_checkpoint(agent, folder, negotiations=n, keep=3, now=START + timedelta(minutes=i))
    assert [info.negotiations for info in list_checkpoints(folder)] == [100, 10, 20]
