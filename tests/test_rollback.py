"""The automatic rollback monitor: when it alarms, what it says, how often it alarms for nothing."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from haggler.core.scenarios import scenario_suite
from haggler.core.sellers import TRAINING_STRATEGIES
from haggler.policy.baselines import BASELINES
from haggler.safety.ab_simulation import outcomes_of
from haggler.safety.ab_testing import ArmOutcome
from haggler.safety.rollback import (
    MonitorConfig,
    _first_alarm,
    _p_values,
    _window,
    check,
    detection_simulation,
    format_detection,
)

LINEAR = next(b for b in BASELINES if b.name == "linear")
CONFIG = MonitorConfig()


@pytest.fixture(scope="module")
def pool() -> list[ArmOutcome]:
    """Outcomes of one model (the linear baseline) on simulated sellers."""
    return outcomes_of(LINEAR, scenario_suite(1500, 8, TRAINING_STRATEGIES))


def lower_reward(outcomes: list[ArmOutcome], by: float) -> list[ArmOutcome]:
    return [replace(o, reward=o.reward - by) for o in outcomes]


def fewer_deals(outcomes: list[ArmOutcome], every: int) -> list[ArmOutcome]:
    """Every `every`-th deal lost, the rewards left as they were: only the deal rate moves."""
    return [
        replace(o, deal=False, savings_pct=None) if o.deal and i % every == 0 else o
        for i, o in enumerate(outcomes)
    ]


def test_no_alarm_on_identical_data(pool: list[ArmOutcome]) -> None:
    assert check(pool[:200], pool[:200], CONFIG) is None
    assert check(pool[:1000], pool[:1000], CONFIG) is None


def test_no_alarm_on_the_same_model(pool: list[ArmOutcome]) -> None:
    baseline = pool[:1000]
    for start in range(1000, 1500, 50):
        assert check(pool[start : start + 200], baseline, CONFIG) is None


def test_an_alarm_on_a_drop_in_reward(pool: list[ArmOutcome]) -> None:
    alarm = check(lower_reward(pool[1000:1200], 0.1), pool[:1000], CONFIG)
    assert alarm is not None
    assert alarm.figure == "reward"
    assert alarm.current == pytest.approx(alarm.baseline - 0.1, abs=0.03)
    assert alarm.p_value < CONFIG.alpha / 2
    assert alarm.negotiations == 200
    assert alarm.reason.startswith("Average reward fell to")
    assert f"{alarm.current:.3f}" in alarm.reason and f"{alarm.baseline:.3f}" in alarm.reason
    assert "Welch" in alarm.reason and "p = " in alarm.reason
    json.dumps(alarm.as_dict(), allow_nan=False)


def test_an_alarm_on_a_drop_in_deal_rate(pool: list[ArmOutcome]) -> None:
    current = fewer_deals(pool[1000:1200], every=2)
    alarm = check(current, pool[:1000], CONFIG)
    assert alarm is not None
    assert alarm.figure == "deal_rate"
    # Every other deal of the window lost: its deal rate halves (from ~45% to ~25% here).
    assert alarm.current == pytest.approx(np.mean([o.deal for o in current]))
    assert alarm.baseline == pytest.approx(np.mean([o.deal for o in pool[:1000]]))
    assert alarm.current < 0.6 * np.mean([o.deal for o in pool[1000:1200]])
    assert alarm.current < alarm.baseline - 0.15
    assert alarm.reason.startswith("Deal rate fell to")
    assert f"{alarm.current:.1%}" in alarm.reason and f"{alarm.baseline:.1%}" in alarm.reason
    assert "Fisher" in alarm.reason and "p = " in alarm.reason


def test_no_alarm_before_min_negotiations(pool: list[ArmOutcome]) -> None:
    awful = lower_reward(pool[1000:1200], 0.5)
    assert check(awful[: CONFIG.min_negotiations - 1], pool[:1000], CONFIG) is None
    assert check(awful[: CONFIG.min_negotiations], pool[:1000], CONFIG) is not None
    assert check(awful, pool[: CONFIG.min_negotiations - 1], CONFIG) is None  # no reference yet


def test_only_the_latest_window_counts(pool: list[ArmOutcome]) -> None:
    history = lower_reward(pool[1000:1300], 0.5) + pool[1300:1500]
    assert check(history, pool[:1000], CONFIG) is None
    assert check(history[:-100], pool[:1000], CONFIG) is not None


def test_p_values_are_scipys_tests(pool: list[ArmOutcome]) -> None:
    """The p-values are Welch's t-test and Fisher's exact test, one-sided, as scipy has them."""
    baseline = pool[:1000]
    for current in (pool[1000:1200], lower_reward(fewer_deals(pool[1200:1300], every=4), 0.03)):
        p_reward, p_deal = _p_values(_window(current), _window(baseline))
        welch = stats.ttest_ind(
            [o.reward for o in current],
            [o.reward for o in baseline],
            equal_var=False,
            alternative="less",
        )
        deals, base_deals = sum(o.deal for o in current), sum(o.deal for o in baseline)
        table = [[deals, len(current) - deals], [base_deals, len(baseline) - base_deals]]
        fisher = stats.fisher_exact(table, alternative="less")
        assert float(p_reward[0]) == pytest.approx(welch.pvalue, rel=1e-9)
        assert float(p_deal[0]) == pytest.approx(fisher.pvalue, rel=1e-9)


def test_the_vectorised_monitor_alarms_where_check_does(pool: list[ArmOutcome]) -> None:
    """The simulation's fast path alarms at the very negotiation a check after each would."""
    config = MonitorConfig(window=100, min_negotiations=30, alpha=0.01)
    baseline = pool[:600]
    for current in (lower_reward(pool[600:900], 0.04), fewer_deals(pool[900:1200], every=3)):
        first = _first_alarm(
            np.array([o.reward for o in current]),
            np.array([o.deal for o in current], dtype=float),
            np.array([o.reward for o in baseline]),
            np.array([o.deal for o in baseline], dtype=float),
            config,
        )
        assert first is not None
        n, figure = first
        alarms = [check(current[:t], baseline, config) for t in range(1, n + 1)]
        assert all(alarm is None for alarm in alarms[:-1])
        last = alarms[-1]
        assert last is not None and last.figure == figure


def test_a_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="min_negotiations"):
        MonitorConfig(window=50, min_negotiations=100)
    with pytest.raises(ValueError, match="alpha"):
        MonitorConfig(alpha=1.5)


def test_detection_simulation(pool: list[ArmOutcome]) -> None:
    report = detection_simulation(
        pool,
        CONFIG,
        rng=np.random.default_rng(30),
        trials=40,
        horizon=1000,
        reward_drops=(0.1,),
        deal_rate_drops=(0.2,),
    )
    assert report.unchanged.alarmed.mean <= 0.05
    reward, deals = report.degraded
    assert reward.alarmed.mean == 1.0 and reward.median_delay <= 100
    assert reward.reward_alarms == 1.0
    assert deals.alarmed.mean >= 0.9
    assert deals.median_delay > reward.median_delay
    text = format_detection(report)
    assert "False-alarm rate" in text and "deal rate -20%" in text
    json.dumps(report.as_dict(), allow_nan=False)
