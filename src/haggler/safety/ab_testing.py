"""A/B tests of a challenger model against the champion that serves: arms, summaries, a stopping
rule that may be looked at after every negotiation, and its A/A and power simulations.

The stopping rule is the mixture sequential probability ratio test (mSPRT) of Johari, Pekelis &
Walsh, "Always valid inference: bringing sequential analysis to A/B testing" (2017): for the
difference in mean reward it keeps a likelihood ratio, mixed over a normal prior N(0, tau^2) on the
difference, that is a martingale under "no difference", so by Ville's inequality it crosses 1/alpha
with probability at most alpha however often it is looked at. A t-test looked at after every
negotiation would, by contrast, promote a copy of the champion far more often than alpha.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any, Literal, NamedTuple

import numpy as np
from scipy import stats

from haggler.core.negotiation import RewardConfig, episode_return, result
from haggler.core.scenarios import Buyer, Played, Scenario, play
from haggler.safety.evaluation import Estimate, mean_ci, proportion_ci

Arm = Literal["champion", "challenger"]
Decision = Literal["continue", "promote", "reject"]


def assign_arm(negotiation_id: int, test_id: int, split: float) -> Arm:
    """The arm of a negotiation: a keyed hash of both ids, so the same negotiation always lands in
    the same arm (a restart changes nothing) and two tests split the same ids independently.
    `split` is the challenger's share of the traffic."""
    if not 0.0 <= split <= 1.0:
        raise ValueError(f"split must be within [0, 1], got {split}")
    # BLAKE2b of the negotiation id keyed by the test id: 8 bytes -> uniform in [0, 1).
    key = test_id.to_bytes(16, "big", signed=True)
    message = negotiation_id.to_bytes(16, "big", signed=True)
    digest = hashlib.blake2b(message, key=key, digest_size=8).digest()
    uniform = int.from_bytes(digest, "big") / 2.0**64
    return "challenger" if uniform < split else "champion"


@dataclass(frozen=True)
class ArmOutcome:
    """One finished negotiation as the A/B test sees it."""

    reward: float
    """Episode return, clipped per step to [-1, 1]."""
    deal: bool
    savings_pct: float | None
    """Saving against list price, percent; None without a deal."""
    surplus: float | None
    """Normalised surplus, when the seller's reserve is known (simulated sellers) and a deal was
    possible; None for people and programs, whose reserve nobody knows."""


def outcome_of(played: Played, reward_config: RewardConfig | None = None) -> ArmOutcome:
    """A simulated negotiation as an arm outcome (surplus only where a deal was possible, as in
    `evaluation.summarise`)."""
    state = played.state
    deal = state.deal_price is not None
    return ArmOutcome(
        reward=episode_return(state, reward_config or RewardConfig(), played.feasible),
        deal=deal,
        savings_pct=result(state).savings_pct if deal else None,
        surplus=played.normalised_surplus if played.feasible else None,
    )


def outcomes_of(buyer: Buyer, suite: Sequence[Scenario]) -> list[ArmOutcome]:
    """Play `buyer` on every scenario of `suite`: a pool of outcomes for the simulations."""
    return [outcome_of(play(scenario, buyer)) for scenario in suite]


@dataclass(frozen=True)
class ArmSummary:
    negotiations: int
    deal_rate: Estimate
    """Share of negotiations ending in a deal, Wilson interval."""
    reward: Estimate
    savings_pct: Estimate
    """Over the deals."""
    surplus: Estimate
    """Over the outcomes whose surplus is known (NaN if none)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "negotiations": self.negotiations,
            "deal_rate": self.deal_rate.as_dict(),
            "reward": self.reward.as_dict(),
            "savings_pct": self.savings_pct.as_dict(),
            "surplus": self.surplus.as_dict(),
        }


def summarise_arm(outcomes: Sequence[ArmOutcome]) -> ArmSummary:
    return ArmSummary(
        negotiations=len(outcomes),
        deal_rate=proportion_ci(sum(o.deal for o in outcomes), len(outcomes)),
        reward=mean_ci([o.reward for o in outcomes]),
        savings_pct=mean_ci([o.savings_pct for o in outcomes if o.savings_pct is not None]),
        surplus=mean_ci([o.surplus for o in outcomes if o.surplus is not None]),
    )


@dataclass(frozen=True)
class StoppingRule:
    """When an A/B test stops, and with which decision."""

    alpha: float = 0.05
    """Error of the reward test over the whole test, however often looked at: the chance that a
    challenger no better than the champion is ever promoted, or one no worse ever rejected, is at
    most alpha together (about alpha / 2 each, as the test is two-sided). Measured by
    `aa_simulation` (2,000 A/A tests on the linear baseline's outcomes, looked at after every
    negotiation): 1.9% [1.4%, 2.6%] promoted, within the issue's target of 5%."""
    min_per_arm: int = 100
    """No decision before both arms have this many negotiations: the test plugs in the arms'
    sample variances, which are unreliable on fewer (and the normal approximation with them)."""
    max_per_arm: int = 2_000
    """Once both arms have this many, stop: the challenger is rejected for lack of evidence and
    the champion stays. Measured on baseline pools (reward sd ~0.13, even split): a +0.03 lift
    is promoted in 99% of tests after a median of 526 negotiations (both arms), +0.05 after 236,
    a +0.01 lift in only ~40%; an A/A test ends here 96% of the time, after ~4,000."""
    mixture_sd: float = 0.03
    """tau, the sd of the normal mixture over the reward difference: the test is most powerful for
    lifts of about this size (Johari et al. 2017, sec. 4); rewards have sd ~0.12."""
    deal_rate_alpha: float = 0.05
    """Error of the deal-rate guard's own mSPRT, looked at with the reward test: it rejects a
    challenger whose deal rate is not lower with chance at most this (two-sided, so ~half).
    The guard only ever turns a promotion into a rejection, so it adds nothing to the
    false-promotion rate; its errors keep a good challenger out, the safe side. With the look at
    promotion below, a good challenger is lost to the guard with chance at most
    deal_rate_alpha / 2 + promotion_deal_rate_alpha."""
    deal_rate_mixture_sd: float = 0.05
    """tau of the guard's own mSPRT, on the difference in deal rate."""
    promotion_deal_rate_alpha: float = 0.01
    """At the promotion itself the guard takes one more look, a one-sided two-proportion z-test
    at this level, which catches a lower deal rate that the mSPRT's stricter bar has not yet:
    the reward test can cross first. It costs about this share of good challengers (measured:
    at 0.05 it rejected 3-5% of challengers whose deal rate was unchanged)."""

    def __post_init__(self) -> None:
        for name in ("alpha", "deal_rate_alpha", "promotion_deal_rate_alpha"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be within (0, 1), got {getattr(self, name)}")
        if not 2 <= self.min_per_arm <= self.max_per_arm:
            raise ValueError(
                f"need 2 <= min_per_arm <= max_per_arm, got {self.min_per_arm}, {self.max_per_arm}"
            )
        if self.mixture_sd <= 0.0 or self.deal_rate_mixture_sd <= 0.0:
            raise ValueError("the mixture sds must be positive")


class _Stop(IntEnum):
    """Why a test stopped, or that it did not (the codes of the vectorised rule)."""

    CONTINUE = 0
    PROMOTE = 1
    WORSE = 2
    DEAL_RATE = 3
    """The guard's mSPRT: the challenger's deal rate is lower."""
    DEAL_RATE_AT_PROMOTION = 4
    """A promotion blocked by the one-look deal-rate test."""
    MAX_SIZE = 5


class _Sums(NamedTuple):
    """Running sums of one arm, one entry per look (arrays of one shape)."""

    n: np.ndarray
    reward: np.ndarray
    reward_sq: np.ndarray
    deals: np.ndarray


class _Looks(NamedTuple):
    """The rule's statistics and decision at each look (arrays of the shape of `_Sums`)."""

    stop: np.ndarray  # int, a _Stop code
    lift: np.ndarray  # challenger - champion mean reward
    lift_half_width: np.ndarray  # of the always-valid (1 - alpha) interval
    log_lr: np.ndarray  # the reward mSPRT's log likelihood ratio
    deal_log_lr: np.ndarray
    deal_p_one_look: np.ndarray  # one-sided two-proportion z-test, challenger lower


def _sums(outcomes: Sequence[ArmOutcome]) -> _Sums:
    rewards = np.array([o.reward for o in outcomes], dtype=float)
    return _Sums(
        n=np.array([len(outcomes)], dtype=float),
        reward=np.array([rewards.sum()]),
        reward_sq=np.array([(rewards**2).sum()]),
        deals=np.array([float(sum(o.deal for o in outcomes))]),
    )


def _mean_variance(
    total: np.ndarray, total_sq: np.ndarray, n: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased variance from running sums; NaN where n < 2 (or 1 for the mean)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / n
        variance = np.maximum(total_sq - total * mean, 0.0) / (n - 1)
    return mean, variance


def _msprt_log_lr(diff: np.ndarray, variance: np.ndarray, tau: float) -> np.ndarray:
    """log of the mixture likelihood ratio for "diff = 0", with diff ~ N(theta, variance) and
    theta ~ N(0, tau^2) (Johari et al. 2017, eq. 11, with the two arms' variances summed)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = variance + tau**2
        log_lr = 0.5 * np.log(variance / spread) + tau**2 * diff**2 / (2 * variance * spread)
    # No noise at all: certainty if the means differ, nothing if they agree.
    exact = np.where(diff != 0.0, np.inf, -np.inf)
    return np.where(variance > 0.0, log_lr, np.where(np.isnan(variance), np.nan, exact))


def _msprt_half_width(variance: np.ndarray, tau: float, alpha: float) -> np.ndarray:
    """Half-width of the always-valid interval: the thetas whose mSPRT has not crossed 1/alpha."""
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = variance + tau**2
        half_width = np.sqrt(
            variance * spread / tau**2 * (2 * math.log(1 / alpha) + np.log(spread / variance))
        )
    return np.where(variance == 0.0, 0.0, half_width)


def _looks(champion: _Sums, challenger: _Sums, rule: StoppingRule) -> _Looks:
    """The stopping rule at every look at once: `judge` and the simulations share this."""
    champion_mean, champion_var = _mean_variance(champion.reward, champion.reward_sq, champion.n)
    challenger_mean, challenger_var = _mean_variance(
        challenger.reward, challenger.reward_sq, challenger.n
    )
    lift = challenger_mean - champion_mean
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = champion_var / champion.n + challenger_var / challenger.n  # of the lift
    log_lr = _msprt_log_lr(lift, variance, rule.mixture_sd)
    half_width = _msprt_half_width(variance, rule.mixture_sd, rule.alpha)

    # Deals are 0/1: the variance of a share p is p(1 - p); same mixture test on their difference.
    with np.errstate(divide="ignore", invalid="ignore"):
        champion_rate = champion.deals / champion.n
        challenger_rate = challenger.deals / challenger.n
        deal_diff = challenger_rate - champion_rate
        deal_variance = (
            champion_rate * (1 - champion_rate) / champion.n
            + challenger_rate * (1 - challenger_rate) / challenger.n
        )
        pooled = (champion.deals + challenger.deals) / (champion.n + challenger.n)
        pooled_se = np.sqrt(pooled * (1 - pooled) * (1 / champion.n + 1 / challenger.n))
        z = deal_diff / pooled_se
    deal_log_lr = _msprt_log_lr(deal_diff, deal_variance, rule.deal_rate_mixture_sd)
    deal_p = np.where(pooled_se > 0.0, stats.norm.cdf(z), np.where(deal_diff < 0, 0.0, 1.0))

    smaller = np.minimum(champion.n, challenger.n)
    ready = smaller >= rule.min_per_arm
    guard = ready & (deal_log_lr >= math.log(1 / rule.deal_rate_alpha)) & (deal_diff < 0)
    fired = ready & (log_lr >= math.log(1 / rule.alpha))
    promote = fired & (lift > 0)
    stop = np.select(
        [
            guard,
            promote & (deal_p < rule.promotion_deal_rate_alpha),
            promote,
            fired & (lift < 0),
            smaller >= rule.max_per_arm,
        ],
        [_Stop.DEAL_RATE, _Stop.DEAL_RATE_AT_PROMOTION, _Stop.PROMOTE, _Stop.WORSE, _Stop.MAX_SIZE],
        default=_Stop.CONTINUE,
    )
    return _Looks(stop, lift, half_width, log_lr, deal_log_lr, deal_p)


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    """One sentence with the figures."""
    lift: Estimate
    """Challenger - champion mean reward, with the always-valid (1 - alpha) interval."""
    always_valid_p: float
    """1 / (the reward mSPRT's likelihood ratio), capped at 1; NaN before both arms have 2."""
    deal_rate_p: float
    """Always-valid p of the deal-rate guard (two-sided; it acts only on a lower rate)."""
    champion: ArmSummary
    challenger: ArmSummary

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "lift": self.lift.as_dict(),
            "always_valid_p": _json_float(self.always_valid_p),
            "deal_rate_p": _json_float(self.deal_rate_p),
            "champion": self.champion.as_dict(),
            "challenger": self.challenger.as_dict(),
        }


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


def _p_value(log_lr: float) -> float:
    return math.nan if math.isnan(log_lr) else min(1.0, math.exp(-log_lr))


def judge(
    champion: Sequence[ArmOutcome], challenger: Sequence[ArmOutcome], rule: StoppingRule
) -> Verdict:
    """The stopping rule on the outcomes so far: continue, promote the challenger or reject it.

    Meant to be called after every finished negotiation (or every k) and obeyed the first time it
    says stop. The p-value is 1 / likelihood ratio at this look; as the test stops at its first
    crossing, the running minimum of Johari et al. would decide nothing more.
    """
    looks = _looks(_sums(champion), _sums(challenger), rule)
    stop = _Stop(int(looks.stop[0]))
    mean, half = float(looks.lift[0]), float(looks.lift_half_width[0])
    lift = Estimate(mean, mean - half, mean + half)
    p, deal_p = _p_value(float(looks.log_lr[0])), _p_value(float(looks.deal_log_lr[0]))
    champion_summary, challenger_summary = summarise_arm(champion), summarise_arm(challenger)
    decisions: dict[_Stop, Decision] = {_Stop.CONTINUE: "continue", _Stop.PROMOTE: "promote"}
    return Verdict(
        decision=decisions.get(stop, "reject"),
        reason=_reason(
            stop,
            rule,
            challenger_summary,
            champion_summary,
            lift=f"lift {mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]",
            p=p,
            deal_p=deal_p,
            deal_p_one_look=float(looks.deal_p_one_look[0]),
        ),
        lift=lift,
        always_valid_p=p,
        deal_rate_p=deal_p,
        champion=champion_summary,
        challenger=challenger_summary,
    )


def _reason(
    stop: _Stop,
    rule: StoppingRule,
    a: ArmSummary,
    b: ArmSummary,
    *,
    lift: str,
    p: float,
    deal_p: float,
    deal_p_one_look: float,
) -> str:
    """The verdict in one sentence: `a` is the challenger, `b` the champion."""
    rewards = f"mean reward {a.reward.mean:.3f} against {b.reward.mean:.3f}"
    deals = f"deal rate {a.deal_rate.mean:.1%} against {b.deal_rate.mean:.1%}"
    sizes = f"over {a.negotiations} challenger and {b.negotiations} champion negotiations"
    if stop is _Stop.PROMOTE:
        return f"Challenger promoted: {rewards} ({lift}, always-valid p = {p:.3g}) {sizes}."
    if stop is _Stop.WORSE:
        return (
            f"Challenger rejected as worse: {rewards} ({lift}, always-valid p = {p:.3g}) {sizes}."
        )
    if stop is _Stop.DEAL_RATE:
        return (
            f"Challenger rejected by the deal-rate guard: its {deals} is significantly lower "
            f"(always-valid p = {deal_p:.3g}), whatever its reward ({lift}), {sizes}."
        )
    if stop is _Stop.DEAL_RATE_AT_PROMOTION:
        return (
            f"Challenger rejected by the deal-rate guard at promotion: its reward is higher "
            f"({lift}, always-valid p = {p:.3g}) but its {deals} is significantly lower "
            f"(one-sided z-test p = {deal_p_one_look:.3g}) {sizes}."
        )
    if stop is _Stop.MAX_SIZE:
        return (
            f"Challenger rejected for lack of evidence, the champion stays: {rewards} ({lift}, "
            f"always-valid p = {p:.3g}) {sizes}, the most a test takes "
            f"({rule.max_per_arm} per arm)."
        )
    if min(a.negotiations, b.negotiations) < rule.min_per_arm:
        return (
            f"No decision before {rule.min_per_arm} negotiations per arm: {a.negotiations} "
            f"challenger and {b.negotiations} champion so far."
        )
    return f"No decision yet: {rewards} ({lift}, always-valid p = {p:.3g}) {sizes}."


# -- simulations: A/A (false promotions) and A/B (power) ---------------------------------------

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
) -> tuple[_Stop, int] | None:
    """Where a test over these negotiations (arrays of shape (N,), in arrival order) first stops:
    (why, negotiations of both arms by then), or None if it has not. The same decisions as
    calling `judge` after every `look_every` negotiations, computed for all looks at once."""
    at = np.arange(look_every, len(rewards) + 1, look_every)  # negotiations at each look

    def running(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.asarray(np.cumsum(values * mask)[at - 1])

    champion, challenger = (
        _Sums(
            n=running(np.ones_like(rewards), mask),
            reward=running(rewards, mask),
            reward_sq=running(rewards**2, mask),
            deals=running(deals, mask),
        )
        for mask in (~is_challenger, is_challenger)
    )
    stop = _looks(champion, challenger, rule).stop
    stopped = np.flatnonzero(stop)
    if not len(stopped):
        return None
    first = int(stopped[0])
    return _Stop(int(stop[first])), int(at[first])


def _run_test(
    draw: _Draw,
    rule: StoppingRule,
    split: float,
    shift: float,
    look_every: int,
    rng: np.random.Generator,
) -> tuple[_Stop, int]:
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
            "median_negotiations_to_promotion": _json_float(self.median_negotiations_to_promotion),
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
    promoted = stops == _Stop.PROMOTE
    guarded = (stops == _Stop.DEAL_RATE) | (stops == _Stop.DEAL_RATE_AT_PROMOTION)
    return SimulationResult(
        shift=shift,
        trials=trials,
        promoted=proportion_ci(int(promoted.sum()), trials),
        rejected_worse=proportion_ci(int((stops == _Stop.WORSE).sum()), trials),
        rejected_by_guard=proportion_ci(int(guarded.sum()), trials),
        stopped_at_max=proportion_ci(int((stops == _Stop.MAX_SIZE).sum()), trials),
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
