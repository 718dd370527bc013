"""Figures over seeds: the mean with its 95% t interval, and bootstrap intervals (scipy) for a
ratio or a difference of two algorithms' means, paired by seed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 9999
BOOTSTRAP_SEED = 0  # the intervals of a report are the same each time it is written


@dataclass(frozen=True)
class Estimate:
    """A value over seeds and its interval; low and high are None when one seed cannot give
    one (or the values cannot be resampled)."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


NONE = Estimate(None, None, None, 0)


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """The mean and Student's t interval over the values (n-1 degrees of freedom)."""
    xs = np.asarray([float(v) for v in values], dtype=float)
    if xs.size == 0:
        return NONE
    mean = float(xs.mean())
    if xs.size == 1:
        return Estimate(mean, None, None, 1)
    sem = stats.sem(xs)
    if sem == 0:
        return Estimate(mean, mean, mean, int(xs.size))
    low, high = stats.t.interval(confidence, xs.size - 1, loc=mean, scale=sem)
    return Estimate(mean, float(low), float(high), int(xs.size))


def _ratio_of_means(a, b, axis=-1):
    return np.mean(a, axis=axis) / np.mean(b, axis=axis)


def _difference_of_means(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _relative_reduction(a, b, axis=-1):
    """How much lower a's mean is than b's, as a share of b's: (b - a) / b."""
    return 1 - np.mean(a, axis=axis) / np.mean(b, axis=axis)


STATISTICS: dict[str, Callable] = {
    "ratio": _ratio_of_means,
    "difference": _difference_of_means,
    "reduction": _relative_reduction,
}


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], statistic: str, confidence: float = CONFIDENCE
) -> Estimate:
    """`statistic` ("ratio", "difference" or "reduction") of the two means, with a percentile
    bootstrap interval that resamples seeds (a[i] and b[i] ran with the same seed: the same
    data partition and initial model). With two or three seeds the interval is at most the
    spread of the seeds: it says how far the seeds agree, not a population's bounds."""
    xs, ys = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xs.shape != ys.shape:
        raise ValueError(f"paired samples differ in length: {xs.size} and {ys.size}")
    if xs.size == 0:
        return NONE
    fn = STATISTICS[statistic]
    value = float(fn(xs, ys))
    if xs.size == 1 or not np.isfinite(value):
        return Estimate(value, None, None, int(xs.size))
    result = stats.bootstrap(
        (xs, ys),
        fn,
        paired=True,
        vectorized=True,
        confidence_level=confidence,
        n_resamples=RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(BOOTSTRAP_SEED),
    )
    low, high = result.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):
        return Estimate(value, None, None, int(xs.size))
    return Estimate(value, float(low), float(high), int(xs.size))


def band(curves: Sequence[Sequence[float]], confidence: float = CONFIDENCE):
    """Pointwise mean and t interval of equally long curves (one per seed): three arrays."""
    ys = np.asarray(curves, dtype=float)
    mean = ys.mean(axis=0)
    if ys.shape[0] < 2:
        return mean, mean, mean
    sem = stats.sem(ys, axis=0)
    half = sem * stats.t.ppf(0.5 + confidence / 2, ys.shape[0] - 1)
    return mean, mean - half, mean + half
