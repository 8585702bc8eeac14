"""A benchmark's report: the text it prints and its figures, written as strict JSON beside a
self-contained HTML plot."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class BenchReport:
    """What a benchmark prints, and its figures (JSON-ready)."""

    text: str
    figures: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text


def write_report(
    figures: dict[str, Any], json_path: Path | None, plot: Any, plot_path: Path | None
) -> None:
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(_jsonable(figures), indent=2, allow_nan=False))
    if plot_path is not None:
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        plot.write_html(plot_path, include_plotlyjs=True, full_html=True)


def _jsonable(value: Any) -> Any:
    """`value` for strict JSON: numpy scalars as Python numbers, NaN as None."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def pretrained_with(pretrain_seed: int | None) -> str:
    """How a report names the models' pretraining seed."""
    return "each seed" if pretrain_seed is None else f"seed {pretrain_seed}"
