"""The report's statistics on fixed inputs, each against scipy or statsmodels or against the
definition written out here (every sign pattern, every within-seed permutation)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as scipy_stats
from scipy.special import gamma
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

from study.report import stats

A = np.array([5.0, 6.0, 4.0, 7.0, 6.5, 5.5, 6.0])
B = np.array([3.0, 3.5, 4.5, 4.0, 4.5, 6.0, 3.0])


def every_sign_pattern_p(differences: np.ndarray) -> float:
    """Two-sided sign-flip p-value by enumerating all 2^n sign patterns."""
    observed = abs(differences.mean())
    means = [
        abs((differences * np.array(signs)).mean())
        for signs in itertools.product((1, -1), repeat=len(differences))
    ]
    return float(np.mean(np.array(means) >= observed - 1e-12))


def test_paired_comparison_is_the_exact_sign_flip_test_and_the_paired_t_interval():
    found = stats.paired_comparison(A, B)
    differences = A - B
    assert found.exact and found.n == 7
    assert found.p_value == pytest.approx(every_sign_pattern_p(differences))
    scipy_exact = scipy_stats.permutation_test(
        (A, B),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=np.inf,
        vectorized=True,
    )
    assert found.p_value == pytest.approx(scipy_exact.pvalue)
    interval = scipy_stats.ttest_rel(A, B).confidence_interval(0.95)
    assert (found.ci_low, found.ci_high) == pytest.approx((interval.low, interval.high))
    assert found.mean_difference == pytest.approx(differences.mean())
    assert found.std_difference == pytest.approx(differences.std(ddof=1))


def test_the_sign_flip_test_draws_permutations_when_there_are_too_many():
    rng = np.random.default_rng(4)
    differences = rng.normal(0.3, 1.0, 22)  # beyond EXACT_SIGN_FLIP_PAIRS: drawn
    found, exact = stats.sign_flip_test(differences)
    assert not exact
    assert found == pytest.approx(every_sign_pattern_p(differences), abs=0.02)
    again, _ = stats.sign_flip_test(differences)
    assert again == found  # the draws are seeded: a rebuild gives the same p-value


def test_the_smallest_p_value_of_the_exact_test_is_two_sign_patterns():
    assert stats.smallest_p_value(5) == pytest.approx(2 / 32)
    all_positive = stats.paired_comparison([3, 4, 5, 6, 7], [1, 1, 1, 1, 1])
    assert all_positive.p_value == pytest.approx(2 / 32)
    assert stats.smallest_p_value(5) > stats.ALPHA  # 5 seeds can never reach 0.05


def test_hedges_gz_corrects_dz_with_the_exact_gamma_factor():
    differences = A - B
    df = len(differences) - 1
    correction = gamma(df / 2) / (math.sqrt(df / 2) * gamma((df - 1) / 2))
    dz = differences.mean() / differences.std(ddof=1)
    assert stats.hedges_gz(differences) == pytest.approx(dz * correction)
    assert stats.paired_comparison(A, B).effect_size == pytest.approx(dz * correction)
    three = np.array([1.0, 2.0, 4.0])
    assert stats.hedges_gz(three) / (three.mean() / three.std(ddof=1)) == pytest.approx(
        1 / math.sqrt(math.pi), rel=1e-9
    )  # J(2) = Gamma(1) / Gamma(1/2): d_z is 1.77 times too large at 3 seeds
    assert math.isnan(stats.hedges_gz([1.0, 2.0]))


def test_one_pair_has_no_test_and_a_constant_difference_no_interval():
    one = stats.paired_comparison([0.1], [0.2])
    assert one.n == 1 and math.isnan(one.p_value) and math.isnan(one.ci_low)
    constant = stats.paired_comparison([0.3, 0.4, 0.5], [0.1, 0.2, 0.3])
    assert constant.mean_difference == pytest.approx(0.2)
    assert math.isnan(constant.ci_low) and math.isnan(constant.effect_size)
    assert constant.p_value == pytest.approx(2 / 8)


def test_holm_keeps_untestable_comparisons_in_the_family():
    adjusted = stats.holm([0.01, math.nan, 0.03])
    # family of 3: sorted 0.01, 0.03 times 3, 2 -> 0.03, 0.06
    assert adjusted[[0, 2]] == pytest.approx([0.03, 0.06])
    assert math.isnan(adjusted[1])
    full = multipletests([0.01, 1.0, 0.03], method="holm")[1]
    assert adjusted[[0, 2]] == pytest.approx(full[[0, 2]])
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def seed_blocked_frame(table: np.ndarray) -> pd.DataFrame:
    seeds, settings = table.shape
    return pd.DataFrame(
        [(s, c, table[s, c]) for s in range(seeds) for c in range(settings)],
        columns=["seed", "setting", "y"],
    )


def test_omnibus_f_is_the_seed_blocked_anova_and_p_enumerates_within_seed_permutations():
    table = np.array([[3.1, 2.4, 4.0], [2.8, 2.9, 3.7], [3.5, 2.2, 4.4]])
    found = stats.omnibus(table)
    anova = anova_lm(smf.ols("y ~ C(setting) + C(seed)", seed_blocked_frame(table)).fit())
    assert found.f_statistic == pytest.approx(anova.loc["C(setting)", "F"])
    assert (found.df_settings, found.df_residual) == (2, 4)
    assert found.exact  # 3!^3 = 216 permutations

    def f_of(rows: np.ndarray) -> float:
        frame = seed_blocked_frame(rows)
        return anova_lm(smf.ols("y ~ C(setting) + C(seed)", frame).fit()).loc["C(setting)", "F"]

    null = [
        f_of(np.array([table[s][list(order)] for s, order in enumerate(orders)]))
        for orders in itertools.product(itertools.permutations(range(3)), repeat=3)
    ]
    expected = np.mean(np.array(null) >= found.f_statistic - 1e-9)
    assert found.p_value == pytest.approx(expected)


def test_omnibus_needs_two_seeds_and_two_settings():
    assert math.isnan(stats.omnibus(np.ones((1, 3))).p_value)
    assert math.isnan(stats.omnibus(np.ones((3, 1))).p_value)
    assert math.isnan(stats.omnibus(np.ones((3, 3))).p_value)  # nothing varies


def test_power_on_a_known_variance_matches_the_noncentral_t():
    std, pairs = 2.0, 10
    smallest = stats.minimum_detectable_difference(std, pairs)
    critical = scipy_stats.t.ppf(0.975, pairs - 1)
    shift = smallest / std * math.sqrt(pairs)
    power = scipy_stats.nct.sf(critical, pairs - 1, shift) + scipy_stats.nct.cdf(
        -critical, pairs - 1, shift
    )
    assert power == pytest.approx(0.80, abs=1e-4)

    def power_at(n: int, difference: float) -> float:
        shift = difference / std * math.sqrt(n)
        critical = scipy_stats.t.ppf(0.975, n - 1)
        return scipy_stats.nct.sf(critical, n - 1, shift) + scipy_stats.nct.cdf(
            -critical, n - 1, shift
        )

    needed = stats.seeds_needed(0.5, std)
    assert power_at(needed, 0.5) >= 0.80 > power_at(needed - 1, 0.5)
    # Five seeds: the exact sign-flip test never reaches 0.05, so nothing is detectable, and
    # a huge difference still needs the six seeds that can reach it.
    assert math.isinf(stats.minimum_detectable_difference(std, 5))
    assert stats.seeds_needed(100.0, std) == 6


def wilson(p: float, n: float, quantile: float) -> tuple[float, float]:
    """The Wilson score interval, written out, at a given quantile."""
    z = quantile
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


NORMAL = scipy_stats.norm.ppf(0.975)


def test_rate_intervals_are_wilson_on_one_splits_images_and_stay_inside_0_1():
    perfect = stats.rate_spread([0.0] * 5, [360] * 5)
    assert perfect.ci_low == 0 and perfect.ci_high == pytest.approx(wilson(0.0, 360, NORMAL)[1])
    assert perfect.ci_high > 0  # every seed agrees, yet the interval keeps a width
    close = stats.rate_spread([0.10, 0.12, 0.11], [360] * 3)
    assert (close.ci_low, close.ci_high) == pytest.approx(wilson(0.11, 360, NORMAL))
    rates = np.array([0.01, 0.30, 0.15])  # seeds disagree more than 360 images explain
    spread_out = stats.rate_spread(rates, [360] * 3)
    n_eff = rates.mean() * (1 - rates.mean()) / (rates.var(ddof=1) / 3)
    assert n_eff < 360
    # the seed variance sets the width, so the quantile is t's with the seeds' 2 df
    quantile = scipy_stats.t.ppf(0.975, 2)
    assert (spread_out.ci_low, spread_out.ci_high) == pytest.approx(
        wilson(rates.mean(), n_eff, quantile)
    )


def test_pooled_outcomes_count_an_image_once_when_the_seeds_agree_on_it():
    rng = np.random.default_rng(1)
    errors = (rng.random(200) < 0.1).astype(float)
    p = errors.mean()
    one = stats.pooled_rate_spread(errors[None, :])
    assert (one.ci_low, one.ci_high) == pytest.approx(wilson(p, 200, NORMAL))
    same = stats.pooled_rate_spread(np.tile(errors, (5, 1)))  # five seeds, identical errors
    # no seed variance: only the images' part, with their 199 df
    quantile = scipy_stats.t.ppf(0.975, 199)
    assert (same.ci_low, same.ci_high) == pytest.approx(wilson(p, 199, quantile), rel=1e-6)
    independent = stats.pooled_rate_spread((rng.random((5, 200)) < p).astype(float))
    assert independent.ci_high - independent.ci_low < one.ci_high - one.ci_low
    none = stats.pooled_rate_spread(np.zeros((5, 200)))
    assert none.ci_low == 0 and none.ci_high == pytest.approx(wilson(0.0, 200, NORMAL)[1])


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_the_exact_sign_flip_p_value_is_scipys(alternative):
    """Every sign pattern is enumerated without scipy's per-call set-up: the p-value equals
    scipy's `permutation_test` on differences with ties, zeros, a constant difference and
    arbitrary floats (two-sided: the share of patterns whose |mean| reaches the observed one,
    which is scipy's doubled smaller tail for a symmetric null)."""
    rng = np.random.default_rng(5)
    cases = [rng.normal(size=n) for n in range(2, 15)]
    cases += [rng.integers(-3, 4, size=n).astype(float) for n in (3, 6, 10, 14)]
    cases += [np.full(5, 0.1), np.array([0.0, 0.0, 1.0]), np.array([0.1, 0.2, 0.3]) * 3]
    # flipping 0.1, 0.2 and -0.3 keeps the sum in exact arithmetic, not in floating point
    cases += [np.array([0.1, 0.2, -0.3, 0.5]), np.array([0.7, 0.1, 0.2, -0.3, 0.4])]
    for differences in cases:
        expected = scipy_stats.permutation_test(
            (differences,),
            lambda x, axis: np.mean(x, axis=axis),
            permutation_type="samples",
            vectorized=True,
            n_resamples=stats.PERMUTATIONS,
            alternative=alternative,
            rng=0,
        ).pvalue
        found, exact = stats.sign_flip_test(differences, alternative=alternative)
        assert exact and found == pytest.approx(float(expected), abs=1e-15), differences
