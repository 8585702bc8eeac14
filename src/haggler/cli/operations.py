"""The operator's commands: `haggler checkpoints` (list, restore), `evaluate-candidate` (judge a
model as the promotion gate would) and `ab-test` (list, start, promote, reject), the last two on
the store at DATABASE_URL."""

from __future__ import annotations

import json
from typing import Any, Literal

import click

from haggler.cli.common import load_agent, load_settings, store_sessions
from haggler.store import base as store


@click.group()
def checkpoints() -> None:
    """List checkpoints or restore one as the main model."""


@checkpoints.command("list")
def checkpoints_list() -> None:
    """The checkpoints in CHECKPOINT_DIR, oldest first."""
    from haggler.learning.checkpoints import list_checkpoints

    settings = load_settings()
    found = list_checkpoints(settings.checkpoint_dir)
    if not found:
        click.echo(f"No checkpoints in {settings.checkpoint_dir}.")
        return
    click.echo(f"{'checkpoint':48s} {'negotiations':>12s}  {'saved (UTC)':19s} {'size':>8s}")
    for info in found:
        saved = info.saved_at.strftime("%Y-%m-%d %H:%M:%S")
        click.echo(
            f"{info.path.name:48s} {info.negotiations:12d}  {saved:19s} "
            f"{info.size_bytes / 1024:6.0f} KB"
        )


@checkpoints.command("restore")
@click.argument("path")
def checkpoints_restore(path: str) -> None:
    """Make the checkpoint PATH (inside CHECKPOINT_DIR) serve, as the API's restore does: a new
    model version in the store at DATABASE_URL, which every running service on it serves within
    a second (and the learner learns on from); the main model file at MODEL_PATH is replaced too.
    """
    from haggler.files import atomic_write
    from haggler.learning.checkpoints import resolve_checkpoint
    from haggler.learning.checkpoints import restore as restore_checkpoint

    settings = load_settings()
    source = resolve_checkpoint(settings.checkpoint_dir, path)
    published = restore_checkpoint(source, settings.checkpoint_dir, store_sessions())
    atomic_write(settings.model_path, source.read_bytes())
    click.echo(
        f"Restored {source.name} as model version {published.version} (a running service on "
        f"this store serves it within a second) and as {settings.model_path}."
    )


@click.command("evaluate-candidate")
@click.argument("version", type=click.IntRange(min=1), required=False)
@click.option(
    "--checkpoint",
    "checkpoint",
    default=None,
    help="Judge this checkpoint file (inside CHECKPOINT_DIR) instead of a stored version.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def evaluate_candidate(version: int | None, checkpoint: str | None, as_json: bool) -> None:
    """Judge model VERSION from the store (or a --checkpoint) as the promotion gate would,
    against the serving model: off-policy estimates on the newest logged negotiations and both
    models on the held-out simulated suite. Changes nothing."""
    import dataclasses

    from haggler.learning.checkpoints import resolve_checkpoint
    from haggler.policy.snapshot import PolicySnapshot
    from haggler.safety import candidates

    if (version is None) == (checkpoint is None):
        raise click.UsageError("give a model VERSION or --checkpoint PATH, not both")
    settings = load_settings()
    candidate: int | PolicySnapshot
    if version is not None:
        candidate = version
    else:
        assert checkpoint is not None  # one of the two, as checked above
        path = resolve_checkpoint(settings.checkpoint_dir, checkpoint)
        candidate = dataclasses.replace(load_agent(path).snapshot, version=0)
    try:
        judged = candidates.judge_against_serving(
            store_sessions(), candidate, candidates.gate_config(settings)
        )
    except candidates.NoChampion:
        raise click.ClickException("no model serves yet: start the service once") from None
    except candidates.NoWeights:
        raise click.ClickException(f"model version {version} has no weights left") from None
    except store.NotFound as error:
        raise click.ClickException(str(error)) from None
    decision = judged.decision
    if as_json:
        click.echo(
            json.dumps(
                {
                    "candidate": version or checkpoint,
                    "champion_version": judged.champion.version,
                    "passed": decision.passed,
                    "reason": decision.reason,
                    "figures": decision.figures,
                },
                indent=2,
            )
        )
        return
    name = f"version {version}" if version is not None else checkpoint
    verdict = "PASSES" if decision.passed else "FAILS"
    click.echo(
        f"Candidate {name} against serving version {judged.champion.version}: {verdict} the gate"
    )
    click.echo(f"  {decision.reason}")
    click.echo(json.dumps(decision.figures, indent=2))


@click.group("ab-test")
def ab_test() -> None:
    """A/B tests of a challenger against the serving model, on the store at DATABASE_URL."""


@ab_test.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
def ab_test_list(limit: int) -> None:
    """The newest A/B tests with their last per-arm figures."""
    from haggler.store import experiments

    with store_sessions()() as session:
        tests = experiments.ab_tests(session=session, limit=limit)
    if not tests:
        click.echo("No A/B tests yet.")
        return
    for test in tests:
        click.echo(
            f"test {test.id}: challenger v{test.challenger_version} against champion "
            f"v{test.champion_version} on {100 * test.split:.0f}%: {test.status}"
            + (f" ({test.decided_by}: {test.reason})" if test.reason else "")
        )
        for arm in ("champion", "challenger"):
            figures = (test.verdict or {}).get(arm)
            if figures:
                click.echo(f"  {arm:10s} {_arm_line(figures)}")


def _arm_line(figures: dict[str, Any]) -> str:
    def estimate(name: str, scale: float = 1.0) -> str:
        e = figures.get(name) or {}
        if e.get("mean") is None:
            return f"{name} -"
        low, high = e.get("ci_low"), e.get("ci_high")
        interval = ""
        if low is not None and high is not None:
            interval = f" [{scale * low:.3f}, {scale * high:.3f}]"
        return f"{name} {scale * e['mean']:.3f}{interval}"

    return f"n={figures.get('negotiations', 0)}  " + "  ".join(
        estimate(name) for name in ("deal_rate", "reward", "surplus")
    )


@ab_test.command("start")
@click.argument("version", type=click.IntRange(min=1))
@click.option(
    "--split",
    type=click.FloatRange(0.05, 0.95),
    default=0.2,
    show_default=True,
    help="The challenger's share of new negotiations.",
)
def ab_test_start(version: int, split: float) -> None:
    """Test stored model VERSION against the serving one."""
    from haggler.safety import candidates
    from haggler.store import counters

    with store_sessions()() as session:
        training = counters.get_counter(counters.TRAINING_ENABLED, session=session)
        if load_settings().promotion == "immediate" and training:
            raise click.ClickException(candidates.NO_AB_TEST_WHILE_IMMEDIATE)
        try:
            test = candidates.start_ab_test(version, split, session=session)
        except candidates.NoWeights:
            raise click.ClickException(f"model version {version} has no weights left") from None
        except (store.NotFound, store.Conflict) as error:
            raise click.ClickException(str(error)) from None
        session.commit()
    click.echo(
        f"A/B test {test.id}: version {version} against {test.champion_version} "
        f"on {100 * split:.0f}%."
    )


@ab_test.command("promote")
@click.argument("test_id", type=click.IntRange(min=1))
@click.option("--reason", default="the operator's decision", show_default=True)
def ab_test_promote(test_id: int, reason: str) -> None:
    """End running test TEST_ID by promoting its challenger."""
    _decide(test_id, "promote", reason)


@ab_test.command("reject")
@click.argument("test_id", type=click.IntRange(min=1))
@click.option("--reason", default="the operator's decision", show_default=True)
def ab_test_reject(test_id: int, reason: str) -> None:
    """End running test TEST_ID by rejecting its challenger (the champion serves on)."""
    _decide(test_id, "reject", reason)


def _decide(test_id: int, decision: Literal["promote", "reject"], reason: str) -> None:
    from haggler.safety import ab_decisions

    try:
        ended = ab_decisions.decide_ab_test(
            store_sessions(),
            test_id,
            decision,
            decided_by="operator",
            reason=reason,
            settings=load_settings(),
        )
    except (store.NotFound, store.Conflict) as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"A/B test {ended.id}: challenger v{ended.challenger_version} {ended.status}; "
        f"the service follows within a second."
    )
