"""Simulations of the A/B stopping rule, for `haggler bench-ab`: A/A tests (two identical models,
so every promotion is a false one) and power (the challenger's rewards shifted up), each test run
to its stop on outcomes drawn from a pool of one model's simulated negotiations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from haggler.core.negotiation import RewardConfig, episode_return, result
from haggler.core.play import Buyer
from haggler.core.scenarios import Played, Scenario, play
from haggler.safety.ab_testing import ArmOutcome, Stop, StoppingRule, Sums, at_every_look
from haggler.safety.evaluation import Estimate, proportion_ci


def outcome_of(played: Played, reward_config: RewardConfig | None = None) -> ArmOutcome:
    """A simulated negotiation as an arm outcome (surplus only where a deal was possible, as in
    `evaluation.summarise`)."""
    state = played.state
    deal = state.deal_price is not None
    return ArmOutcome(
        reward=episode_return(state, reward_config or RewardConfig()),
        deal=deal,
        savings_pct=result(state).savings_pct if deal else None,
        surplus=played.normalised_surplus if played.feasible else None,
    )


def outcomes_of(buyer: Buyer, suite: Sequence[Scenario]) -> list[ArmOutcome]:
    """Play `buyer` on every scenario of `suite`: a pool of outcomes for the simulations."""
    return [outcome_of(play(scenario, buyer)) for scenario in suite]


Sampler = Callable[[np.random.Generator, int], Sequence[ArmOutcome]]
"""Draws `size` outcomes of one model."""

_Draw = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
"""Draws `size` (rewards, deals) as float arrays of shape (size,)."""


def _drawer(outcomes: Sequence[ArmOutcome] | Sampler) -> _Draw:
    """Draws with replacement from a pool, or converts what a sampler draws."""
    if callable(outcomes):
        sampler = outcomes

        def draw_sampled(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
            drawn = sampler(rng, size)
            return (
                np.array([o.reward for o in drawn], dtype=float),
                np.array([o.deal for o in drawn], dtype=float),
            )

        return draw_sampled
    if not outcomes:
        raise ValueError("the outcome pool is empty")
    rewards = np.array([o.reward for o in outcomes], dtype=float)
    deals = np.array([o.deal for o in outcomes], dtype=float)

    def draw_pooled(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        index = rng.integers(len(rewards), size=size)
        return rewards[index], deals[index]

    return draw_pooled


def _first_stop(
    rewards: np.ndarray,
    deals: np.ndarray,
    is_challenger: np.ndarray,
    rule: StoppingRule,
    look_every: int = 1,
) -> tuple[Stop, int] | None:
    """Where a test over these negotiations (arrays of shape (N,), in arrival order) first stops:
    (why, negotiations of both arms by then), or None if it has not. The same decisions as
    calling `judge` after every `look_every` negotiations, computed for all looks at once."""
    at = np.arange(look_every, len(rewards) + 1, look_every)  # negotiations at each look

    def running(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.asarray(np.cumsum(values * mask)[at - 1])

    champion, challenger = (
        Sums(
            n=running(np.ones_like(rewards), mask),
            reward=running(rewards, mask),
            reward_sq=running(rewards**2, mask),
            deals=running(deals, mask),
        )
        for mask in (~is_challenger, is_challenger)
    )
    stop = at_every_look(champion, challenger, rule).stop
    stopped = np.flatnonzero(stop)
    if not len(stopped):
        return None
    first = int(stopped[0])
    return Stop(int(stop[first])), int(at[first])


def _run_test(
    draw: _Draw,
    rule: StoppingRule,
    split: float,
    shift: float,
    look_every: int,
    rng: np.random.Generator,
) -> tuple[Stop, int]:
    """One A/B test to its stop: (why it stopped, negotiations served by both arms by then)."""
    # Enough negotiations for the smaller arm to reach max_per_arm nearly always; rarely more.
    size = int(1.1 * rule.max_per_arm / min(split, 1 - split)) + 2 * rule.min_per_arm + look_every
    rewards, deals = np.empty(0), np.empty(0)
    is_challenger = np.empty(0, dtype=bool)
    while True:
        more_rewards, more_deals = draw(rng, size)
        more_challenger = rng.random(size) < split
        rewards = np.concatenate([rewards, more_rewards + shift * more_challenger])
        deals = np.concatenate([deals, more_deals])
        is_challenger = np.concatenate([is_challenger, more_challenger])
        stopped = _first_stop(rewards, deals, is_challenger, rule, look_every)
        if stopped is not None:
            return stopped


@dataclass(frozen=True)
class SimulationResult:
    """Many A/B tests run to their stop, the challenger's rewards shifted by `shift`."""

    shift: float
    trials: int
    promoted: Estimate
    """Share promoted, Wilson interval: the false-promotion rate when `shift` is 0."""
    rejected_worse: Estimate
    rejected_by_guard: Estimate
    stopped_at_max: Estimate
    median_negotiations: float
    """Negotiations served by both arms together until the stop."""
    median_negotiations_to_promotion: float
    """The same over the promoted tests only (NaN if none)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "shift": self.shift,
            "trials": self.trials,
            "promoted": self.promoted.as_dict(),
            "rejected_worse": self.rejected_worse.as_dict(),
            "rejected_by_guard": self.rejected_by_guard.as_dict(),
            "stopped_at_max": self.stopped_at_max.as_dict(),
            "median_negotiations": self.median_negotiations,
            "median_negotiations_to_promotion": (
                None
                if math.isnan(self.median_negotiations_to_promotion)
                else self.median_negotiations_to_promotion
            ),
        }


def simulate_tests(
    outcomes: Sequence[ArmOutcome] | Sampler,
    trials: int,
    rule: StoppingRule,
    split: float = 0.5,
    shift: float = 0.0,
    *,
    rng: np.random.Generator,
    look_every: int = 1,
) -> SimulationResult:
    """Run `trials` A/B tests to their stop, both arms drawn from `outcomes`, the challenger's
    rewards shifted by `shift` (its deals unchanged), the rule looked at every `look_every`."""
    if not 0.0 < split < 1.0:
        raise ValueError(f"a simulated test needs both arms: split within (0, 1), got {split}")
    if trials < 1 or look_every < 1:
        raise ValueError("trials and look_every must be positive")
    draw = _drawer(outcomes)
    runs = [_run_test(draw, rule, split, shift, look_every, rng) for _ in range(trials)]
    stops = np.array([stop for stop, _ in runs])
    negotiations = np.array([n for _, n in runs], dtype=float)
    promoted = stops == Stop.PROMOTE
    guarded = (stops == Stop.DEAL_RATE) | (stops == Stop.DEAL_RATE_AT_PROMOTION)
    return SimulationResult(
        shift=shift,
        trials=trials,
        promoted=proportion_ci(int(promoted.sum()), trials),
        rejected_worse=proportion_ci(int((stops == Stop.WORSE).sum()), trials),
        rejected_by_guard=proportion_ci(int(guarded.sum()), trials),
        stopped_at_max=proportion_ci(int((stops == Stop.MAX_SIZE).sum()), trials),
        median_negotiations=float(np.median(negotiations)),
        median_negotiations_to_promotion=(
            float(np.median(negotiations[promoted])) if promoted.any() else math.nan
        ),
    )


@dataclass(frozen=True)
class ABSimulationReport:
    rule: StoppingRule
    split: float
    look_every: int
    reward_sd: float
    """Of the outcomes the arms were drawn from."""
    deal_rate: float
    aa: SimulationResult
    """Two identical models: every promotion is a false one."""
    power: tuple[SimulationResult, ...]
    """The challenger's rewards shifted up, one result per shift."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": asdict(self.rule),
            "split": self.split,
            "look_every": self.look_every,
            "reward_sd": self.reward_sd,
            "deal_rate": self.deal_rate,
            "aa": self.aa.as_dict(),
            "power": [row.as_dict() for row in self.power],
        }


def aa_simulation(
    outcome_pool: Sequence[ArmOutcome] | Sampler,
    trials: int,
    rule: StoppingRule,
    split: float = 0.5,
    *,
    rng: np.random.Generator,
    shifts: Sequence[float] = (0.03, 0.05),
    look_every: int = 1,
) -> ABSimulationReport:
    """The stopping rule's false-promotion rate (A/A: both arms drawn from the same outcomes of one
    model) and its power (the challenger's rewards shifted by each of `shifts`), each over
    `trials` tests run to their stop."""
    rewards, deals = _drawer(outcome_pool)(rng, 10_000)
    return ABSimulationReport(
        rule=rule,
        split=split,
        look_every=look_every,
        reward_sd=float(rewards.std(ddof=1)),
        deal_rate=float(deals.mean()),
        aa=simulate_tests(outcome_pool, trials, rule, split, rng=rng, look_every=look_every),
        power=tuple(
            simulate_tests(outcome_pool, trials, rule, split, shift, rng=rng, look_every=look_every)
            for shift in shifts
        ),
    )


def format_ab_simulation(report: ABSimulationReport) -> str:
    """A plain-text report of `aa_simulation`, for `haggler bench-ab`."""
    rule = report.rule
    lines = [
        f"A/B stopping rule: mSPRT on mean reward (alpha {rule.alpha}, tau {rule.mixture_sd}), "
        f"{rule.min_per_arm}..{rule.max_per_arm} negotiations per arm; deal-rate guard "
        f"(alpha {rule.deal_rate_alpha}, tau {rule.deal_rate_mixture_sd}; at promotion "
        f"z-test at {rule.promotion_deal_rate_alpha})",
        f"Outcomes: reward sd {report.reward_sd:.3f}, deal rate {report.deal_rate:.1%}; "
        f"challenger share {report.split:.2f}, looked at every {report.look_every} negotiation(s)",
        "",
        f"{'challenger':14s} {'trials':>6s} {'promoted [95% CI]':>24s} {'worse':>6s} "
        f"{'guard':>6s} {'at max':>6s} {'median n':>9s} {'to promote':>10s}",
    ]
    for row in (report.aa, *report.power):
        label = "same (A/A)" if row is report.aa else f"reward {row.shift:+.3f}"
        lines.append(
            f"{label:14s} {row.trials:6d} {row.promoted!s:>24s} "
            f"{row.rejected_worse.mean:6.3f} {row.rejected_by_guard.mean:6.3f} "
            f"{row.stopped_at_max.mean:6.3f} {row.median_negotiations:9.0f} "
            f"{row.median_negotiations_to_promotion:10.0f}"
        )
    aa = report.aa.promoted
    lines += [
        "",
        f"False-promotion rate (A/A): {aa.mean:.1%} [{aa.ci_low:.1%}, {aa.ci_high:.1%}] "
        f"(target at most 5%).",
    ]
    return "\n".join(lines)
