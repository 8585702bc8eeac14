"""The shift benchmark: how the served agent recovers after the seller population changes.

Pretrained on population A (time-based sellers and hard-liners), the agent is streamed sellers of
population B (sellers that reciprocate), where it clearly loses; the lost surplus is its gap to an
agent pretrained on B, both greedy on a fixed held-out set of B. Every stream runs through
`online_stream.OnlineStream` in each promotion mode.

Measured here (3 stream seeds from one pretrained pair, 400k env steps each): the gap is 0.149;
immediate promotion dips up to 0.22 below the frozen agent before it recovers 89% by 2,000
negotiations; gated promotion never serves below it and recovers 98% (epsilon or safe), with live
surplus +0.024 (epsilon) and +0.074 (safe) a negotiation above the frozen agent's.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from haggler.bench.online_stream import Measured, StreamRun, measure, paired, suite_of
from haggler.bench.safety.jobs import (
    StreamBenchConfig,
    map_jobs,
    pretrain_all,
    run_stream_job,
    stream_jobs,
)
from haggler.bench.safety.report import BenchReport, pretrained_with, write_report
from haggler.config import DQNConfig
from haggler.learning.dqn import BuyerAgent
from haggler.safety.promotion import GateConfig

POPULATION_A: tuple[str, ...] = (
    "boulware",
    "linear",
    "conceder",
    "noisy_boulware",
    "noisy_linear",
    "hardliner",
)
"""Before the shift: sellers that concede on their own clock or not at all, none reciprocates."""
POPULATION_B: tuple[str, ...] = (
    "tit_for_tat",
    "reciprocal_absolute",
    "reciprocal_relative",
    "reciprocal_steps",
    "deadline_reciprocal",
)
"""After the shift: sellers that concede only as the buyer does (and one on a deadline too)."""


def shift_gate(population: Sequence[str]) -> GateConfig:
    """The gate of the shift benchmark: its simulated suite is drawn from the population now
    served. (On the standard suite an agent fully adapted to B is 0.044 surplus and 13 deal-rate
    points worse than the frozen A agent, so no adapted candidate could ever pass.)"""
    return GateConfig(
        strategies=tuple(population),
        suite_episodes=300,
        resamples=500,
        max_deal_rate_drop=0.05,
    )


@dataclass(frozen=True, kw_only=True)
class ShiftConfig(StreamBenchConfig):
    """The shift benchmark: pretrained on `population_a`, streamed `population_b`."""

    modes: tuple[str, ...] = ("immediate+epsilon", "gated+epsilon", "gated+safe")
    """Promotion+exploration modes, streamed side by side."""
    negotiations: int = 3_000
    """Negotiations of population B streamed per mode and seed."""
    measure_every: int = 250
    """Negotiations between two measurements on held-out B."""
    recovery_at: int = 2_000
    """The checkpoint whose recovered share is reported (the last when not measured)."""
    pretrain_env_steps: int = 400_000
    """Pretraining budget of each cached model, on A and on B."""
    held_out_size: int = 2_000
    """Scenarios of the fixed held-out set of B."""
    population_a: tuple[str, ...] = POPULATION_A
    """The sellers before the shift: the frozen agent is pretrained on them."""
    population_b: tuple[str, ...] = POPULATION_B
    """The sellers after the shift: streamed, held out, and the target agent's training."""


def shift_benchmark(
    config: ShiftConfig,
    *,
    json_path: Path | None = None,
    plot_path: Path | None = None,
    jobs: int = 1,
    verbose: bool = False,
) -> BenchReport:
    """Pretrain on population A, stream population B, and watch the served agent recover.

    The lost surplus (gap) is an agent pretrained on B minus the frozen A agent, both greedy on a
    fixed held-out set of B; recovery is the served agent's share of it won back.

    `json_path` and `plot_path`: where the figures and the plot go (not written when None);
    `jobs`: worker processes for pretraining and streams; `verbose`: print the streams' progress."""
    started = time.perf_counter()
    gate = config.gate or shift_gate(config.population_b)
    model_seeds = {
        s: s if config.pretrain_seed is None else config.pretrain_seed for s in config.seeds
    }
    unique = sorted(set(model_seeds.values()))
    pretrain_jobs = [
        (
            tuple(population),
            seed,
            config.pretrain_env_steps,
            config.cache_dir,
            config.dqn or DQNConfig(),
            name,
        )
        for name, population in (("shift_a", config.population_a), ("shift_b", config.population_b))
        for seed in unique
    ]
    paths = pretrain_all(pretrain_jobs, jobs)
    frozen_paths = {s: paths[unique.index(m)] for s, m in model_seeds.items()}
    target_paths = {s: paths[len(unique) + unique.index(m)] for s, m in model_seeds.items()}
    pretrain_seconds = time.perf_counter() - started

    suite = suite_of(config.population_b, config.held_out_size, config.held_out_key)
    by_path: dict[Path, Measured] = {}
    for path in {*frozen_paths.values(), *target_paths.values()}:
        by_path[path] = measure(BuyerAgent.from_file(path).snapshot, suite)
    frozen = {s: by_path[p] for s, p in frozen_paths.items()}
    target = {s: by_path[p] for s, p in target_paths.items()}
    gaps = {s: paired(target[s], frozen[s]) for s in config.seeds}

    stream_started = time.perf_counter()
    runs = map_jobs(
        run_stream_job,
        stream_jobs(
            frozen_paths,
            config.population_b,
            config.population_b,
            config,
            gate=gate,
            verbose=verbose,
        ),
        jobs,
    )
    stream_seconds = time.perf_counter() - stream_started

    gap_means = {s: gaps[s][0].mean for s in config.seeds}
    by_mode: dict[str, list[StreamRun]] = {
        m: [r for r in runs if r.mode == m] for m in config.modes
    }
    mode_figures: dict[str, Any] = {}
    lines = [
        f"Shift benchmark: pretrained on A ({', '.join(config.population_a)}), then streamed "
        f"{config.negotiations} negotiations of B ({', '.join(config.population_b)}).",
        f"Pretraining: {config.pretrain_env_steps:,} env steps per model; held-out set of B: "
        f"{config.held_out_size} scenarios ({len(next(iter(frozen.values())).surplus)} feasible); "
        f"seeds {list(config.seeds)} (pretrained with {pretrained_with(config.pretrain_seed)}); "
        f"{config.train_steps} steps per negotiation at lr {config.learning_rate:g}, "
        f"{config.epsilon:.0%} exploration, a candidate every {config.save_interval} negotiations.",
        "",
        "Lost surplus (agent pretrained on B - frozen A agent, greedy on held-out B, paired):",
    ]
    for s in config.seeds:
        lines.append(
            f"  seed {s}: frozen {frozen[s].mean:.3f}, pretrained on B {target[s].mean:.3f}, "
            f"gap {gaps[s][0]}"
        )
    mean_gap = float(np.mean(list(gap_means.values())))
    lines.append(
        f"  mean gap {mean_gap:.3f} (target >= 0.05: {'met' if mean_gap >= 0.05 else 'NOT met'})"
    )

    for mode, mode_runs in by_mode.items():
        figures = _shift_mode_figures(mode_runs, gap_means, config.recovery_at)
        mode_figures[mode] = figures
        lines += ["", f"{mode}:", _shift_table(mode_runs, gap_means)]
        lines += _shift_summary(mode, figures, config.recovery_at, config.negotiations)
    total = time.perf_counter() - started
    lines += [
        "",
        f"Wall time: {total:.0f} s (pretraining {pretrain_seconds:.0f} s, streams "
        f"{stream_seconds:.0f} s with {jobs} process(es)).",
    ]
    figures_out: dict[str, Any] = {
        "benchmark": "shift",
        "population_a": list(config.population_a),
        "population_b": list(config.population_b),
        "seeds": list(config.seeds),
        "negotiations": config.negotiations,
        "pretrain_env_steps": config.pretrain_env_steps,
        "pretrain_seed": config.pretrain_seed,
        "held_out_size": config.held_out_size,
        "online": {**config.online(gate), "gate": dataclasses.asdict(gate)},
        "gap": {
            str(s): {
                "frozen": frozen[s].mean,
                "pretrained_on_b": target[s].mean,
                "gap": gaps[s][0].as_dict(),
                "p_value": gaps[s][1],
            }
            for s in config.seeds
        },
        "mean_gap": mean_gap,
        "modes": mode_figures,
        "runs": [r.as_dict() for r in runs],
        "seconds": {
            "total": round(total, 1),
            "pretraining": round(pretrain_seconds, 1),
            "streams": round(stream_seconds, 1),
        },
    }
    text = "\n".join(lines)
    figures_out["report"] = text
    write_report(figures_out, json_path, _shift_plot(by_mode, frozen, target, gap_means), plot_path)
    return BenchReport(text, figures_out)


def _share(gain: float, gap: float) -> float:
    """The share of the lost surplus `gap` that `gain` won back (NaN when nothing was lost)."""
    return gain / gap if gap > 0.0 else math.nan


def _shift_mode_figures(
    runs: Sequence[StreamRun], gap_means: dict[int, float], recovery_at: int
) -> dict[str, Any]:
    """Recovery, dips and live surplus of one mode, per seed and mean over seeds."""
    checkpoints = [p.negotiations for p in runs[0].points]
    recovered = {
        r.seed: [_share(p.vs_start.mean, gap_means[r.seed]) for p in r.points] for r in runs
    }  # per seed, per checkpoint
    mean_recovered = np.mean(list(recovered.values()), axis=0)
    at = checkpoints.index(recovery_at) if recovery_at in checkpoints else len(checkpoints) - 1
    worst_dip = {r.seed: min(p.vs_start.mean for p in r.points) for r in runs}
    live_minus_frozen = {r.seed: float(r.live.sum() - r.frozen_live.sum()) for r in runs}
    per_negotiation = {r.seed: live_minus_frozen[r.seed] / len(r.live) for r in runs}
    return {
        "checkpoints": checkpoints,
        "recovered": {str(s): v for s, v in recovered.items()},
        "mean_recovered": mean_recovered.tolist(),
        "recovered_at": checkpoints[at],
        "recovered_at_per_seed": {str(s): v[at] for s, v in recovered.items()},
        "mean_recovered_at": float(mean_recovered[at]),
        "worst_dip_per_seed": {str(s): v for s, v in worst_dip.items()},
        "worst_dip": min(worst_dip.values()),
        "live_total_per_seed": {str(r.seed): float(r.live.sum()) for r in runs},
        "frozen_live_total_per_seed": {str(r.seed): float(r.frozen_live.sum()) for r in runs},
        "live_minus_frozen_total_per_seed": {str(s): v for s, v in live_minus_frozen.items()},
        "live_minus_frozen_per_negotiation_per_seed": {
            str(s): v for s, v in per_negotiation.items()
        },
        "mean_live_minus_frozen_per_negotiation": float(np.mean(list(per_negotiation.values()))),
        "promotions_per_seed": {str(r.seed): r.points[-1].promotions for r in runs},
        "rejections_per_seed": {str(r.seed): r.points[-1].rejections for r in runs},
        "seconds_per_seed": {str(r.seed): round(r.seconds, 1) for r in runs},
        "gate_seconds_per_seed": {str(r.seed): round(r.gate_seconds, 1) for r in runs},
    }


def _shift_table(runs: Sequence[StreamRun], gap_means: dict[int, float]) -> str:
    seeds = [r.seed for r in runs]
    header = (
        f"  {'n':>5s} {'served v':>12s} {'+promoted/-rejected':>22s} {'held-out surplus':>17s} "
        f"{'vs frozen':>10s} {'recovered ' + '/'.join(f's{s}' for s in seeds):>24s} {'mean':>6s} "
        f"{'live':>6s} {'frozen':>7s}"
    )
    rows = [header]
    for i, point in enumerate(runs[0].points):
        at = [r.points[i] for r in runs]
        recovered = [
            _share(p.vs_start.mean, gap_means[r.seed]) for p, r in zip(at, runs, strict=True)
        ]
        versions = "/".join(str(p.served_version) for p in at)
        counts = "/".join(f"+{p.promotions}-{p.rejections}" for p in at)
        live = [p.live for p in at]
        frozen_live = [p.frozen_live for p in at]
        rows.append(
            f"  {point.negotiations:5d} {versions:>12s} {counts:>22s} "
            f"{np.mean([p.held_out.mean for p in at]):17.3f} "
            f"{np.mean([p.vs_start.mean for p in at]):+10.3f} "
            f"{'/'.join(f'{x:+.0%}' for x in recovered):>24s} {np.mean(recovered):+6.0%} "
            f"{_mean_or_nan(live):6.3f} {_mean_or_nan(frozen_live):7.3f}"
        )
    return "\n".join(rows)


def _mean_or_nan(values: Sequence[float]) -> float:
    return math.nan if any(math.isnan(v) for v in values) else float(np.mean(values))


def _shift_summary(
    mode: str, figures: dict[str, Any], recovery_at: int, negotiations: int
) -> list[str]:
    recovered = figures["mean_recovered_at"]
    dip = figures["worst_dip"]
    live = figures["mean_live_minus_frozen_per_negotiation"]
    per_seed = figures["recovered_at_per_seed"].values()
    return [
        f"  recovered by {figures['recovered_at']}: "
        + " ".join(f"{v:.0%}" for v in per_seed)
        + f", mean {recovered:.0%} (target >= 75%: {'met' if recovered >= 0.75 else 'NOT met'})",
        f"  worst served - frozen on the way (any seed): {dip:+.3f} "
        f"(target >= -0.010: {'met' if dip >= -0.01 else 'NOT met'})",
        f"  live surplus - frozen over {negotiations}, per negotiation: "
        + " ".join(
            f"{v:+.4f}" for v in figures["live_minus_frozen_per_negotiation_per_seed"].values()
        )
        + f", mean {live:+.4f} (target >= 0: {'met' if live >= 0 else 'NOT met'})",
    ]


def _shift_plot(
    by_mode: dict[str, list[StreamRun]],
    frozen: dict[int, Measured],
    target: dict[int, Measured],
    gap_means: dict[int, float],
) -> Any:
    from plotly import graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        subplot_titles=(
            "Served agent's greedy surplus on held-out B (mean over seeds)",
            "Share of the lost surplus recovered (mean over seeds)",
            "Live surplus minus the frozen agent's, cumulative (mean over seeds)",
        ),
    )
    for mode, runs in by_mode.items():
        x = [p.negotiations for p in runs[0].points]
        held_out = np.mean([[p.held_out.mean for p in r.points] for r in runs], axis=0)
        recovered = np.mean(
            [[_share(p.vs_start.mean, gap_means[r.seed]) for p in r.points] for r in runs], axis=0
        )
        figure.add_trace(go.Scatter(x=x, y=held_out, name=mode, legendgroup=mode), row=1, col=1)
        figure.add_trace(
            go.Scatter(x=x, y=recovered, name=mode, legendgroup=mode, showlegend=False),
            row=2,
            col=1,
        )
        cumulative = np.mean([np.cumsum(r.live - r.frozen_live) for r in runs], axis=0)
        figure.add_trace(
            go.Scatter(
                x=np.arange(1, len(cumulative) + 1),
                y=cumulative,
                name=mode,
                legendgroup=mode,
                showlegend=False,
            ),
            row=3,
            col=1,
        )
    frozen_mean = float(np.mean([m.mean for m in frozen.values()]))
    target_mean = float(np.mean([m.mean for m in target.values()]))
    figure.add_hline(y=frozen_mean, line_dash="dot", annotation_text="frozen A agent", row=1, col=1)
    figure.add_hline(
        y=target_mean, line_dash="dash", annotation_text="pretrained on B", row=1, col=1
    )
    figure.add_hline(y=0.75, line_dash="dot", annotation_text="target 75%", row=2, col=1)
    figure.add_hline(y=0.0, line_dash="dot", row=3, col=1)
    figure.update_xaxes(title_text="negotiations after the shift", row=3, col=1)
    figure.update_layout(height=950, title="haggler: online learning after a population shift")
    return figure
