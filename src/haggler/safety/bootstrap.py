"""Bootstrap intervals over logged episodes: a resample is a row of counts (how often each episode
appears in it), so an estimator is a few matrix products over all the resamples of a batch at once;
and the expanded percentile level that keeps such an interval honest on a small effective sample.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy import stats

from haggler.safety.evaluation import CONFIDENCE

BootstrapMethod = Literal["percentile", "BCa"]

RESAMPLES = 2_000
"""Bootstrap resamples per interval: the 2.5% quantile rests on 50 of them."""
UNSUPPORTED_SHARE = 0.05
"""Bootstrap resamples may hold no episode that the target policy could have played (weights all
0): they have no estimate and are left out. When more than this share are so, the interval is
undefined (NaN): the logs do not support the target."""
_BATCH_CELLS = 2_000_000
"""Resamples x episodes per batch of the bootstrap (bounds its memory to ~50 MB)."""


def bootstrap_interval(
    statistic: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    *,
    rng: np.random.Generator,
    resamples: int = RESAMPLES,
    method: BootstrapMethod = "percentile",
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """A bootstrap interval over episodes of `statistic`, a function of (B, N) counts -> (B,).

    scipy resamples episode indices; each resample becomes a row of counts, so the statistic
    sees all the resamples of a batch at once."""
    if episodes < 2:
        return math.nan, math.nan

    def of_indices(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = indices.reshape(-1, indices.shape[-1])  # (B, n) episode indices per resample
        rows = np.arange(len(batch))[:, None]  # (B, 1)
        counts = np.bincount(
            (rows * episodes + batch).ravel(), minlength=len(batch) * episodes
        ).reshape(len(batch), episodes)  # (B, N)
        return statistic(counts.astype(np.float64)).reshape(indices.shape[:-1])

    with warnings.catch_warnings():
        # NaN resamples (no support) make scipy warn and give NaN; they are handled below.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (np.arange(episodes),),
            of_indices,
            n_resamples=resamples,
            batch=max(1, _BATCH_CELLS // episodes),
            vectorized=True,
            confidence_level=confidence,
            method=method,
            rng=rng,
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):
        distribution = np.asarray(result.bootstrap_distribution)  # (resamples,)
        supported = distribution[np.isfinite(distribution)]
        if len(supported) < (1.0 - UNSUPPORTED_SHARE) * len(distribution):
            return math.nan, math.nan
        if float(supported.max() - supported.min()) == 0.0:  # degenerate: every resample agrees
            return float(supported[0]), float(supported[0])
        alpha = (1.0 - confidence) / 2
        low, high = (float(q) for q in np.quantile(supported, [alpha, 1.0 - alpha]))
    return low, high


def expanded_confidence(effective_sample_size: float, confidence: float = CONFIDENCE) -> float:
    """The level at which a percentile interval is as wide as a t interval on the effective
    sample: Hesterberg's expanded percentile interval (2015), with the ESS for n.

    A plain percentile interval is too narrow on small samples (it has the plug-in spread and a
    normal quantile): over 150 trials on epsilon-greedy logs at ESS 30 it covered the truth 91%
    of the time where it claimed 95%. At ESS 30 this asks for 96.3%, at ESS 300 for 95.1%."""
    n = max(effective_sample_size, 2.0)
    alpha = (1.0 - confidence) / 2
    z = math.sqrt(n / (n - 1.0)) * float(stats.t.ppf(1.0 - alpha, n - 1.0))
    return min(1.0 - 2.0 * float(stats.norm.sf(z)), 0.999)  # scipy wants a level below 1
