"""The online-learning harness of the benchmarks: the service's serve-log-learn-promote loop over
simulated negotiations, the held-out measurements, and a cache of pretrained models.

`OnlineStream` drives the service's own decision path (`NegotiationService.play`): the served
snapshot (the champion) negotiates with an `Exploration`, every decision is logged with its
propensity, and a separate learner takes each finished negotiation's transitions and runs
`min(moves, train_steps)` gradient steps at an online learning rate. In `immediate` promotion
the learner's every update serves at once (the spec's original behaviour); in `gated` promotion
the learner's snapshot is a candidate every `save_interval` negotiations and serves only if
`promotion.judge` passes it against the champion on the most recent logged negotiations.
`run_stream` streams a sequence of negotiations through it and measures the served snapshot
greedily on a fixed held-out set every so often.

Scenario streams are distinct: pretraining uses `scenarios.TRAINING_STREAM`, the measurement sets
`scenarios.EVALUATION_STREAM`, the online stream, the gate's bootstrap and exploration their own.
Pretrained models are cached under `cache_dir`, keyed by everything that shapes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from haggler.config import DQNConfig, Settings
from haggler.core.features import OBSERVATION_NAMES
from haggler.core.play import open_with
from haggler.core.scenarios import EVALUATION_STREAM, Played, Scenario, draw_scenario, scenario_rng
from haggler.core.transitions import LoggedEpisode
from haggler.learning.dqn import BuyerAgent
from haggler.learning.learner import anchor_experience
from haggler.learning.pretraining import PretrainConfig, pretrain
from haggler.policy.exploration import GREEDY, Exploration
from haggler.policy.snapshot import PolicySnapshot
from haggler.safety.evaluation import Estimate, mean_ci, paired_test, proportion_ci
from haggler.safety.logged_episodes import play_logged
from haggler.safety.promotion import GateConfig, judge
from haggler.serving.service import NegotiationService

ONLINE_STREAM = 2
"""Scenario stream of the online negotiations (training's are 0, evaluation's 1)."""
GATE_STREAM = 3
"""Seeds the gate: its own simulated suite and its bootstrap, apart from the measurement sets."""
EXPLORATION_STREAM = 4

PRETRAIN = PretrainConfig()
"""Pretraining in `pretrained_model` (the benchmarks'): the starter model's recipe."""

SAFE_EXPLORATION = Exploration("safe", 0.1)

PromotionMode = Literal["immediate", "gated"]
MODES: dict[str, tuple[PromotionMode, Literal["epsilon", "safe"]]] = {
    "immediate+epsilon": ("immediate", "epsilon"),
    "immediate+safe": ("immediate", "safe"),
    "gated+epsilon": ("gated", "epsilon"),
    "gated+safe": ("gated", "safe"),
}
"""Promotion and exploration, by the name a report uses."""


@dataclass(frozen=True)
class OnlineConfig:
    """How the service learns online while it serves."""

    promotion: PromotionMode = "gated"
    """`immediate`: each update serves at once; `gated`: a candidate serves if the gate passes."""
    exploration: Exploration = SAFE_EXPLORATION
    """The behaviour policy around the served snapshot's Q-values."""
    train_steps: int = 5
    """Gradient steps after each negotiation, at most one per move of it."""
    learning_rate: float = 1e-4
    """Adam's step size online (lower than pretraining's, as measured in the prototype)."""
    save_interval: int = 10
    """Negotiations between candidates (gated mode)."""
    window: int = 500
    """Most recent logged negotiations the gate reads."""
    gate: GateConfig | None = None
    """The gate's thresholds and simulated suite (`promotion.GateConfig()` when None)."""
    warmup: int = 0
    """Negotiations learned from before a learned version may serve (PROMOTION_WARMUP)."""
    anchor_share: float = 0.0
    """Share of each minibatch replayed from simulated experience (REPLAY_ANCHOR_SHARE)."""
    anchor_negotiations: int = 1000
    """Simulated negotiations of that experience (REPLAY_ANCHOR_NEGOTIATIONS)."""


def online_config(mode: str, **overrides: Any) -> OnlineConfig:
    """The OnlineConfig of a mode named in `MODES`, e.g. "gated+safe", at 10% exploration."""
    try:
        promotion, exploring = MODES[mode]
    except KeyError:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}") from None
    epsilon = overrides.pop("epsilon", 0.1)
    temperature = overrides.pop("temperature", Exploration.temperature)
    exploration = Exploration(exploring, epsilon, temperature)
    return OnlineConfig(promotion=promotion, exploration=exploration, **overrides)


# -- the online stream ----------------------------------------------------------------------------


class OnlineStream:
    """The service's online loop over simulated negotiations: serve, log, learn, promote."""

    def __init__(self, start: Path | BuyerAgent, config: OnlineConfig, *, seed: int) -> None:
        self.config = config
        self.learner = BuyerAgent.from_file(start) if isinstance(start, Path) else start
        self.learner.set_learning_rate(config.learning_rate)
        anchor_experience(self.learner, config.anchor_share, config.anchor_negotiations, seed=seed)
        self.start = self.learner.snapshot
        self.champion = self.learner.snapshot
        """The snapshot that serves."""
        self.service = _serving(config.exploration, self.champion)
        """The service's own decision path: what it serves is what the stream measures."""
        self.service.rng = np.random.default_rng(np.random.SeedSequence([EXPLORATION_STREAM, seed]))
        self.gate_rng = np.random.default_rng(np.random.SeedSequence([GATE_STREAM, seed]))
        self.logged: deque[LoggedEpisode] = deque(maxlen=config.window)
        self.negotiations = 0
        self.promotions = 0
        self.rejections = 0
        self.rejection_reasons: Counter[str] = Counter()
        self.gate_seconds = 0.0
        self._gate = config.gate or GateConfig()

    def negotiate(self, scenario: Scenario) -> Played:
        """Serve one negotiation, learn from it, and promote as the mode says."""
        seller = scenario.seller()
        final, decisions = self.service.play(
            open_with(scenario.terms, seller), seller, self.champion
        )
        episode = LoggedEpisode.of(decisions)
        self.logged.append(episode)
        transitions = episode.transitions()
        self.learner.add_transitions(transitions)
        self.learner.train_steps(min(len(transitions.move), self.config.train_steps))
        self.negotiations += 1
        if self.negotiations < self.config.warmup:
            pass  # learning, but nothing learned serves yet
        elif self.config.promotion == "immediate":
            self._promote(self.learner.snapshot)
        elif self.negotiations % self.config.save_interval == 0:
            self.judge(self.learner.snapshot)
        return Played(scenario, final, seller.reserve)

    def judge(self, candidate: PolicySnapshot) -> bool:
        """Let the gate decide whether `candidate` serves instead of the champion."""
        if candidate.version == self.champion.version:
            return False
        started = time.perf_counter()
        decision = judge(candidate, self.champion, list(self.logged), self._gate, rng=self.gate_rng)
        self.gate_seconds += time.perf_counter() - started
        if decision.passed:
            self._promote(candidate)
        else:
            self.rejections += 1
            self.rejection_reasons[_failed_checks(decision.figures)] += 1
        return bool(decision.passed)

    def _promote(self, snapshot: PolicySnapshot) -> None:
        if snapshot.version != self.champion.version:
            self.champion = snapshot
            self.service.serve(snapshot)
            self.promotions += 1


def _serving(exploration: Exploration, snapshot: PolicySnapshot) -> NegotiationService:
    """A `NegotiationService` acting with `snapshot` under `exploration`, as the service does
    with online training on (its learning is the stream's own: `OnlineStream.negotiate`)."""
    settings = Settings(
        _env_file=None,
        enable_training=exploration.explores,
        exploration="safe" if exploration.mode == "safe" else "epsilon",
        epsilon=exploration.epsilon,
        exploration_temperature=exploration.temperature,
    )
    return NegotiationService(
        settings.model_path,
        enable_training=exploration.explores,
        settings=settings,
        learn_inline=False,
        snapshot=snapshot,
    )


def _failed_checks(figures: dict[str, Any]) -> str:
    """Which of the gate's checks failed ("surplus+deal_rate"), or "inconclusive"."""
    checks = figures.get("checks", {})
    failed = [name for name, check in checks.items() if check.get("status") == "failed"]
    return "+".join(failed) or "inconclusive"


# -- measurement --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """A greedy policy on a fixed held-out set: surplus and deal per feasible scenario."""

    surplus: np.ndarray  # (F,) float, normalised surplus on the feasible scenarios
    deals: np.ndarray  # (F,) bool

    @property
    def mean(self) -> float:
        return float(self.surplus.mean())


def measure(snapshot: PolicySnapshot, suite: Sequence[Scenario]) -> Measured:
    """Play `snapshot` greedily on every scenario of `suite` (feasible ones count)."""
    _, played = play_logged(suite, snapshot, GREEDY)
    feasible = [p for p in played if p.feasible]
    return Measured(
        surplus=np.array([p.normalised_surplus for p in feasible]),
        deals=np.array([p.state.deal_price is not None for p in feasible]),
    )


def paired(a: Measured, b: Measured) -> tuple[Estimate, float]:
    """Mean surplus difference a - b over the same scenarios with its 95% CI, and the p-value."""
    test = paired_test("a", _as_played(a), "b", _as_played(b))
    return test.surplus_diff, test.p_value


class _Surplus:
    """Just enough of `Played` for `evaluation.paired_test`."""

    feasible = True

    def __init__(self, value: float) -> None:
        self.normalised_surplus = value


def _as_played(measured: Measured) -> list[Played]:
    return [_Surplus(float(v)) for v in measured.surplus]  # type: ignore[misc]


def suite_of(strategies: Sequence[str], size: int, key: int) -> list[Scenario]:
    """A fixed held-out set of `size` scenarios of `strategies` from the evaluation stream."""
    rng = scenario_rng(EVALUATION_STREAM, key)
    return [draw_scenario(rng, strategies) for _ in range(size)]


def stream_of(strategies: Sequence[str], size: int, seed: int) -> list[Scenario]:
    """The online stream of seed `seed`: `size` negotiations with sellers of `strategies`."""
    rng = scenario_rng(ONLINE_STREAM, seed)
    return [draw_scenario(rng, strategies) for _ in range(size)]


# -- pretrained models, cached ------------------------------------------------------------------


def pretrained_model(
    strategies: Sequence[str],
    *,
    seed: int,
    env_steps: int,
    cache_dir: Path,
    dqn: DQNConfig | None = None,
    pretrain_config: PretrainConfig | None = None,
    name: str = "model",
    train: bool = True,
) -> Path:
    """A model pretrained on `strategies` for `env_steps`, from `cache_dir` or trained there
    (unless not `train`: then only its path, which may not exist yet)."""
    dqn = dataclasses.replace(dqn or DQNConfig(), seed=seed)
    config = dataclasses.replace(
        pretrain_config or PRETRAIN,
        seconds=None,
        env_steps=env_steps,
        strategies=tuple(strategies),
        seed=seed,
    )
    # The observation layout is in the key: a model of another layout cannot be read back.
    key = json.dumps(
        [dataclasses.asdict(dqn), dataclasses.asdict(config), OBSERVATION_NAMES], sort_keys=True
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    path = cache_dir / f"{name}_s{seed}_{env_steps}_{digest}.pth"
    if train and not path.exists():
        agent = BuyerAgent(dqn)
        started = time.perf_counter()
        progress = pretrain(agent, config)
        agent.model_version = 1
        agent.save_model(
            path,
            trained_on=list(strategies),
            pretrain_env_steps=progress.env_steps,
            pretrain_seconds=round(time.perf_counter() - started, 1),
        )
    return path


# -- one stream, measured -----------------------------------------------------------------------


@dataclass(frozen=True)
class StreamPoint:
    """The stream after `negotiations` negotiations."""

    negotiations: int
    served_version: int
    promotions: int
    rejections: int
    held_out: Estimate
    """The served snapshot's greedy surplus on the held-out set."""
    vs_start: Estimate
    """Paired surplus difference served - starting model on the held-out set."""
    deal_rate: Estimate
    live: float
    """Mean live surplus per negotiation so far (exploration included)."""
    frozen_live: float
    """The frozen (starting) model's, greedy, on the same negotiations."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "negotiations": self.negotiations,
            "served_version": self.served_version,
            "promotions": self.promotions,
            "rejections": self.rejections,
            "held_out": self.held_out.as_dict(),
            "vs_start": self.vs_start.as_dict(),
            "deal_rate": self.deal_rate.as_dict(),
            "live": self.live,
            "frozen_live": self.frozen_live,
        }


@dataclass
class StreamRun:
    mode: str
    seed: int
    points: list[StreamPoint]
    live: np.ndarray  # (N,) live normalised surplus per negotiation (0 where no deal was possible)
    frozen_live: np.ndarray  # (N,) the frozen model's, greedy, on the same negotiations
    start: Measured
    final: Measured
    start_snapshot: PolicySnapshot
    final_snapshot: PolicySnapshot
    """The model that served at the end of the stream."""
    rejection_reasons: dict[str, int]
    seconds: float
    gate_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "seed": self.seed,
            "points": [p.as_dict() for p in self.points],
            "live_total": float(self.live.sum()),
            "frozen_live_total": float(self.frozen_live.sum()),
            "rejection_reasons": self.rejection_reasons,
            "seconds": round(self.seconds, 1),
            "gate_seconds": round(self.gate_seconds, 1),
        }


def run_stream(
    start_model: Path,
    stream: Sequence[Scenario],
    held_out: Sequence[Scenario],
    config: OnlineConfig,
    *,
    seed: int,
    measure_every: int,
    mode: str = "",
    log: Callable[[str], None] | None = None,
) -> StreamRun:
    """Stream `stream` through an `OnlineStream` from `start_model`; measure every so often."""
    started = time.perf_counter()
    online = OnlineStream(start_model, config, seed=seed)
    _, frozen_played = play_logged(stream, online.start, GREEDY)
    frozen_live = np.array([p.normalised_surplus for p in frozen_played])
    live = np.zeros(len(stream))
    start = measure(online.start, held_out)
    measured: dict[int, Measured] = {online.start.version: start}
    points: list[StreamPoint] = []

    def point() -> None:
        n, champion = online.negotiations, online.champion
        if champion.version not in measured:
            measured.clear()  # only the served version is measured again
            measured[champion.version] = measure(champion, held_out)
        now = measured[champion.version]
        vs_start, _ = paired(now, start)
        points.append(
            StreamPoint(
                negotiations=n,
                served_version=champion.version,
                promotions=online.promotions,
                rejections=online.rejections,
                held_out=mean_ci(now.surplus),
                vs_start=vs_start,
                deal_rate=proportion_ci(int(now.deals.sum()), len(now.deals)),
                live=float(live[:n].mean()) if n else math.nan,
                frozen_live=float(frozen_live[:n].mean()) if n else math.nan,
            )
        )
        if log is not None:
            p = points[-1]
            log(
                f"[{mode} seed {seed}] {n:5d} negotiations: v{p.served_version} "
                f"+{p.promotions}/-{p.rejections} held-out {p.held_out} "
                f"vs start {p.vs_start.mean:+.3f} live {p.live:.3f} frozen {p.frozen_live:.3f} "
                f"({time.perf_counter() - started:.0f} s)"
            )

    point()
    for i, scenario in enumerate(stream):
        live[i] = online.negotiate(scenario).normalised_surplus
        if (i + 1) % measure_every == 0 or i + 1 == len(stream):
            point()
    return StreamRun(
        mode=mode,
        seed=seed,
        points=points,
        live=live,
        frozen_live=frozen_live,
        start=start,
        final=measured[online.champion.version],
        start_snapshot=online.start,
        final_snapshot=online.champion,
        rejection_reasons=dict(online.rejection_reasons),
        seconds=time.perf_counter() - started,
        gate_seconds=online.gate_seconds,
    )
