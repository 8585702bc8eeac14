"""Held-out evaluation: metrics with 95% confidence intervals, the type oracle, paired tests.

All buyers play the very same scenarios, so differences are paired per scenario. Surplus and
agreement rate are measured on feasible scenarios only (the seller's floor within the buyer's
limit): on the others no buyer can do anything.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from haggler.core.negotiation import RewardConfig, episode_return, result
from haggler.core.play import Buyer
from haggler.core.scenarios import (
    EVALUATION_STREAM,
    Played,
    Scenario,
    play,
    scenario_rng,
    scenario_suite,
)
from haggler.core.sellers import HELD_OUT_STRATEGIES, TRAINING_STRATEGIES

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    mean: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float | None]:
        """JSON-ready: an undefined figure (no data) is None, not NaN, which JSON does not have."""
        return {
            key: None if math.isnan(value) else value
            for key, value in (
                ("mean", self.mean),
                ("ci_low", self.ci_low),
                ("ci_high", self.ci_high),
            )
        }

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}]"


def mean_ci(values: Sequence[float] | np.ndarray) -> Estimate:
    """Mean with a Student-t confidence interval."""
    array = np.asarray(values, dtype=float)
    if len(array) == 0:
        return Estimate(math.nan, math.nan, math.nan)
    mean = float(array.mean())
    if len(array) < 2:  # one value says nothing about the spread
        return Estimate(mean, math.nan, math.nan)
    if float(array.std()) == 0.0:
        return Estimate(mean, mean, mean)
    half = float(stats.sem(array) * stats.t.ppf((1 + CONFIDENCE) / 2, len(array) - 1))
    return Estimate(mean, mean - half, mean + half)


def mean_ci_of_moments(count: int, total: float, squares: float) -> Estimate:
    """`mean_ci` of values known only by their count, sum and sum of squares (the store's
    totals, kept as negotiations finish): the same Student-t interval."""
    if count == 0:
        return Estimate(math.nan, math.nan, math.nan)
    mean = total / count
    if count < 2:
        return Estimate(mean, math.nan, math.nan)
    variance = (squares - count * mean * mean) / (count - 1)
    # Sums of squares cancel to a rounding error, not to 0, when every value is the same.
    if variance <= 1e-12 * max(1.0, mean * mean):
        return Estimate(mean, mean, mean)
    half = math.sqrt(variance / count) * float(stats.t.ppf((1 + CONFIDENCE) / 2, count - 1))
    return Estimate(mean, mean - half, mean + half)


def proportion_ci(successes: int, trials: int) -> Estimate:
    """Share with a Wilson score interval (sound near 0 and 1, unlike the normal one)."""
    if trials == 0:
        return Estimate(math.nan, math.nan, math.nan)
    interval = stats.binomtest(successes, trials).proportion_ci(CONFIDENCE, method="wilson")
    return Estimate(successes / trials, float(interval.low), float(interval.high))


@dataclass(frozen=True)
class BuyerReport:
    name: str
    negotiations: int
    feasible: int
    normalised_surplus: Estimate
    agreement_rate_feasible: Estimate
    savings_pct: Estimate
    """Saving against list price, percent, over the negotiations that ended in a deal."""
    rounds: Estimate
    reward: Estimate

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "negotiations": self.negotiations,
            "feasible": self.feasible,
            "normalised_surplus": self.normalised_surplus.as_dict(),
            "agreement_rate_feasible": self.agreement_rate_feasible.as_dict(),
            "savings_pct": self.savings_pct.as_dict(),
            "rounds": self.rounds.as_dict(),
            "reward": self.reward.as_dict(),
        }


def summarise(
    name: str, played: Sequence[Played], reward_config: RewardConfig | None = None
) -> BuyerReport:
    reward_config = reward_config or RewardConfig()
    feasible = [p for p in played if p.feasible]
    deals = [p for p in played if p.state.deal_price is not None]
    return BuyerReport(
        name=name,
        negotiations=len(played),
        feasible=len(feasible),
        normalised_surplus=mean_ci([p.normalised_surplus for p in feasible]),
        agreement_rate_feasible=proportion_ci(
            sum(p.state.deal_price is not None for p in feasible), len(feasible)
        ),
        savings_pct=mean_ci([result(p.state).savings_pct for p in deals]),
        rounds=mean_ci([p.state.buyer_moves for p in played]),
        reward=mean_ci([episode_return(p.state, reward_config) for p in played]),
    )


@dataclass(frozen=True)
class PairedTest:
    """Mean per-scenario surplus difference (a - b) on feasible scenarios, paired t-test."""

    a: str
    b: str
    surplus_diff: Estimate
    p_value: float
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "surplus_diff": self.surplus_diff.as_dict(),
            "p_value": self.p_value,
            "n": self.n,
        }

    def __str__(self) -> str:
        return (
            f"{self.a} - {self.b}: surplus {self.surplus_diff.mean:+.3f} "
            f"[{self.surplus_diff.ci_low:+.3f}, {self.surplus_diff.ci_high:+.3f}], "
            f"paired t-test p = {self.p_value:.2g}, n = {self.n}"
        )


def paired_test(
    a: str, a_played: Sequence[Played], b: str, b_played: Sequence[Played]
) -> PairedTest:
    diffs = np.array(
        [
            x.normalised_surplus - y.normalised_surplus
            for x, y in zip(a_played, b_played, strict=True)
            if x.feasible
        ]
    )
    if len(diffs) < 2:
        p_value = math.nan  # no test on fewer than two negotiations
    elif float(diffs.std()) == 0.0:
        p_value = 1.0 if float(diffs.mean()) == 0.0 else 0.0
    else:
        p_value = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return PairedTest(a, b, mean_ci(diffs), p_value, len(diffs))


@dataclass(frozen=True)
class Evaluation:
    """Everything `haggler evaluate` reports for one suite."""

    strategies: tuple[str, ...]
    reports: dict[str, BuyerReport]
    """Overall, per buyer (agent first, then baselines, then the type oracle)."""
    per_strategy: dict[str, dict[str, BuyerReport]]
    best_baseline: str
    oracle_choice: dict[str, str]
    """Per seller strategy, the baseline the type oracle uses."""
    agent_vs_best_baseline: PairedTest
    agent_vs_type_oracle: PairedTest

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategies": list(self.strategies),
            "agent": self.reports["agent"].as_dict(),
            "best_baseline": self.reports[self.best_baseline].as_dict(),
            "type_oracle": self.reports["type_oracle"].as_dict(),
            "oracle_choice": self.oracle_choice,
            "baselines": {
                name: report.as_dict()
                for name, report in self.reports.items()
                if name not in ("agent", "type_oracle")
            },
            "per_strategy": {
                strategy: {name: report.as_dict() for name, report in reports.items()}
                for strategy, reports in self.per_strategy.items()
            },
            "paired_test": self.agent_vs_best_baseline.as_dict(),
            "paired_test_type_oracle": self.agent_vs_type_oracle.as_dict(),
        }


def evaluation_suites(
    episodes: int, seed: int, strategies: Sequence[str] = (), max_rounds: int | None = None
) -> dict[str, list[Scenario]]:
    """The suites `haggler evaluate` plays, from the evaluation stream (never trained on):
    "main" against `strategies` (default: every trained one) and, without `strategies`,
    "held_out" against the family kept out of training."""
    suite_seed = int(scenario_rng(EVALUATION_STREAM, seed).integers(2**63))
    main = scenario_suite(episodes, suite_seed, strategies or TRAINING_STRATEGIES, max_rounds)
    suites = {"main": main}
    if not strategies:
        suites["held_out"] = scenario_suite(
            episodes, suite_seed + 1, HELD_OUT_STRATEGIES, max_rounds
        )
    return suites


def evaluate(agent: Buyer, baselines: Sequence[Buyer], suite: Sequence[Scenario]) -> Evaluation:
    """Play the agent and every baseline on `suite` and compare them."""
    if not suite:
        raise ValueError("the evaluation suite is empty")
    if not baselines:
        raise ValueError("the evaluation needs at least one baseline")
    played = {
        buyer.name: [play(scenario, buyer) for scenario in suite] for buyer in (agent, *baselines)
    }
    baseline_names = [buyer.name for buyer in baselines]
    strategies = tuple(dict.fromkeys(scenario.strategy for scenario in suite))

    def surplus(name: str, strategy: str | None = None) -> float:
        values = [
            p.normalised_surplus
            for p in played[name]
            if p.feasible and (strategy is None or p.scenario.strategy == strategy)
        ]
        return float(np.mean(values)) if values else 0.0

    best_baseline = max(baseline_names, key=surplus)
    oracle_choice = {s: max(baseline_names, key=lambda name: surplus(name, s)) for s in strategies}
    played["type_oracle"] = [
        played[oracle_choice[scenario.strategy]][i] for i, scenario in enumerate(suite)
    ]

    reports = {name: summarise(name, runs) for name, runs in played.items()}
    per_strategy = {
        strategy: {
            name: summarise(name, [p for p in runs if p.scenario.strategy == strategy])
            for name, runs in played.items()
        }
        for strategy in strategies
    }
    return Evaluation(
        strategies=strategies,
        reports=reports,
        per_strategy=per_strategy,
        best_baseline=best_baseline,
        oracle_choice=oracle_choice,
        agent_vs_best_baseline=paired_test(
            agent.name, played[agent.name], best_baseline, played[best_baseline]
        ),
        agent_vs_type_oracle=paired_test(
            agent.name, played[agent.name], "type_oracle", played["type_oracle"]
        ),
    )


def across_models(evaluations: Sequence[Evaluation]) -> dict[str, dict[str, float]]:
    """The headline figures of several models evaluated on the same suite (several training
    seeds, say): their mean and standard deviation over the models."""
    figures = {
        "agent surplus": [e.reports["agent"].normalised_surplus.mean for e in evaluations],
        "agent agreement": [e.reports["agent"].agreement_rate_feasible.mean for e in evaluations],
        "best baseline surplus": [
            e.reports[e.best_baseline].normalised_surplus.mean for e in evaluations
        ],
        "type oracle surplus": [
            e.reports["type_oracle"].normalised_surplus.mean for e in evaluations
        ],
        "agent - best baseline": [e.agent_vs_best_baseline.surplus_diff.mean for e in evaluations],
        "agent - type oracle": [e.agent_vs_type_oracle.surplus_diff.mean for e in evaluations],
        "agreement: agent - best baseline": [
            e.reports["agent"].agreement_rate_feasible.mean
            - e.reports[e.best_baseline].agreement_rate_feasible.mean
            for e in evaluations
        ],
    }
    return {
        key: {
            "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
        for key, values in figures.items()
    }


def format_evaluation(evaluation: Evaluation, title: str) -> str:
    """A plain-text report: overall table, per-strategy surplus, the paired tests."""
    lines = [title, ""]
    header = (
        f"{'buyer':18s} {'surplus [95% CI]':24s} {'agreement [95% CI]':24s} "
        f"{'savings %':>10s} {'rounds':>7s} {'reward':>8s}"
    )
    lines.append(header)
    for name, report in evaluation.reports.items():
        marker = " (best baseline)" if name == evaluation.best_baseline else ""
        lines.append(
            f"{name:18s} {report.normalised_surplus!s:24s} "
            f"{report.agreement_rate_feasible!s:24s} {report.savings_pct.mean:10.1f} "
            f"{report.rounds.mean:7.2f} {report.reward.mean:8.4f}{marker}"
        )
    lines += [
        "",
        "Mean normalised surplus per seller strategy (feasible only; * = the type oracle's pick):",
    ]
    names = list(evaluation.reports)
    names.remove("type_oracle")
    lines.append(f"{'strategy':20s} {'n':>5s} " + " ".join(f"{name[:11]:>12s}" for name in names))
    for strategy, reports in evaluation.per_strategy.items():
        cells = []
        for name in names:
            star = "*" if evaluation.oracle_choice[strategy] == name else " "
            cells.append(f"{reports[name].normalised_surplus.mean:11.3f}{star}")
        lines.append(f"{strategy:20s} {reports['agent'].feasible:5d} " + " ".join(cells))
    lines += ["", str(evaluation.agent_vs_best_baseline), str(evaluation.agent_vs_type_oracle)]
    return "\n".join(lines)
