"""The operator's commands for safe learning, on a store: judge a candidate, run A/B tests, and
the simulations behind the stopping rule and the rollback monitor."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from haggler.config import DQNConfig
from haggler.learning.dqn import BuyerAgent
from haggler.store import snapshots as snapshot_store
from haggler.store import versions
from haggler.store.database import make_engine, migrate, session_factory
from test_cli import assert_one_line_error, invoke, isolated, run_main  # noqa: F401


@pytest.fixture
def store(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    """A store with two model versions: 1 serves, 2 is a stored other model."""
    model = BuyerAgent(DQNConfig(hidden_sizes=(32,), seed=0))
    model.model_version = 1
    model_path = model.save_model(isolated / "models" / "buyer_agent.pth")
    url = f"sqlite:///{isolated / 'data' / 'haggler.db'}"
    monkeypatch.setenv("MODEL_PATH", str(model_path))
    monkeypatch.setenv("DATABASE_URL", url)
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    versions.ensure_serving(sessions, lambda: model.snapshot)
    other = BuyerAgent(DQNConfig(hidden_sizes=(32,), seed=1))
    with sessions() as session:
        snapshot_store.publish_snapshot(
            dataclasses.replace(other.snapshot, version=2).to_bytes(),
            session=session,
            version=2,
            expected_serving=1,
            source="training",
            negotiations=0,
        )
        snapshot_store.swap_serving(1, expected_serving=2, session=session)  # 1 serves again
        session.commit()
    engine.dispose()
    return model_path


def test_a_stored_version_is_judged_against_the_serving_one(store: Path) -> None:
    result = invoke("evaluate-candidate", "2", "--json")
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["candidate"] == 2 and verdict["champion_version"] == 1
    assert isinstance(verdict["passed"], bool) and verdict["reason"]
    text = invoke("evaluate-candidate", "1").stdout
    assert "Candidate version 1 against serving version 1: PASSES the gate" in text


def test_an_operator_runs_an_ab_test_from_the_command_line(store: Path) -> None:
    assert invoke("ab-test", "list").stdout.strip() == "No A/B tests yet."
    started = invoke("ab-test", "start", "2", "--split", "0.3")
    assert started.exit_code == 0, started.output
    assert "A/B test 1: version 2 against 1 on 30%." in started.stdout
    assert (
        "test 1: challenger v2 against champion v1 on 30%: running"
        in invoke("ab-test", "list").stdout
    )
    rejected = invoke("ab-test", "reject", "1", "--reason", "not now")
    assert "challenger v2 rejected" in rejected.stdout
    assert "rejected (operator: not now)" in invoke("ab-test", "list").stdout


def test_no_ab_test_starts_while_training_promotes_every_update(
    store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from haggler.store import counters

    engine = make_engine(os.environ["DATABASE_URL"])
    with session_factory(engine)() as session:  # training switched on, as a running service does
        counters.set_counter(counters.TRAINING_ENABLED, 1, session=session)
        session.commit()
    engine.dispose()
    monkeypatch.setenv("PROMOTION", "immediate")
    code, out, err = run_main(["ab-test", "start", "2"], monkeypatch, capsys)
    assert_one_line_error(code, out, err, "PROMOTION=gated")
    assert invoke("ab-test", "list").stdout.strip() == "No A/B tests yet."
    monkeypatch.setenv("PROMOTION", "gated")
    assert invoke("ab-test", "start", "2").exit_code == 0


BAD_INPUT = {
    "neither version nor checkpoint": (["evaluate-candidate"], "VERSION"),
    "unknown version": (["evaluate-candidate", "9"], "no model version 9"),
    "checkpoint outside the folder": (
        ["evaluate-candidate", "--checkpoint", "/etc/passwd"],
        "checkpoint",
    ),
    "test of the serving version": (["ab-test", "start", "1"], "the one serving"),
    "unknown challenger": (["ab-test", "start", "7"], "no model version 7"),
    "split of 1": (["ab-test", "start", "2", "--split", "1"], "split"),
    "unknown test": (["ab-test", "promote", "4"], "no A/B test 4"),
    "zero trials": (["bench-ab", "--trials", "0"], "trials"),
}


@pytest.mark.parametrize(("args", "mention"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_and_changes_nothing(
    args: list[str],
    mention: str,
    store: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_main(args, monkeypatch, capsys)
    assert_one_line_error(code, out, err, mention)
    assert invoke("ab-test", "list").stdout.strip() == "No A/B tests yet."


def test_the_stopping_rule_and_the_monitor_simulations_print_their_figures(
    store: Path,
) -> None:
    ab = invoke("bench-ab", "--trials", "20", "--pool", "200")
    assert ab.exit_code == 0, ab.output
    assert "Outcome pool: 200 negotiations" in ab.stdout
    assert "A/A" in ab.stdout
    monitor = invoke("bench-rollback", "--trials", "5", "--pool", "200")
    assert monitor.exit_code == 0, monitor.output
    assert "False-alarm rate over 2000 negotiations of an unchanged model" in monitor.stdout
