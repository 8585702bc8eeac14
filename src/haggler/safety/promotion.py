"""The promotion gate: may a candidate model serve in place of the champion that serves now?

Three checks, each a comparison paired with the champion so that what both share (the very
same scenarios, the very same logged negotiations) cancels out of the difference:

- surplus: both models play the held-out simulated suite greedily; the lower 95% bound of the
  mean per-scenario difference in normalised surplus (candidate - champion, feasible scenarios)
  must be at least -`surplus_tolerance`. Paired, not the candidate's own bound against the
  champion's mean: that would also charge the candidate for the spread between scenarios
  (per-scenario surplus varies by ~0.3), and a candidate identical to the champion would fail it.
- deal rate: on the same feasible scenarios, the candidate's deal rate may be at most
  `max_deal_rate_drop` below the champion's (point estimate; its interval is reported).
- reward, on the logged negotiations: both models' greedy values are off-policy (WDR)
  estimates from the same logs, bootstrapped on the same resamples; the lower 95% bound of the
  difference must be at least -`reward_tolerance`. Not against the logs' own mean: the logs were
  played with exploration (and partly by older versions), whose cost would flatter any greedy
  candidate. With an effective sample size below `min_effective_sample_size` (or no logs) the
  check is inconclusive and does not decide.

The candidate passes when no check fails and at least one was conclusive. A judgement with the
defaults (400 scenarios, 500 logged negotiations, 2,000 resamples) took 0.7 s for 32x32 networks
and 1.2-1.5 s for the default 128x128 on two shared, busy cores; playing the suite is most of it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from haggler.core.scenarios import EVALUATION_STREAM, Played, Scenario, scenario_rng, scenario_suite
from haggler.core.sellers import ALL_STRATEGIES, SELLER_FACTORIES
from haggler.core.transitions import LoggedEpisode
from haggler.policy.snapshot import PolicySnapshot
from haggler.safety.evaluation import mean_ci, paired_test, summarise
from haggler.safety.logged_episodes import pad, play_logged
from haggler.safety.off_policy import compare_offline, on_policy_estimate

Status = Literal["passed", "failed", "inconclusive"]


@dataclass(frozen=True)
class GateConfig:
    """What a candidate must show before it may serve."""

    reward_tolerance: float = 0.02
    """Logged data: the lower 95% bound of the candidate's estimated reward per negotiation,
    minus the champion's (paired WDR), must be at least minus this."""
    surplus_tolerance: float = 0.02
    """Held-out suite: the lower 95% bound of the paired normalised-surplus difference must be
    at least minus this."""
    max_deal_rate_drop: float = 0.02
    """Held-out suite: the deal rate on feasible scenarios may fall by at most this share."""
    suite_episodes: int = 400
    """Scenarios in the held-out simulated suite (both models play all of them)."""
    suite_seed: int = 7_919
    """Fixes the suite; drawn from the evaluation stream, so no scenario is ever trained on."""
    strategies: tuple[str, ...] = ALL_STRATEGIES
    """Seller strategies of the suite, the held-out ones included."""
    min_effective_sample_size: float = 30.0
    """Below this effective sample size the logged-data check is inconclusive."""
    resamples: int = 2_000
    """Bootstrap resamples of the logged-data interval."""

    def __post_init__(self) -> None:
        for name in ("reward_tolerance", "surplus_tolerance", "max_deal_rate_drop"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.suite_episodes < 20:
            raise ValueError(f"suite_episodes must be at least 20, got {self.suite_episodes}")
        unknown = [s for s in self.strategies if s not in SELLER_FACTORIES]
        if not self.strategies or unknown:
            raise ValueError(f"strategies must be known seller strategies, got {self.strategies}")
        if self.min_effective_sample_size < 1.0:
            raise ValueError("min_effective_sample_size must be at least 1")
        if self.resamples < 100:
            raise ValueError(f"resamples must be at least 100, got {self.resamples}")


@dataclass(frozen=True)
class Check:
    """One check: the figure it reads, the bound it compares, the threshold it must reach."""

    name: str
    status: Status
    value: float
    """The figure: a mean difference, candidate - champion."""
    bound: float
    """What is compared with the threshold (the lower 95% bound, or the value itself)."""
    threshold: float
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "value": _json(self.value),
            "bound": _json(self.bound),
            "threshold": self.threshold,
            "note": self.note,
        }


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    """One sentence: which check failed and by how much, or that all passed."""
    figures: dict[str, Any]
    """JSON-ready: both models on the suite and the logs, every check, the configuration."""


def gate_suite(config: GateConfig) -> list[Scenario]:
    """The held-out suite: the same scenarios for every judgement with the same configuration."""
    seed = int(scenario_rng(EVALUATION_STREAM, config.suite_seed).integers(2**63))
    return scenario_suite(config.suite_episodes, seed, config.strategies)


def judge(
    candidate: PolicySnapshot,
    champion: PolicySnapshot,
    logged: Sequence[LoggedEpisode],
    config: GateConfig,
    *,
    rng: np.random.Generator,
) -> GateDecision:
    """Decide whether `candidate` may serve in place of `champion` (see the module's doc)."""
    started = time.perf_counter()
    suite = gate_suite(config)
    _, candidate_played = play_logged(suite, candidate)
    _, champion_played = play_logged(suite, champion)
    surplus, deal_rate, suite_figures = _suite_checks(candidate_played, champion_played, config)
    reward, logged_figures = _logged_check(candidate, champion, logged, config, rng)
    checks = (surplus, deal_rate, reward)

    failed = [check for check in checks if check.status == "failed"]
    conclusive = [check for check in checks if check.status != "inconclusive"]
    passed = not failed and bool(conclusive)
    if failed:
        reason = "Rejected: " + "; ".join(_describe(check) for check in failed) + "."
    elif not conclusive:
        reason = "Rejected: no check was conclusive."
    else:
        reason = "Passed: " + "; ".join(_describe(check) for check in checks) + "."
    figures = {
        "passed": passed,
        "candidate_version": candidate.version,
        "champion_version": champion.version,
        "checks": {check.name: check.as_dict() for check in checks},
        "suite": suite_figures,
        "logged": logged_figures,
        "config": dataclasses.asdict(config) | {"strategies": list(config.strategies)},
        "seconds": time.perf_counter() - started,
    }
    return GateDecision(passed, reason, figures)


def _suite_checks(
    candidate: Sequence[Played], champion: Sequence[Played], config: GateConfig
) -> tuple[Check, Check, dict[str, Any]]:
    surplus_test = paired_test("candidate", candidate, "champion", champion)
    surplus_diff = surplus_test.surplus_diff
    deal_diffs = [
        float(c.state.deal_price is not None) - float(h.state.deal_price is not None)
        for c, h in zip(candidate, champion, strict=True)
        if c.feasible
    ]  # per feasible scenario: +1 only the candidate dealt, -1 only the champion did
    deal_diff = mean_ci(deal_diffs)

    surplus = _bound_check(
        "surplus",
        surplus_diff.mean,
        surplus_diff.ci_low,
        -config.surplus_tolerance,
        "too few feasible scenarios",
    )
    # The deal rate is judged on the point estimate of the paired difference (its interval is
    # reported): a drop of a few points is what the tolerance is for.
    deal_rate = _bound_check(
        "deal_rate",
        deal_diff.mean,
        deal_diff.mean,
        -config.max_deal_rate_drop,
        "no feasible scenario",
    )
    figures = {
        "episodes": len(candidate),
        "feasible": surplus_test.n,
        "candidate": summarise("candidate", candidate).as_dict(),
        "champion": summarise("champion", champion).as_dict(),
        "surplus_difference": surplus_diff.as_dict(),
        "surplus_p_value": _json(surplus_test.p_value),
        "deal_rate_difference": deal_diff.as_dict(),
    }
    return surplus, deal_rate, figures


def _bound_check(name: str, value: float, bound: float, threshold: float, missing: str) -> Check:
    """Passed when `bound` is at or above `threshold`; inconclusive (with the reason `missing`)
    when there is no bound."""
    if math.isnan(bound):
        return Check(name, "inconclusive", value, math.nan, threshold, missing)
    return Check(name, "passed" if bound >= threshold else "failed", value, bound, threshold)


def _logged_check(
    candidate: PolicySnapshot,
    champion: PolicySnapshot,
    logged: Sequence[LoggedEpisode],
    config: GateConfig,
    rng: np.random.Generator,
) -> tuple[Check, dict[str, Any]]:
    threshold = -config.reward_tolerance
    if not logged:
        note = "no logged negotiations"
        return Check("reward", "inconclusive", math.nan, math.nan, threshold, note), {"episodes": 0}
    padded = pad(logged)
    comparison = compare_offline(padded, candidate, champion, rng=rng, resamples=config.resamples)
    difference = comparison.difference
    ess = min(comparison.a.effective_sample_size, comparison.b.effective_sample_size)
    figures = {
        "episodes": len(logged),
        "behaviour": on_policy_estimate(logged).as_dict(),
        "candidate": comparison.a.as_dict(),
        "champion": comparison.b.as_dict(),
        "reward_difference": difference.as_dict(),
        "effective_sample_size": ess,
    }
    status: Status = "inconclusive"
    if ess < config.min_effective_sample_size:
        note = (
            f"effective sample size {ess:.1f} of {len(logged)} logged negotiations, "
            f"below {config.min_effective_sample_size:g}"
        )
    elif math.isnan(difference.ci_low):
        note = "no interval: too many resamples hold no negotiation both models could have played"
    else:
        note = f"WDR on {len(logged)} logged negotiations, effective sample size {ess:.1f}"
        status = "passed" if difference.ci_low >= threshold else "failed"
    return Check("reward", status, difference.mean, difference.ci_low, threshold, note), figures


_WHAT = {
    "surplus": "normalised surplus on the held-out suite",
    "deal_rate": "deal rate on the feasible held-out scenarios",
    "reward": "estimated reward per negotiation on the logged negotiations",
}


def _describe(check: Check) -> str:
    """One clause: the figure, how it compares, and with what."""
    what = _WHAT[check.name]
    if check.status == "inconclusive":
        return f"{what} inconclusive ({check.note})"
    if check.name == "deal_rate":
        points, limit = 100 * check.value, 100 * -check.threshold
        if check.status == "failed":
            return f"{what} {-points:.1f} points below the champion's (at most {limit:.1f} allowed)"
        return f"{what} {points:+.1f} points (at most {limit:.1f} lower allowed)"
    comparison = "below" if check.status == "failed" else "within"
    return (
        f"{what} {check.value:+.3f} against the champion, lower 95% bound {check.bound:+.3f}, "
        f"{comparison} the tolerance of {check.threshold:+.3f}"
    )


def _json(value: float) -> float | None:
    return None if math.isnan(value) else value
