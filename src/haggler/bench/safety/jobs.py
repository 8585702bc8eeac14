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

BENCH_SAVE_INTERVAL = 50
"""Negotiations between candidates in the benchmarks: a judgement (two models on a 300-scenario
suite, a bootstrap on 500 logged negotiations) took ~6 s on this shared machine, so every 10 (the
service's SAVE_INTERVAL) would cost half an hour per 3,000 negotiations."""

_T = TypeVar("_T")
_R = TypeVar("_R")


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
    modes: Sequence[str],
    stream: Sequence[str],
    held_out: Sequence[str],
    *,
    negotiations: int,
    measure_every: int,
    held_out_size: int,
    held_out_key: int,
    overrides: dict[str, Any],
    verbose: bool,
) -> list[StreamJob]:
    return [
        StreamJob(
            start_model=starts[seed],
            stream=tuple(stream),
            negotiations=negotiations,
            held_out=tuple(held_out),
            held_out_size=held_out_size,
            held_out_key=held_out_key,
            config=online_config(mode, **overrides),
            seed=seed,
            measure_every=measure_every,
            mode=mode,
            verbose=verbose,
        )
        for mode in modes
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
