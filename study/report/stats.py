"""Spread, intervals and comparisons over seeds: the numbers behind every claim in a report.

- Spread: mean and sample standard deviation (ddof 1) over seeds; a Student t interval for
  quantities that are not rates (losses).
- Rates (error rate, accuracy, ...) get a Wilson score interval, which stays inside [0, 1] and
  keeps a positive width when every seed scores the same. Its sample size is the effective
  number of independent images the mean rests on: with per-image outcomes on the one test
  split the seeds share, from the variance of a crossed seeds x images design (Owen's
  estimate: seeds that are better or worse overall and images that every seed gets wrong both
  widen it); with only per-seed rates, never more than one split's images.
- Two settings are compared over the seeds both have by the Nadeau-Bengio corrected resampled
  t-test: the seeds' training sets overlap (each seed re-draws train and validation from the
  same images), so the variance of the differences is inflated by 1/J + n_val/n_train instead
  of 1/J. Several comparisons in one table get Holm's adjustment. The per-image view is an
  exact McNemar test on the fixed test split.

Anything that needs two values or more is NaN with fewer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE


@dataclass(frozen=True)
class Spread:
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Comparison:
    """a - b over the seeds both have, by the corrected resampled t-test."""

    n: int  # pairs (seeds)
    mean_difference: float
    ci_low: float  # of the mean difference, corrected
    ci_high: float
    statistic: float
    p_value: float
    effect_size: float  # mean difference / std of the differences (Cohen's d_z)
    ratio: float  # n_val / n_train used in the correction


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test on the test images: an image counts for the setting that classified
    it correctly in more of the shared seeds; images where both did equally well drop out."""

    images: int
    a_better: int
    b_better: int
    p_value: float


def spread(values) -> Spread:
    """Mean, sample std and the 95% t-interval of the finite values (for non-rates)."""
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


def rate_spread(rates, images) -> Spread:
    """Mean and std of per-seed rates (fractions) with a Wilson interval whose sample size is
    the number of images one seed was scored on, or fewer when the seeds disagree more than
    sampling that many images would explain."""
    data = _finite(rates)
    sizes = _finite(images)
    base = spread(data)
    if base.n == 0 or not len(sizes):
        return base
    n_images = float(sizes.mean())
    p = base.mean
    variance = p * (1 - p) / n_images
    if base.n > 1:
        variance = max(variance, base.std**2 / base.n)
    low, high = _wilson(p, _effective_size(p, variance, n_images, n_images))
    return Spread(base.n, p, base.std, low, high)


def pooled_rate_spread(outcomes: np.ndarray) -> Spread:
    """Rate of a (seeds x images) array of 0/1 outcomes on images every seed was scored on:
    mean and std over seeds, and a Wilson interval at the effective sample size implied by
    Owen's variance estimate for the mean of a crossed random-effects design."""
    outcomes = np.asarray(outcomes, dtype=float)
    seeds, images = outcomes.shape
    per_seed = outcomes.mean(axis=1)
    base = spread(per_seed)
    if seeds == 0 or images == 0:
        return base
    p = float(outcomes.mean())
    if seeds == 1:
        variance = p * (1 - p) / images
    else:
        residual = outcomes - per_seed[:, None] - outcomes.mean(axis=0)[None, :] + p
        ms_error = float((residual**2).sum()) / ((seeds - 1) * (images - 1))
        variance = (
            per_seed.var(ddof=1) / seeds
            + outcomes.mean(axis=0).var(ddof=1) / images
            - ms_error / (seeds * images)
        )
    low, high = _wilson(p, _effective_size(p, variance, images, seeds * images))
    return Spread(base.n, p, base.std, low, high)


def corrected_comparison(a, b, ratio: float) -> Comparison:
    """Nadeau-Bengio corrected resampled t-test of a against b (two-sided) over the pairs
    where both are finite; `ratio` is n_val / n_train of the resampling."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    differences = a[keep] - b[keep]
    n = len(differences)
    mean = float(differences.mean()) if n else math.nan
    nothing = Comparison(n, mean, math.nan, math.nan, math.nan, math.nan, math.nan, ratio)
    if n < 2 or not math.isfinite(ratio):
        return nothing
    std = float(differences.std(ddof=1))
    if std <= 1e-12 * max(1.0, abs(mean)):  # differences that never vary: no test
        return nothing
    scale = math.sqrt((1 / n + ratio) * std**2)
    statistic = mean / scale
    p_value = float(2 * stats.t.sf(abs(statistic), n - 1))
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * scale
    return Comparison(
        n, mean, mean - half, mean + half, statistic, p_value, mean / std, float(ratio)
    )


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values over every finite p-value given (NaN stays NaN)."""
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p_values), math.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        adjusted[finite] = multipletests(p_values[finite], method="holm")[1]
    return adjusted


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact McNemar test from (seeds x images) 0/1 correctness of two settings on the same
    images and seeds."""
    wins_a = np.asarray(correct_a).sum(axis=0)
    wins_b = np.asarray(correct_b).sum(axis=0)
    a_better, b_better = int((wins_a > wins_b).sum()), int((wins_b > wins_a).sum())
    images = len(wins_a)
    if images == 0:
        return McNemar(0, 0, 0, math.nan)
    table = [[0, a_better], [b_better, 0]]
    return McNemar(images, a_better, b_better, float(mcnemar(table, exact=True).pvalue))


def _effective_size(p: float, variance: float, fallback: float, most: float) -> float:
    """The number of independent trials a binomial rate p with this variance rests on."""
    if p <= 0 or p >= 1 or variance <= 0:
        return fallback
    return float(min(max(p * (1 - p) / variance, 1.0), most))


def _wilson(p: float, n: float) -> tuple[float, float]:
    low, high = proportion_confint(p * n, n, alpha=ALPHA, method="wilson")
    # Exact at the ends: no errors at all has its lower bound at 0, not at a rounding error.
    return (0.0 if p <= 0 else float(low)), (1.0 if p >= 1 else float(high))


def _finite(values) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    return data[np.isfinite(data)]
