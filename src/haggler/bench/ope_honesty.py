"""Are the off-policy estimates honest? Log negotiations of a known policy, estimate a second
known policy's average reward from them, and count how often the 95% interval holds that
policy's true value (its mean return played on-policy on many scenarios): `haggler bench-ope`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from haggler.config import DQNConfig
from haggler.core.scenarios import EVALUATION_STREAM, scenario_rng, scenario_suite
from haggler.core.sellers import TRAINING_STRATEGIES
from haggler.learning.dqn import BuyerAgent
from haggler.learning.pretraining import PretrainConfig, pretrain
from haggler.policy.exploration import GREEDY, Exploration
from haggler.policy.snapshot import PolicySnapshot
from haggler.safety.bootstrap import RESAMPLES, BootstrapMethod
from haggler.safety.evaluation import Estimate, mean_ci, proportion_ci
from haggler.safety.logged_episodes import play_logged
from haggler.safety.off_policy import OffPolicyEstimate, evaluate_offline

HONESTY_LOGGING = Exploration("safe", 0.3)
"""The honesty benchmark's default behaviour: the safe mode, exploring three times as often as
the service's default EPSILON."""


@dataclass(frozen=True)
class MethodHonesty:
    """How one estimator did over the trials."""

    coverage: Estimate
    """Share of trials whose 95% interval held the target's true value (Wilson interval)."""
    mean_estimate: float
    mean_ci_width: float
    mean_effective_sample_size: float
    undefined: int
    """Trials without an interval (no support for the target in the logs): counted as misses."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "coverage": self.coverage.as_dict(),
            "mean_estimate": None if math.isnan(self.mean_estimate) else self.mean_estimate,
            "mean_ci_width": None if math.isnan(self.mean_ci_width) else self.mean_ci_width,
            "mean_effective_sample_size": self.mean_effective_sample_size,
            "undefined": self.undefined,
        }


@dataclass(frozen=True)
class HonestyReport:
    """Repeated off-policy estimates of a known target from fresh logs of a known behaviour."""

    trials: int
    episodes_per_trial: int
    behaviour: str
    target: str
    true_value: Estimate
    """The target's mean return played on-policy on `truth_episodes` other scenarios."""
    behaviour_value: float
    """The behaviour's mean return over all trials' logs."""
    methods: dict[str, MethodHonesty]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "episodes_per_trial": self.episodes_per_trial,
            "behaviour": self.behaviour,
            "target": self.target,
            "true_value": self.true_value.as_dict(),
            "behaviour_value": self.behaviour_value,
            "methods": {name: method.as_dict() for name, method in self.methods.items()},
            "seconds": self.seconds,
        }


@dataclass(frozen=True, kw_only=True)
class HonestyConfig:
    """The honesty benchmark: how many logs of the behaviour, and how the target is estimated."""

    trials: int
    """Independent logs, each estimated on its own."""
    episodes_per_trial: int
    """Logged negotiations per trial."""
    seed: int
    """Seed of the scenarios, the play and the bootstrap (and of `reference_policies`)."""
    behaviour_exploration: Exploration = HONESTY_LOGGING
    """How the behaviour explores while its negotiations are logged."""
    target_exploration: Exploration = GREEDY
    """How the target plays, the policy whose value is estimated."""
    strategies: tuple[str, ...] = TRAINING_STRATEGIES
    """Seller strategies the scenarios are drawn from."""
    truth_episodes: int = 20_000
    """Scenarios the target plays on-policy for its true value."""
    resamples: int = RESAMPLES
    """Bootstrap resamples of each interval."""
    bootstrap: BootstrapMethod = "percentile"
    """The bootstrap interval's method."""

    def __post_init__(self) -> None:
        if self.trials < 1 or self.episodes_per_trial < 2:
            raise ValueError("honesty trials need at least 1 trial of at least 2 episodes")


def _describe(snapshot: PolicySnapshot, exploration: Exploration) -> str:
    if not exploration.explores:
        return f"version {snapshot.version} greedy"
    extra = f", temperature {exploration.temperature}" if exploration.mode == "safe" else ""
    return f"version {snapshot.version} {exploration.mode} {exploration.epsilon}{extra}"


def reference_policies(seed: int = 0) -> tuple[PolicySnapshot, PolicySnapshot]:
    """A champion and its next candidate, as the gate sees them: an agent pretrained briefly
    (20k environment steps, a few seconds) and the same agent 50 gradient steps later at the
    online learning rate (one checkpoint of online training: SAVE_INTERVAL 10 x TRAIN_STEPS 5)."""
    agent = BuyerAgent(DQNConfig(hidden_sizes=(32, 32), seed=seed))
    pretrain(agent, PretrainConfig(seconds=None, env_steps=20_000, seed=seed))
    champion = agent.snapshot
    agent.set_learning_rate(1e-4)
    later = PretrainConfig(
        seconds=None,
        env_steps=50 * 32,  # one gradient step per batch of 32 environment steps
        n_envs=32,
        learning_starts=0,
        epsilon_start=0.1,
        epsilon_end=0.1,
        average_from=None,  # online training's candidates are last iterates, never averages
        seed=seed + 1,
    )
    pretrain(agent, later)
    return champion, agent.snapshot


def honesty_trials(
    config: HonestyConfig,
    *,
    behaviour: PolicySnapshot | None = None,
    target: PolicySnapshot | None = None,
) -> HonestyReport:
    """Measure how often the PDWIS and WDR intervals of the target's value cover its true value.

    The truth is the target played on-policy on `config.truth_episodes` scenarios; each trial logs
    the behaviour on `config.episodes_per_trial` fresh scenarios (drawn from the same distribution,
    never shared between trials) and estimates the target from those logs alone. The behaviour is
    `reference_policies(config.seed)`'s champion unless given; the target is the behaviour's own
    network unless given (with the default explorations: the champion's greedy value read from
    its own exploring logs, which the gate estimates too)."""
    trials, episodes_per_trial, seed = config.trials, config.episodes_per_trial, config.seed
    behaviour_exploration = config.behaviour_exploration
    target_exploration = config.target_exploration
    started = time.perf_counter()
    if behaviour is None:
        behaviour, _ = reference_policies(seed)
    if target is None:
        target = behaviour
    stream = scenario_rng(EVALUATION_STREAM, seed)
    truth_seed, logs_seed = (int(s) for s in stream.integers(2**63, size=2))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))

    truth_suite = scenario_suite(config.truth_episodes, truth_seed, config.strategies)
    truth, _ = play_logged(truth_suite, target, target_exploration, rng=rng)
    true_value = mean_ci([episode.ret for episode in truth])

    suite = scenario_suite(trials * episodes_per_trial, logs_seed, config.strategies)
    logs, _ = play_logged(suite, behaviour, behaviour_exploration, rng=rng)

    outcomes: dict[str, list[OffPolicyEstimate]] = {"pdwis": [], "wdr": []}
    for trial in range(trials):
        episodes = logs[trial * episodes_per_trial : (trial + 1) * episodes_per_trial]
        evaluation = evaluate_offline(
            episodes,
            target,
            target_exploration,
            rng=rng,
            resamples=config.resamples,
            bootstrap=config.bootstrap,
        )
        outcomes["pdwis"].append(evaluation.pdwis)
        outcomes["wdr"].append(evaluation.wdr)

    def honesty(estimates: list[OffPolicyEstimate]) -> MethodHonesty:
        lows = np.array([e.value.ci_low for e in estimates])  # (trials,)
        highs = np.array([e.value.ci_high for e in estimates])  # (trials,)
        defined = np.isfinite(lows) & np.isfinite(highs)  # (trials,)
        covered = defined & (lows <= true_value.mean) & (true_value.mean <= highs)  # (trials,)
        means = np.array([e.value.mean for e in estimates])  # (trials,)
        return MethodHonesty(
            coverage=proportion_ci(int(covered.sum()), len(estimates)),
            mean_estimate=float(np.nanmean(means)) if np.isfinite(means).any() else math.nan,
            mean_ci_width=float(np.mean(highs[defined] - lows[defined]))
            if defined.any()
            else math.nan,
            mean_effective_sample_size=float(np.mean([e.effective_sample_size for e in estimates])),
            undefined=int((~defined).sum()),
        )

    return HonestyReport(
        trials=trials,
        episodes_per_trial=episodes_per_trial,
        behaviour=_describe(behaviour, behaviour_exploration),
        target=_describe(target, target_exploration),
        true_value=true_value,
        behaviour_value=float(np.mean([episode.ret for episode in logs])),
        methods={name: honesty(estimates) for name, estimates in outcomes.items()},
        seconds=time.perf_counter() - started,
    )


def format_honesty(report: HonestyReport) -> str:
    """The honesty report as plain text, for `haggler bench-ope`."""
    truth = report.true_value
    lines = [
        f"Off-policy honesty: {report.trials} trials x {report.episodes_per_trial} logged "
        f"negotiations ({report.seconds:.1f} s)",
        f"  behaviour (logs): {report.behaviour}, mean return {report.behaviour_value:.4f}",
        f"  target:           {report.target}, true mean return {truth.mean:.4f} "
        f"[{truth.ci_low:.4f}, {truth.ci_high:.4f}] (on-policy, simulated)",
        "",
        f"{'method':8s} {'coverage of the 95% CI [Wilson]':34s} {'mean estimate':>13s} "
        f"{'mean CI width':>13s} {'mean ESS':>9s} {'no CI':>6s}",
    ]
    for name, method in report.methods.items():
        lines.append(
            f"{name:8s} {method.coverage!s:34s} {method.mean_estimate:13.4f} "
            f"{method.mean_ci_width:13.4f} {method.mean_effective_sample_size:9.1f} "
            f"{method.undefined:6d}"
        )
    return "\n".join(lines)
