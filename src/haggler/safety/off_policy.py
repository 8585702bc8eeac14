"""Off-policy evaluation: what a candidate policy would earn per negotiation, read from the logs
of another (the behaviour policy that served, exploring, with every move's propensity logged).

The value is the average episode return, the undiscounted sum of the buyer's step rewards over
one negotiation. Two estimators, vectorised over the episodes padded to (N, T_max) (after its end
an episode earns 0 and keeps its weight: ratio 1):

- PDWIS, per-decision weighted importance sampling (Precup et al. 2000): each step's reward is
  weighted by the importance ratio of the moves up to it, normalised over the episodes.
- WDR, weighted doubly robust (Thomas & Brunskill 2016, eq. 13; Jiang & Li 2016) with the
  candidate's own Q-values as the model: Q̂(s, a) = snapshot.q_values, V̂(s) = Σ_a π(a|s) Q̂(s, a).
  It stays consistent however wrong the Q-values are; good ones only narrow the interval.

The logs are `logged_episodes.LoggedEpisode`s. Each estimate has a bootstrap 95% interval over
episodes (`bootstrap`: `scipy.stats.bootstrap`, percentile, widened for a small effective sample;
a resample is a row of counts, so the estimators are a few matrix products over all resamples at
once) and the effective sample size (Σw)² / Σw² of the trajectories' final weights: how many
on-policy negotiations the logs are worth for this target. A deterministic (greedy) target read
from epsilon-greedy logs keeps only the episodes in which every logged move was its own.

How honest the intervals are (`bench.ope_honesty.honesty_trials`, 200 trials of 300 logged
negotiations, a briefly pretrained network): the greedy value of the logging network itself, from
its safe or epsilon-greedy (30%) logs, was covered 94.5-95.5% of the time by both. A target that
differs from the logging network on a few states is harder: its moves there were logged only by
exploration, with ratios up to 1/(0.3/8) = 27 each, a heavy tail that 300 negotiations rarely
sample. PDWIS then covered 91.5-94.5%, WDR 88-90.5%: this barely trained network's Q-values are
a poor model, and at a small effective sample WDR leans towards the model (biased down by ~0.0025
here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from haggler.core.transitions import LoggedEpisode
from haggler.policy.exploration import GREEDY, Exploration, move_probabilities
from haggler.policy.snapshot import PolicySnapshot
from haggler.safety.bootstrap import (
    RESAMPLES,
    BootstrapMethod,
    bootstrap_interval,
    expanded_confidence,
)
from haggler.safety.evaluation import Estimate, mean_ci
from haggler.safety.logged_episodes import PaddedEpisodes, pad

Method = Literal["on_policy", "pdwis", "wdr"]

RETURN_RANGE = (-1.0, 1.0)
"""Where a Q-value may lie as a model of a return: step rewards are clipped to [-1, 1], and every
step but the last earns only the round cost (-0.002)."""


class TrajectoryWeights(NamedTuple):
    """What the target policy and its Q-values make of every logged step."""

    cumulative_weights: np.ndarray  # (N, T_max) w_t = Π_{k<=t} π(a_k|s_k) / μ(a_k|s_k)
    rewards: np.ndarray  # (N, T_max) r_t, 0 in padding
    q_logged: np.ndarray  # (N, T_max) Q̂(s_t, a_t), 0 in padding
    state_values: np.ndarray  # (N, T_max) V̂(s_t) = Σ_a π(a|s_t) Q̂(s_t, a), 0 in padding

    @property
    def final_weights(self) -> np.ndarray:
        return self.cumulative_weights[:, -1]  # (N,) each trajectory's weight at its end


def importance_ratios(padded: PaddedEpisodes, target_probabilities: np.ndarray) -> np.ndarray:
    """π(a_t|s_t) / μ(a_t|s_t) per logged step; 1 in padding."""
    return np.where(padded.logged, target_probabilities / padded.propensities, 1.0)  # (N, T_max)


def cumulative_weights(ratios: np.ndarray) -> np.ndarray:
    """w_t = Π_{k<=t} ratio_k: the weight of each trajectory's prefix up to step t."""
    return np.cumprod(ratios, axis=1)  # (N, T_max)


def trajectory_weights(
    padded: PaddedEpisodes, snapshot: PolicySnapshot, exploration: Exploration = GREEDY
) -> TrajectoryWeights:
    """The target policy (`snapshot` acting with `exploration`) on every logged step."""
    logged = padded.logged  # (N, T_max)
    q_values = snapshot.q_values(padded.observations[logged]).astype(np.float64)  # (S, N_MOVES)
    probabilities = move_probabilities(q_values, padded.action_masks[logged], exploration)
    rows = np.arange(len(q_values))  # (S,) one per logged step
    moves = padded.moves[logged]  # (S,)

    # The model: a return outside the rewards' range is certainly wrong, and clipping it can only
    # bring it closer to the truth (a Q-value of 10 made one WDR difference come out at +4).
    model = np.clip(q_values, *RETURN_RANGE)  # (S, N_MOVES)

    target_probabilities = np.ones(logged.shape)  # (N, T_max)
    target_probabilities[logged] = probabilities[rows, moves]
    q_logged = np.zeros(logged.shape)  # (N, T_max)
    q_logged[logged] = model[rows, moves]
    state_values = np.zeros(logged.shape)  # (N, T_max)
    state_values[logged] = (probabilities * model).sum(axis=1)

    ratios = importance_ratios(padded, target_probabilities)  # (N, T_max)
    return TrajectoryWeights(cumulative_weights(ratios), padded.rewards, q_logged, state_values)


def effective_sample_size(final_weights: np.ndarray) -> float:
    """(Σw)² / Σw² (Kong 1992): N when every weight is equal, 0 when all are 0."""
    total = float(final_weights.sum())
    squares = float(np.square(final_weights).sum())
    return total * total / squares if squares > 0.0 else 0.0


# -- the estimators, over a (B, N) matrix of resample counts --------------------------------------
# Row b says how often each episode appears in resample b; a row of ones is the logged data itself.


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (no weight left at that step)."""
    quotient: np.ndarray = np.divide(
        numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0.0
    )
    return quotient


def _unsupported_to_nan(values: np.ndarray, final_sums: np.ndarray) -> np.ndarray:
    # Σ_i w_i,T > 0 implies Σ_i w_i,t > 0 for every t (w_i,T > 0 needs w_i,t > 0), so a resample
    # is estimable exactly when some trajectory keeps a positive weight to its end.
    return np.where(final_sums > 0.0, values, np.nan)  # (B,)


def pdwis(weights: TrajectoryWeights, counts: np.ndarray) -> np.ndarray:
    """Per-decision WIS: Σ_t Σ_i w_i,t r_i,t / Σ_i w_i,t, one value per row of `counts`."""
    w = weights.cumulative_weights  # (N, T_max)
    per_episode = np.hstack([w, w * weights.rewards])  # (N, 2 T_max)
    weight_sums, weighted_rewards = np.split(counts @ per_episode, 2, axis=1)  # (B, T_max) each
    values = _ratio(weighted_rewards, weight_sums).sum(axis=1)  # (B,)
    return _unsupported_to_nan(values, weight_sums[:, -1])


def wdr(weights: TrajectoryWeights, counts: np.ndarray) -> np.ndarray:
    """Weighted doubly robust, undiscounted (Thomas & Brunskill 2016, eq. 13):
    Σ_t Σ_i [ w̄_i,t (r_i,t - Q̂(s_i,t, a_i,t)) + w̄_i,t-1 V̂(s_i,t) ],  w̄_i,-1 = 1/N."""
    w = weights.cumulative_weights  # (N, T_max)
    previous = np.hstack([np.ones((len(w), 1)), w[:, :-1]])  # (N, T_max) w_t-1
    per_episode = np.hstack(
        [w, w * (weights.rewards - weights.q_logged), previous, previous * weights.state_values]
    )  # (N, 4 T_max): one matrix product sums all four over each resample
    weight_sums, corrected_rewards, previous_sums, baselines = np.split(
        counts @ per_episode, 4, axis=1
    )  # (B, T_max) each
    values = (_ratio(corrected_rewards, weight_sums) + _ratio(baselines, previous_sums)).sum(
        axis=1
    )  # (B,)
    return _unsupported_to_nan(values, weight_sums[:, -1])


ESTIMATORS: dict[str, Callable[[TrajectoryWeights, np.ndarray], np.ndarray]] = {
    "pdwis": pdwis,
    "wdr": wdr,
}


# -- the estimates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OffPolicyEstimate:
    """A policy's average episode return estimated from logs, with its 95% interval."""

    method: Method
    value: Estimate
    effective_sample_size: float
    """(Σw)² / Σw² of the final trajectory weights; N for the on-policy figure."""
    episodes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "value": self.value.as_dict(),
            "effective_sample_size": self.effective_sample_size,
            "episodes": self.episodes,
        }

    def __str__(self) -> str:
        return (
            f"{self.method} {self.value} (ESS {self.effective_sample_size:.1f} of {self.episodes})"
        )


def on_policy_estimate(episodes: Sequence[LoggedEpisode]) -> OffPolicyEstimate:
    """The behaviour policy's own mean return on its logs, with a Student-t interval."""
    padded = pad(episodes)
    returns = padded.rewards.sum(axis=1)  # (N,)
    return OffPolicyEstimate("on_policy", mean_ci(returns), float(len(returns)), len(returns))


def off_policy_estimate(
    episodes: Sequence[LoggedEpisode] | PaddedEpisodes,
    snapshot: PolicySnapshot,
    exploration: Exploration = GREEDY,
    *,
    method: Literal["pdwis", "wdr"] = "wdr",
    rng: np.random.Generator,
    resamples: int = RESAMPLES,
    bootstrap: BootstrapMethod = "percentile",
) -> OffPolicyEstimate:
    """The target policy's (`snapshot` with `exploration`) average return, from the logs."""
    padded = episodes if isinstance(episodes, PaddedEpisodes) else pad(episodes)
    weights = trajectory_weights(padded, snapshot, exploration)
    return _estimate(method, weights, rng=rng, resamples=resamples, bootstrap=bootstrap)


def _estimate(
    method: Literal["pdwis", "wdr"],
    weights: TrajectoryWeights,
    *,
    rng: np.random.Generator,
    resamples: int,
    bootstrap: BootstrapMethod,
) -> OffPolicyEstimate:
    estimator = ESTIMATORS[method]
    n = len(weights.rewards)
    mean = float(estimator(weights, np.ones((1, n)))[0])
    ess = effective_sample_size(weights.final_weights)
    if math.isnan(mean):
        low = high = math.nan
    else:
        low, high = bootstrap_interval(
            lambda counts: estimator(weights, counts),
            n,
            rng=rng,
            resamples=resamples,
            method=bootstrap,
            confidence=expanded_confidence(ess),
        )
    return OffPolicyEstimate(method, Estimate(mean, low, high), ess, n)


@dataclass(frozen=True)
class OfflineEvaluation:
    """A target policy judged on logs: the behaviour's own figure and both estimates."""

    behaviour: OffPolicyEstimate
    pdwis: OffPolicyEstimate
    wdr: OffPolicyEstimate

    def as_dict(self) -> dict[str, Any]:
        return {
            "behaviour": self.behaviour.as_dict(),
            "pdwis": self.pdwis.as_dict(),
            "wdr": self.wdr.as_dict(),
        }


def evaluate_offline(
    episodes: Sequence[LoggedEpisode],
    snapshot: PolicySnapshot,
    exploration: Exploration = GREEDY,
    *,
    rng: np.random.Generator,
    resamples: int = RESAMPLES,
    bootstrap: BootstrapMethod = "percentile",
) -> OfflineEvaluation:
    """The behaviour's mean return on the logs, and the target's by PDWIS and by WDR."""
    padded = pad(episodes)
    weights = trajectory_weights(padded, snapshot, exploration)
    returns = padded.rewards.sum(axis=1)  # (N,)
    n = len(returns)
    return OfflineEvaluation(
        behaviour=OffPolicyEstimate("on_policy", mean_ci(returns), float(n), n),
        pdwis=_estimate("pdwis", weights, rng=rng, resamples=resamples, bootstrap=bootstrap),
        wdr=_estimate("wdr", weights, rng=rng, resamples=resamples, bootstrap=bootstrap),
    )


@dataclass(frozen=True)
class OffPolicyComparison:
    """Two target policies on the same logs by WDR, and their paired difference (a - b)."""

    a: OffPolicyEstimate
    b: OffPolicyEstimate
    difference: Estimate
    """WDR(a) - WDR(b), with a bootstrap interval from the same resamples for both: the logs'
    own noise, shared by both estimates, cancels out."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.as_dict(),
            "b": self.b.as_dict(),
            "difference": self.difference.as_dict(),
        }


def compare_offline(
    episodes: Sequence[LoggedEpisode] | PaddedEpisodes,
    a: PolicySnapshot,
    b: PolicySnapshot,
    exploration: Exploration = GREEDY,
    *,
    rng: np.random.Generator,
    resamples: int = RESAMPLES,
) -> OffPolicyComparison:
    """WDR estimates of `a` and `b` (both acting with `exploration`) and of their difference."""
    padded = episodes if isinstance(episodes, PaddedEpisodes) else pad(episodes)
    weights_a = trajectory_weights(padded, a, exploration)
    weights_b = trajectory_weights(padded, b, exploration)

    def difference(counts: np.ndarray) -> np.ndarray:
        differences: np.ndarray = wdr(weights_a, counts) - wdr(weights_b, counts)  # (B,)
        return differences

    n = len(padded.rewards)
    mean = float(difference(np.ones((1, n)))[0])
    a_estimate = _estimate("wdr", weights_a, rng=rng, resamples=resamples, bootstrap="percentile")
    b_estimate = _estimate("wdr", weights_b, rng=rng, resamples=resamples, bootstrap="percentile")
    ess = min(a_estimate.effective_sample_size, b_estimate.effective_sample_size)
    low, high = (math.nan, math.nan)
    if not math.isnan(mean):
        low, high = bootstrap_interval(
            difference, n, rng=rng, resamples=resamples, confidence=expanded_confidence(ess)
        )
    return OffPolicyComparison(a_estimate, b_estimate, Estimate(mean, low, high))
