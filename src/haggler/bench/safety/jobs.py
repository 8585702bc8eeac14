"""The benchmarks' units of work, run side by side in fresh worker processes: pretraining a model
and streaming one mode with one seed. Workers are `spawn`ed, so what they run is importable here
at module level and what they take is picklable."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from haggler.bench.online_stream import (
    OnlineConfig,
    StreamRun,
    online_config,
    pretrained_model,
    run_stream,
    stream_of,
    suite_of,
)
from haggler.config import DQNConfig
from haggler.policy.exploration import Exploration
from haggler.safety.promotion import GateConfig

BENCH_SAVE_INTERVAL = 50
"""Negotiations between candidates in the benchmarks: a judgement (two models on a 300-scenario
suite, a bootstrap on 500 logged negotiations) took ~6 s on this shared machine, so every 10 (the
service's SAVE_INTERVAL) would cost half an hour per 3,000 negotiations."""

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True, kw_only=True)
class StreamBenchConfig:
    """What the safety benchmarks share: models pretrained per seed, then streamed in each mode.
    The fields without a default here take each benchmark's own."""

    seeds: tuple[int, ...] = (0, 1, 2)
    """Stream seeds: each varies the stream, exploration and the learner."""
    modes: tuple[str, ...]
    """Promotion+exploration modes (`online_stream.MODES`), streamed side by side."""
    negotiations: int
    """Negotiations streamed per mode and seed."""
    measure_every: int
    """Negotiations between two measurements of the served agent on the held-out suite."""
    pretrain_env_steps: int
    """Pretraining budget of each cached model."""
    pretrain_seed: int | None = 0
    """Every stream starts from the models pretrained with this seed; None pretrains per seed."""
    held_out_size: int
    """Scenarios of the fixed held-out suite the served agent is measured on."""
    held_out_key: int = 0
    """Seed of the held-out suite."""
    epsilon: float = 0.1
    """Exploration rate of the served agent."""
    temperature: float = Exploration.temperature
    """Softmax temperature of the safe exploration mode."""
    learning_rate: float = 1e-4
    """The online learner's learning rate."""
    train_steps: int = 5
    """Gradient steps after each negotiation."""
    save_interval: int = BENCH_SAVE_INTERVAL
    """Negotiations between two candidates."""
    window: int = 500
    """Logged negotiations the gate judges a candidate on."""
    gate: GateConfig | None = None
    """The promotion gate; None for the benchmark's own."""
    dqn: DQNConfig | None = None
    """The pretrained models' network; None for `DQNConfig()`."""
    cache_dir: Path = Path("models/bench/safety")
    """Folder of the cached pretrained models."""

    def online(self, gate: GateConfig) -> dict[str, Any]:
        """The `online_config` overrides of every stream, judged by `gate`."""
        return {
            "epsilon": self.epsilon,
            "temperature": self.temperature,
            "learning_rate": self.learning_rate,
            "train_steps": self.train_steps,
            "save_interval": self.save_interval,
            "window": self.window,
            "gate": gate,
        }


@dataclass(frozen=True)
class StreamJob:
    start_model: Path
    stream: tuple[str, ...]
    negotiations: int
    held_out: tuple[str, ...]
    held_out_size: int
    held_out_key: int
    config: OnlineConfig
    seed: int
    measure_every: int
    mode: str
    verbose: bool


def stream_jobs(
    starts: dict[int, Path],
    stream: Sequence[str],
    held_out: Sequence[str],
    config: StreamBenchConfig,
    *,
    gate: GateConfig,
    verbose: bool,
) -> list[StreamJob]:
    """One job per mode and seed: `stream` from the seed's start model, watched on `held_out`."""
    return [
        StreamJob(
            start_model=starts[seed],
            stream=tuple(stream),
            negotiations=config.negotiations,
            held_out=tuple(held_out),
            held_out_size=config.held_out_size,
            held_out_key=config.held_out_key,
            config=online_config(mode, **config.online(gate)),
            seed=seed,
            measure_every=config.measure_every,
            mode=mode,
            verbose=verbose,
        )
        for mode in config.modes
        for seed in starts
    ]


def run_stream_job(job: StreamJob) -> StreamRun:
    import torch

    torch.set_num_threads(1)
    return run_stream(
        job.start_model,
        stream_of(job.stream, job.negotiations, job.seed),
        suite_of(job.held_out, job.held_out_size, job.held_out_key),
        job.config,
        seed=job.seed,
        measure_every=job.measure_every,
        mode=job.mode,
        log=(lambda line: print(line, flush=True)) if job.verbose else None,
    )


PretrainJob = tuple[tuple[str, ...], int, int, Path, DQNConfig, str]
"""Strategies, seed, env steps, cache folder, DQN config and name of a `pretrained_model`."""


def pretrain_job(args: PretrainJob, *, train: bool = True) -> Path:
    import torch

    torch.set_num_threads(1)
    strategies, seed, env_steps, cache_dir, dqn, name = args
    return pretrained_model(
        strategies,
        seed=seed,
        env_steps=env_steps,
        cache_dir=cache_dir,
        dqn=dqn,
        name=name,
        train=train,
    )


def pretrain_all(jobs_: Sequence[PretrainJob], jobs: int) -> list[Path]:
    """Every job's model: cached ones at once, the others trained in `jobs` processes."""
    missing = [job for job in jobs_ if not pretrain_job(job, train=False).exists()]
    map_jobs(pretrain_job, missing, jobs)
    return [pretrain_job(job, train=False) for job in jobs_]


def map_jobs(function: Callable[[_T], _R], items: Sequence[_T], jobs: int) -> list[_R]:
    """`function` over `items`, in `jobs` fresh processes when more than one."""
    if jobs <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    context = multiprocessing.get_context("spawn")  # torch's thread pools do not survive fork
    with concurrent.futures.ProcessPoolExecutor(min(jobs, len(items)), mp_context=context) as pool:
        return list(pool.map(function, items))
