"""Spread, intervals and comparisons over seeds: the numbers behind every claim in a report.

The question a comparison answers: "trained again on this data, would A beat B?". The test
split is drawn once and shared by every seed; a seed re-draws train and validation, initialises
the head and orders the augmented views. So the seeds are the independent units, and the
per-seed differences of two settings (paired by seed) are i.i.d. draws of that retraining.

- Spread: mean and sample standard deviation (ddof 1) over seeds; a Student t interval for
  quantities that are not rates (losses).
- Rates (error rate, accuracy, ...) get a Wilson score interval, which stays inside [0, 1] and
  keeps a positive width when every seed scores the same. Its sample size is the effective
  number of independent images the mean rests on: with per-image outcomes on the shared test
  split, from the variance of a crossed seeds x images design (Owen's estimate: seeds that are
  better or worse overall and images that every seed gets wrong both widen it), which answers
  "on new seeds and new images"; with only per-seed rates, never more than one split's images.
  Wherever a seed variance enters, the quantile is Student t at its degrees of freedom
  (Satterthwaite's over every mean square of the crossed variance), not the normal 1.96.
- Two settings are compared over the seeds both have: an exact sign-flip permutation test of
  the mean per-seed difference (every one of the 2^n sign patterns up to
  EXACT_SIGN_FLIP_PAIRS, ties counted as extreme, else a fixed-seed Monte Carlo sample), the
  difference's t interval from the same seed-level variability (df = pairs - 1), and Hedges'
  g_z, the small-sample corrected standardised difference. With per-image outcomes, a second
  interval answers "... and on new images too": the crossed (Owen) variance of the seeds x
  images table of differences, never narrower than the seeds-only interval. The Nadeau-Bengio
  correction is not used: for the first question the seed differences are i.i.d. and need no
  inflation; for the second, inflating the seed variance cannot add the image variance that a
  single test split leaves out of it. McNemar's test on pooled images is not used either:
  every discordant image depends on the same trained models, so its images are not
  independent.
- The comparisons of one table form one fixed family, Holm-adjusted together; a comparison
  that cannot be tested still counts in the family's size.
- Before any winner: a seed-blocked permutation F test of any difference among settings
  (configuration labels permuted within each seed), and the power of the paired test at the
  level the report uses: the smallest difference 80% power would detect, and the seeds a
  given difference needs.
- Random backbone draws shared by several seeds (seeds nested in draws): the one-way
  random-effects ANOVA of the per-seed values by draw and the draw's share of the variance of
  a seed's value, with its F-based interval (`study.report.question` uses it for the draw and
  for the draw x setting interaction).

Anything that needs two values or more is NaN with fewer.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.proportion import proportion_confint

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.80
# scipy's permutation_test is exact when n_resamples reaches the number of distinct
# permutations ((k!)^n for k settings over n seeds); up to this many it enumerates them all,
# beyond it it draws this many at random with PERMUTATION_SEED.
PERMUTATIONS = 2**14
PERMUTATION_SEED = 0
EXACT_SIGN_FLIP_PAIRS = 20  # up to this many pairs a sign-flip test enumerates all 2^n patterns


@dataclass(frozen=True)
class Spread:
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Comparison:
    """a - b over the seeds both have: would a beat b if both were trained again on this
    data? The interval is the t interval of the per-seed differences (df = n - 1), the p-value
    the two-sided sign-flip permutation test of their mean."""

    n: int  # pairs (seeds)
    mean_difference: float
    std_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    exact: bool  # the permutation test enumerated every sign pattern
    effect_size: float  # Hedges' g_z: mean / std of the differences, small-sample corrected


@dataclass(frozen=True)
class CrossedInterval:
    """The mean of a (seeds x images) table with the crossed (Owen) variance: new seeds and
    new images both vary; t quantile at Satterthwaite's degrees of freedom."""

    mean: float
    ci_low: float
    ci_high: float
    df: float


@dataclass(frozen=True)
class Omnibus:
    """Any difference among k settings over n seeds that every one has, seed as a block: the
    two-way (setting + seed) ANOVA F, its p-value from permuting the settings within seeds."""

    settings: int
    seeds: int
    f_statistic: float
    df_settings: int
    df_residual: int
    p_value: float
    exact: bool


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
    sampling that many images would explain (then at the t quantile of the seeds' df)."""
    data = _finite(rates)
    sizes = _finite(images)
    base = spread(data)
    if base.n == 0 or not len(sizes):
        return base
    n_images = float(sizes.mean())
    p = base.mean
    variance, df = p * (1 - p) / n_images, math.inf
    if base.n > 1 and base.std**2 / base.n > variance:
        variance, df = base.std**2 / base.n, base.n - 1
    low, high = _wilson(p, _effective_size(p, variance, n_images, n_images), df)
    return Spread(base.n, p, base.std, low, high)


def pooled_rate_spread(outcomes: np.ndarray) -> Spread:
    """Rate of a (seeds x images) array of 0/1 outcomes on images every seed was scored on:
    mean and std over seeds, and a Wilson interval at the effective sample size implied by
    Owen's variance estimate for the mean of a crossed random-effects design."""
    outcomes = np.asarray(outcomes, dtype=float)
    seeds, images = outcomes.shape
    base = spread(outcomes.mean(axis=1))
    if seeds == 0 or images == 0:
        return base
    p = float(outcomes.mean())
    if seeds == 1:
        variance, df = p * (1 - p) / images, math.inf
    else:
        variance, df = crossed_variance(outcomes)
    low, high = _wilson(p, _effective_size(p, variance, images, seeds * images), df)
    return Spread(base.n, p, base.std, low, high)


def crossed_variance(table: np.ndarray) -> tuple[float, float]:
    """The variance of the mean of a (seeds x images) table with seeds and images both random,
    and its Satterthwaite degrees of freedom. With the mean squares of seeds (MS_s), images
    (MS_i) and the residual (MS_e) of the two-way table, the moment estimate is (MS_s +
    max(MS_i - MS_e, 0)) / (seeds x images): the seeds-only variance of the mean, MS_s /
    (seeds x images), plus the images' component, read as 0 when negative. The degrees of
    freedom take every mean square that enters (Satterthwaite), so with no image component
    they are the seeds' (seeds - 1)."""
    table = np.asarray(table, dtype=float)
    seeds, images = table.shape
    grand = float(table.mean())
    by_seed, by_image = table.mean(axis=1), table.mean(axis=0)
    residual = table - by_seed[:, None] - by_image[None, :] + grand
    ms_seeds = images * float(by_seed.var(ddof=1))
    ms_images = seeds * float(by_image.var(ddof=1))
    ms_error = float((residual**2).sum()) / ((seeds - 1) * (images - 1))
    cells = seeds * images
    if ms_images <= ms_error:  # no image component: the seeds' variance alone, if any
        return ms_seeds / cells, float(seeds - 1) if ms_seeds > 0 else math.inf
    combined = ms_seeds + ms_images - ms_error
    denominator = (
        ms_seeds**2 / (seeds - 1)
        + ms_images**2 / (images - 1)
        + ms_error**2 / ((seeds - 1) * (images - 1))
    )
    df = combined**2 / denominator if denominator > 0 else math.inf
    return combined / cells, df


def crossed_interval(table: np.ndarray) -> CrossedInterval:
    """The mean of a (seeds x images) table (e.g. per-image differences of two settings'
    errors, paired by seed) with its t interval from the crossed variance, never narrower than
    the seeds-only t interval of the same table's seed means (the images can only add
    uncertainty: where Satterthwaite's larger df would make it narrower, the seeds-only
    interval stands); NaN with fewer than two seeds or images."""
    table = np.asarray(table, dtype=float)
    seeds, images = table.shape
    mean = float(table.mean()) if table.size else math.nan
    if seeds < 2 or images < 2:
        return CrossedInterval(mean, math.nan, math.nan, math.nan)
    variance, df = crossed_variance(table)
    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * math.sqrt(max(variance, 0.0))
    seeds_only = (
        float(stats.t.ppf(1 - ALPHA / 2, seeds - 1))
        * float(table.mean(axis=1).std(ddof=1))
        / math.sqrt(seeds)
    )
    if half < seeds_only:
        half, df = seeds_only, float(seeds - 1)
    return CrossedInterval(mean, mean - half, mean + half, df)


def paired_comparison(a, b) -> Comparison:
    """a - b over the pairs (seeds) where both are finite: the exact sign-flip permutation
    test, the t interval of the mean difference and Hedges' g_z. One pair: no test; a
    difference that never varies keeps its test but has no interval or effect size."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    differences = a[keep] - b[keep]
    n = len(differences)
    mean = float(differences.mean()) if n else math.nan
    if n < 2:
        return Comparison(n, mean, math.nan, math.nan, math.nan, math.nan, False, math.nan)
    std = float(differences.std(ddof=1))
    p_value, exact = sign_flip_test(differences)
    if std <= 1e-12 * max(1.0, abs(mean)):  # the same difference in every seed
        return Comparison(n, mean, 0.0, math.nan, math.nan, p_value, exact, math.nan)
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * std / math.sqrt(n)
    return Comparison(
        n, mean, std, mean - half, mean + half, p_value, exact, hedges_gz(differences)
    )


def sign_flip_test(differences, alternative: str = "two-sided") -> tuple[float, bool]:
    """p-value of the mean of paired differences under the null that each difference's sign
    is a coin flip, and whether it was exact. Up to EXACT_SIGN_FLIP_PAIRS pairs every one of
    the 2^n sign patterns is enumerated, and a pattern whose mean equals the observed one
    (within rounding) counts as at least as extreme; beyond, PERMUTATIONS patterns are drawn
    with PERMUTATION_SEED (scipy's `permutation_test`). `alternative` "greater": the mean is
    above 0; "two-sided": |mean| at least the observed |mean|."""
    data = _finite(differences)
    if len(data) < 2:
        return math.nan, False
    if len(data) <= EXACT_SIGN_FLIP_PAIRS:
        return _exact_sign_flip_p(data, alternative), True
    result = stats.permutation_test(
        (data,),
        _mean,
        permutation_type="samples",
        vectorized=True,
        n_resamples=PERMUTATIONS,
        alternative=alternative,
        rng=PERMUTATION_SEED,
    )
    return float(result.pvalue), False


def _exact_sign_flip_p(data: np.ndarray, alternative: str) -> float:
    """The share of all 2^n sign patterns whose sum is at least as extreme as the observed
    one. The sums are the outer sum of the sums of the two halves' patterns (2^n values from
    two short lists, a few MB at n = 20)."""
    half = len(data) // 2
    sums = np.add.outer(_pattern_sums(data[:half]), _pattern_sums(data[half:])).ravel()
    observed = float(data.sum())
    tolerance = 1e-9 * float(np.abs(data).sum())  # the same sum added in another order
    if alternative == "greater":
        extreme = sums >= observed - tolerance
    elif alternative == "less":
        extreme = sums <= observed + tolerance
    else:
        extreme = np.abs(sums) >= abs(observed) - tolerance
    return float(np.count_nonzero(extreme) / len(sums))


def _pattern_sums(data: np.ndarray) -> np.ndarray:
    """The sum of `data` under each of its 2^n sign patterns."""
    return _sign_patterns(len(data)) @ data


@functools.cache
def _sign_patterns(n: int) -> np.ndarray:
    return np.array(list(itertools.product((1.0, -1.0), repeat=n))).reshape(2**n, n)


def smallest_p_value(pairs: int) -> float:
    """The smallest two-sided p-value the exact sign-flip test can give with this many pairs:
    2 of the 2^n sign patterns are as extreme as the observed one."""
    return min(1.0, 2.0 / 2**pairs) if pairs > 0 else math.nan


def hedges_gz(differences) -> float:
    """Mean over std of paired differences (d_z) times Hedges' exact small-sample correction
    J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2)), df = n - 1; NaN below three pairs."""
    data = _finite(differences)
    df = len(data) - 1
    std = float(data.std(ddof=1)) if df > 0 else math.nan
    if df < 2 or not std > 0:
        return math.nan
    correction = math.exp(math.lgamma(df / 2) - math.lgamma((df - 1) / 2)) / math.sqrt(df / 2)
    return float(data.mean()) / std * correction


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values of one fixed family: every entry is a planned comparison, and
    one that could not be tested (NaN) still counts in the family's size (as p = 1)."""
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p_values), math.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        family = np.where(finite, p_values, 1.0)
        adjusted[finite] = multipletests(family, method="holm")[1][finite]
    return adjusted


def omnibus(table: np.ndarray) -> Omnibus:
    """Seed-blocked test of any difference among the columns (settings) of a (seeds x
    settings) table with no gaps: the F of the two-way additive ANOVA, its p-value from
    permuting each seed's values among the settings (exact when (k!)^n is small enough). NaN
    with fewer than two settings or seeds, or no variation within seeds."""
    table = np.asarray(table, dtype=float)
    seeds, settings = table.shape if table.ndim == 2 else (0, 0)
    df_settings, df_residual = settings - 1, (settings - 1) * (seeds - 1)
    nothing = Omnibus(settings, seeds, math.nan, df_settings, df_residual, math.nan, False)
    if seeds < 2 or settings < 2:
        return nothing
    observed = _blocked_f(*table.T, axis=-1)
    if not np.isfinite(observed):
        return nothing
    result = stats.permutation_test(
        tuple(table.T),
        _blocked_f,
        permutation_type="samples",
        vectorized=True,
        n_resamples=PERMUTATIONS,
        alternative="greater",
        rng=PERMUTATION_SEED,
        # about 8 MB of permuted tables at a time, not all of them at once (the same draws)
        batch=max(1, 2**20 // (seeds * settings)),
    )
    exact = math.factorial(settings) ** seeds <= PERMUTATIONS
    return Omnibus(
        settings, seeds, float(observed), df_settings, df_residual, float(result.pvalue), exact
    )


@dataclass(frozen=True)
class VarianceShare:
    """How much of the variance of some units (seeds) their groups (backbone draws) account
    for: the one-way random-effects ANOVA, units nested in groups."""

    groups: int
    units: int
    f_statistic: float
    df_groups: int
    df_residual: int
    p_value: float
    between: float  # the groups' variance component (moment estimate, negative read as 0)
    within: float  # the units' variance within a group (the residual mean square)
    share: float  # between / (between + within)
    share_low: float  # its 95% interval (exact for equal group sizes, from the F distribution)
    share_high: float


def variance_share(values, groups) -> VarianceShare:
    """The one-way random-effects ANOVA of `values` by `groups` (one label per value): F and
    its p-value from the F distribution, the between-group variance component from the mean
    squares (MSB - MSW) / n0, with n0 the unbalanced design's effective group size, and its
    share of the total with a 95% interval: the ratio of the components has the interval
    ((F / F_hi - 1) / n0, (F / F_lo - 1) / n0), F_lo and F_hi the F distribution's 2.5% and
    97.5% points (exact when the groups are the same size, an approximation otherwise), each end
    read as 0 when negative and turned into a share. NaN with fewer than two groups, or no
    spread within them."""
    values = np.asarray(values, dtype=float)
    labels, index = np.unique(np.asarray(groups), return_inverse=True)
    k, n = len(labels), len(values)
    nothing = VarianceShare(k, n, *(math.nan, k - 1, n - k), *(math.nan,) * 6)
    if k < 2 or n - k < 1:
        return nothing
    counts = np.bincount(index)
    means = np.bincount(index, weights=values) / counts
    within = float(((values - means[index]) ** 2).sum() / (n - k))
    between_square = float((counts * (means - values.mean()) ** 2).sum() / (k - 1))
    n0 = (n - (counts**2).sum() / n) / (k - 1)
    if not within > 0:
        return nothing
    return share_of_mean_squares(k, n, between_square, within, k - 1, n - k, n0)


def share_of_mean_squares(
    groups: int,
    units: int,
    between_square: float,
    within: float,
    df_groups: int,
    df_residual: int,
    n0: float,
) -> VarianceShare:
    """A random effect from its mean square `between_square` and the residual's `within` (on
    `df_groups` and `df_residual` df, `n0` units per level): F and its p-value, the component
    (MS - MS_residual) / n0 read as 0 when negative, its share of the two, and the share's
    F-based 95% interval (see `variance_share`)."""
    f_statistic = between_square / within
    bounds = [
        max((f_statistic / float(stats.f.ppf(q, df_groups, df_residual)) - 1) / n0, 0.0)
        for q in (1 - ALPHA / 2, ALPHA / 2)
    ]
    between = max((between_square - within) / n0, 0.0)
    return VarianceShare(
        groups,
        units,
        f_statistic,
        df_groups,
        df_residual,
        float(stats.f.sf(f_statistic, df_groups, df_residual)),
        between,
        within,
        between / (between + within),
        *(ratio / (1 + ratio) for ratio in bounds),
    )


def minimum_detectable_difference(
    std: float, pairs: int, alpha: float = ALPHA, power: float = POWER
) -> float:
    """The smallest mean paired difference that a two-sided paired test at level `alpha` (the
    level the report's test uses: Holm's first step is alpha / family) over `pairs` seeds
    detects with `power`, for differences of this std (statsmodels `TTestPower`); infinite when
    the exact sign-flip test cannot reach `alpha` at all."""
    if pairs < 2 or not std > 0:
        return math.nan
    if smallest_p_value(pairs) > alpha:
        return math.inf
    effect = TTestPower().solve_power(
        effect_size=None, nobs=pairs, alpha=alpha, power=power, alternative="two-sided"
    )
    return float(effect) * std


def seeds_needed(
    difference: float, std: float, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """The seeds (pairs) a two-sided paired test at level `alpha` needs to detect a mean
    difference with `power` when the differences have this std: the paired t-test's answer,
    and never fewer than the exact sign-flip test needs to reach `alpha` at all."""
    if not std > 0 or not difference:
        return None
    effect = abs(difference) / std
    fewest = next(n for n in range(2, 64) if smallest_p_value(n) <= alpha)
    if TTestPower().power(effect_size=effect, nobs=fewest, alpha=alpha) >= power:
        return fewest  # (the solver cannot go below the fewest seeds that can reject at all)
    found = TTestPower().solve_power(effect_size=effect, nobs=None, alpha=alpha, power=power)
    return math.ceil(float(found))


def _mean(data: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(data, axis=axis)


def _blocked_f(*settings: np.ndarray, axis: int = -1) -> np.ndarray:
    """F of settings in a two-way additive ANOVA with seed as a block; each argument holds
    one setting's values over the seeds along `axis`."""
    table = np.stack([np.moveaxis(values, axis, -1) for values in settings], axis=-1)
    seeds, count = table.shape[-2], table.shape[-1]
    grand = table.mean(axis=(-2, -1), keepdims=True)
    by_seed = table.mean(axis=-1, keepdims=True)
    by_setting = table.mean(axis=-2, keepdims=True)
    ss_settings = seeds * ((by_setting - grand) ** 2).sum(axis=(-2, -1))
    ss_residual = ((table - by_seed - by_setting + grand) ** 2).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (ss_settings / (count - 1)) / (ss_residual / ((count - 1) * (seeds - 1)))


def _effective_size(p: float, variance: float, fallback: float, most: float) -> float:
    """The number of independent trials a binomial rate p with this variance rests on."""
    if p <= 0 or p >= 1 or variance <= 0:
        return fallback
    return float(min(max(p * (1 - p) / variance, 1.0), most))


def _wilson(p: float, n: float, df: float = math.inf) -> tuple[float, float]:
    """Wilson interval with the normal quantile replaced by Student t's at `df`."""
    quantile = float(stats.t.ppf(1 - ALPHA / 2, df))
    alpha = float(2 * stats.norm.sf(quantile))  # the level whose normal quantile is t's
    low, high = proportion_confint(p * n, n, alpha=alpha, method="wilson")
    # Exact at the ends: no errors at all has its lower bound at 0, not at a rounding error.
    return (0.0 if p <= 0 else float(low)), (1.0 if p >= 1 else float(high))


def _finite(values) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    return data[np.isfinite(data)]
