"""Spread and paired comparisons over seeds: the numbers behind every "mean ± std" in a report.

Standard deviations are sample standard deviations (ddof 1); intervals are two-sided Student t
intervals for the mean; comparisons are paired t-tests on runs that share a seed (and with it
the split, the head's initialisation and the augmentation). Anything that needs two values or
more is NaN with fewer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Spread:
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Paired:
    n: int  # pairs
    mean_difference: float  # mean of (a - b)
    statistic: float
    p_value: float


def spread(values) -> Spread:
    """Mean, sample std and the 95% t-interval of the finite values."""
    data = _finite(values)
    n = len(data)
    if n == 0:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(data.mean())
    if n == 1:
        return Spread(1, mean, math.nan, math.nan, math.nan)
    std = float(data.std(ddof=1))
    if std == 0:
        return Spread(n, mean, 0.0, mean, mean)
    low, high = stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=std / math.sqrt(n))
    return Spread(n, mean, std, float(low), float(high))


def paired(a, b) -> Paired:
    """Paired t-test of a against b (two-sided); pairs with a missing side are dropped.

    With fewer than two pairs, or differences that never vary (up to rounding: error rates are
    differences of fractions), there is no test: NaN.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    differences = a[keep] - b[keep]
    n = len(differences)
    mean = float(differences.mean()) if n else math.nan
    if n < 2 or np.allclose(differences, differences[0], rtol=1e-9, atol=1e-12):
        return Paired(n, mean, math.nan, math.nan)
    result = stats.ttest_rel(a[keep], b[keep])
    return Paired(n, mean, float(result.statistic), float(result.pvalue))


def _finite(values) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    return data[np.isfinite(data)]
