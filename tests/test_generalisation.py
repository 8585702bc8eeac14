"""`haggler bench-generalisation` end to end on a tiny budget: every part reports, nothing is
trained on the family it is judged on, and the figures are reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from haggler.bench.generalisation import (
    GeneralisationConfig,
    format_report,
    online_config,
    run_generalisation,
)
from haggler.cli.main import cli
from haggler.config import Settings
from haggler.core.sellers import FAMILIES
from haggler.learning.dqn import BuyerAgent
from haggler.policy.baselines import BASELINES

TINY = dict(
    seeds=(0,),
    families=("hardliner", "touchy"),
    env_steps=2_000,
    episodes=60,
    stream_negotiations=40,
    stream_families=("touchy", "deadline"),  # one held out above, one not
    measure_size=40,
    limit_episodes=100,
    starter_seeds=1,
    jobs=1,
)


@pytest.fixture(scope="module")
def report_and_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    cache = tmp_path_factory.mktemp("generalisation")
    config = GeneralisationConfig(**TINY, cache_dir=cache)  # type: ignore[arg-type]
    return run_generalisation(config, log=lambda line: None), cache


def test_each_family_is_judged_by_a_model_that_never_trained_on_it(
    report_and_cache: tuple[object, Path],
) -> None:
    report, cache = report_and_cache
    for family in ("hardliner", "touchy"):
        models = list(cache.glob(f"without_{family}_s0_*.pth"))
        assert len(models) == 1
        trained_on = BuyerAgent.from_file(models[0]).metadata["trained_on"]
        assert not set(FAMILIES[family]) & set(trained_on)
        assert set(FAMILIES["reciprocal"]) <= set(trained_on)  # the others were trained on
    as_dict = report.as_dict()  # type: ignore[attr-defined]
    assert {row["family"] for row in as_dict["families"]} == {"hardliner", "touchy"}


def test_the_report_has_every_comparison_with_intervals_and_tests(
    report_and_cache: tuple[object, Path],
) -> None:
    report, _ = report_and_cache
    figures = report.as_dict()  # type: ignore[attr-defined]
    pooled = figures["overall"]["0"]
    assert set(pooled) == {figures["best_rule"], "exponent_chosen_on_training", "type_oracle"}
    for comparison in pooled.values():
        assert comparison["n"] > 0
        assert comparison["difference"]["ci_low"] <= comparison["difference"]["mean"]
        assert 0.0 <= comparison["p_value"] <= 1.0
    assert figures["limit_inference"]["0"]["buyer"]["negotiations"] == 100
    stream, deadline_stream = figures["online_stream"]
    assert (stream["family"], deadline_stream["family"]) == ("touchy", "deadline")
    assert deadline_stream["best_rule"] in {rule.name for rule in BASELINES}
    assert stream["negotiations"] == 40
    assert "live_minus_frozen" in stream and "training_families_after_minus_before" in stream
    # The greedy model before and after the stream beside the family's best rule, on the same
    # fresh negotiations: a purchaser's question is whether learning online closes that gap.
    after, before = stream["greedy_after_minus_best_rule"], stream["greedy_before_minus_best_rule"]
    assert after["ci_low"] <= after["mean"] <= after["ci_high"]
    assert after["mean"] - before["mean"] == pytest.approx(
        stream["greedy_after_minus_before"]["mean"]
    )
    (starter,) = figures["starter_seeds"]
    assert set(starter) == {"seed", "main", "held_out"}
    json.dumps(figures, allow_nan=False)  # JSON without NaN
    text = format_report(report)  # type: ignore[arg-type]
    assert "hardliner" in text and "Online stream" in text and "Starter seed 0" in text


def test_a_second_run_reuses_the_cached_models_and_gives_the_same_figures(
    report_and_cache: tuple[object, Path],
) -> None:
    report, cache = report_and_cache
    again = run_generalisation(
        GeneralisationConfig(**TINY, cache_dir=cache),  # type: ignore[arg-type]
        log=lambda line: None,
    )
    first, second = report.as_dict(), again.as_dict()  # type: ignore[attr-defined]
    for part in ("families", "overall", "limit_inference", "starter_seeds"):
        assert first[part] == second[part]
    strip = ("seconds",)
    assert [{k: v for k, v in s.items() if k not in strip} for s in first["online_stream"]] == [
        {k: v for k, v in s.items() if k not in strip} for s in second["online_stream"]
    ]


def test_the_stream_runs_at_the_services_default_settings() -> None:
    settings = Settings(_env_file=None)
    config = online_config(settings)
    assert config.promotion == settings.promotion
    assert config.exploration.mode == settings.exploration
    assert config.learning_rate == settings.online_learning_rate
    assert config.warmup == settings.promotion_warmup
    assert config.anchor_share == settings.replay_anchor_share


@pytest.mark.parametrize("option", ["--family", "--stream-family"])
def test_the_command_refuses_an_unknown_family(option: str) -> None:
    result = CliRunner().invoke(cli, ["bench-generalisation", option, "no_such"])
    assert result.exit_code != 0
    assert "no_such" in result.output


def test_stream_family_all_streams_every_family(monkeypatch: pytest.MonkeyPatch) -> None:
    import haggler.bench.generalisation as bench

    planned: list[GeneralisationConfig] = []

    def plan_only(config: GeneralisationConfig, log: object) -> None:
        planned.append(config)
        raise SystemExit(0)  # what the command would run is all this test needs

    monkeypatch.setattr(bench, "run_generalisation", plan_only)
    result = CliRunner().invoke(
        cli, ["bench-generalisation", "--stream-family", "touchy", "--stream-family", "all"]
    )
    assert result.exit_code == 0, result.output
    (config,) = planned
    assert config.stream_families == tuple(FAMILIES)


def test_leaving_one_family_out_needs_at_least_two(tmp_path: Path) -> None:
    config = GeneralisationConfig(families=("touchy",), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="at least two families"):
        run_generalisation(config, log=lambda line: None)
    assert not any(tmp_path.iterdir())  # nothing trained
