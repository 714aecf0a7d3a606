"""The declared question and the one procedure that answers it (`study.report.question`), the
knob tests (`study.report.knob_tests`) and the statistics they rest on, checked against
independent computations (brute force, statsmodels)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as scipy_stats
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.power import TTestPower

from study import config
from study.errors import ConfigError
from study.model.nasnet import resolve_weights
from study.report import knob_tests, question, stats
from study.report.analysis import analyse

from .test_report_tables import PAPER, activation_sweep, frame, run


def declare(runs: pd.DataFrame, **asked) -> pd.DataFrame:
    """The runs with `question.*` params on the sweep's parent run, as a sweep logs them."""
    declared = config.Question(**asked).model_dump()
    for key, value in declared.items():
        runs.loc[runs["run_id"] == "sweep-1", f"params.question.{key}"] = str(value)
    return runs


def with_errors(specs: list[dict], error) -> list[dict]:
    """Each run's test error rate set to error(activation, seed)."""
    for spec in specs:
        name, seed = spec["params"]["model.activation"], int(spec["tags"]["seed"])
        spec["metrics"]["test_error_rate"] = error(name, seed)
    return specs


def on_draws(specs: list[dict], draws: int | None) -> list[dict]:
    """Seed s on random backbone draw s mod `draws` (None: its own)."""
    for spec in specs:
        seed = int(spec["tags"]["seed"])
        draw = seed if draws is None else seed % draws
        spec["tags"] |= {"weights": resolve_weights("none", draw).label, "weights_source": "none"}
    return specs


# The sign-flip test


@pytest.mark.parametrize("n", [2, 5, 11])
def test_sign_flip_enumerates_every_pattern_and_counts_ties_as_extreme(n):
    rng = np.random.default_rng(n)
    data = np.round(rng.normal(0.3, 1, n), 1)  # rounded: many patterns tie with the observed
    data[0] = -data[1]
    sums = np.array([np.dot(signs, data) for signs in itertools.product((1, -1), repeat=n)])
    expected = np.mean(np.abs(sums) >= abs(data.sum()) - 1e-9)
    found, exact = stats.sign_flip_test(data)
    assert exact and found == pytest.approx(expected, abs=1e-12)
    greater, _ = stats.sign_flip_test(data, alternative="greater")
    assert greater == pytest.approx(np.mean(sums >= data.sum() - 1e-9), abs=1e-12)


def test_sign_flip_is_exact_up_to_twenty_pairs_and_an_all_zero_mean_gives_one():
    found, exact = stats.sign_flip_test(np.ones(20))
    assert exact and found == pytest.approx(2 / 2**20, rel=1e-12)
    assert stats.sign_flip_test(np.ones(21))[1] is False
    assert stats.sign_flip_test([1.0, -1.0, 2.0, -2.0])[0] == 1.0  # every pattern ties or beats


# The interval for new test images too


def test_the_new_images_interval_takes_every_term_and_is_never_narrower():
    rng = np.random.default_rng(0)
    for _ in range(300):
        seeds, images = rng.integers(2, 21), rng.integers(5, 200)
        rate = rng.uniform(0.02, 0.2)
        table = 100.0 * (
            (rng.uniform(size=(seeds, images)) < rate).astype(float)
            - (rng.uniform(size=(seeds, images)) < rate * rng.uniform(0.5, 1.5)).astype(float)
        )
        by_seed = table.mean(axis=1)
        if by_seed.std(ddof=1) == 0:
            continue
        found = stats.crossed_interval(table)
        seeds_only = scipy_stats.t.ppf(0.975, seeds - 1) * by_seed.std(ddof=1) / math.sqrt(seeds)
        assert found.ci_high - found.mean >= seeds_only - 1e-9


def test_crossed_variance_is_satterthwaite_over_all_three_mean_squares():
    rng = np.random.default_rng(5)
    table = rng.normal(0, 1, (6, 40)) + rng.normal(0, 2, 40)[None, :]  # a strong image effect
    data = pd.DataFrame(
        [(s, i, table[s, i]) for s in range(6) for i in range(40)], columns=["s", "i", "y"]
    )
    squares = anova_lm(smf.ols("y ~ C(s) + C(i)", data).fit())["mean_sq"]
    ms_s, ms_i, ms_e = squares.iloc[0], squares.iloc[1], squares.iloc[2]
    variance, df = stats.crossed_variance(table)
    assert variance == pytest.approx((ms_s + ms_i - ms_e) / 240)
    expected = (ms_s + ms_i - ms_e) ** 2 / (ms_s**2 / 5 + ms_i**2 / 39 + ms_e**2 / (5 * 39))
    assert df == pytest.approx(expected)
    no_images = rng.normal(0, 1, (6, 40))
    no_images -= no_images.mean(axis=0)  # no image effect at all: the seeds' df and variance
    variance, df = stats.crossed_variance(no_images)
    assert df == 5 and variance == pytest.approx(np.var(no_images.mean(axis=1), ddof=1) / 6)


# The declared question


def test_a_sweep_without_a_question_gets_the_default_and_a_declared_one_is_read_back():
    runs = frame(activation_sweep(seeds=range(6)))
    asked, declared = question.declared_question(runs, "sweep-1")
    assert not declared and asked == config.Question()
    declare(runs, compare="activation", family="reference", reference="elu", alpha=0.01)
    asked, declared = question.declared_question(runs, "sweep-1")
    assert declared and (asked.compare, asked.reference, asked.alpha) == ("activation", "elu", 0.01)


def test_a_question_names_what_would_be_valid():
    with pytest.raises(ConfigError, match="question.compare 'colour'.*activation"):
        config.validate({"name": "q", "question": {"compare": "colour"}})
    with pytest.raises(ConfigError, match="question.reference"):
        config.validate({"name": "q", "question": {"compare": "activation", "family": "reference"}})
    swept = {"model.activation": {"type": "choice", "values": ["elu", "relu"]}}
    asked = {"compare": "activation", "family": "reference", "reference": "gelu"}
    with pytest.raises(ConfigError, match="'gelu' is not a value of model.activation"):
        config.validate({"name": "q", "hyperparameters": swept, "question": asked})
    with pytest.raises(ConfigError, match="'dropout' .* is not swept"):
        config.validate({"name": "q", "hyperparameters": swept, "question": {"compare": "dropout"}})


def procedure(specs, **asked) -> dict[str, pd.DataFrame]:
    return analyse("t", declare(frame(specs), **asked), PAPER).tables


def test_no_pair_is_detectable_when_the_gate_does_not_reject():
    # relu worse than elu in every seed by a little, the others level: each pair's own p can be
    # small while the 4-way test of any difference does not reject.
    noise = np.random.default_rng(2).normal(0, 0.004, (4, 6))
    names = ["elu", "relu", "tanh", "sigmoid"]
    specs = with_errors(
        activation_sweep(seeds=range(6)),
        lambda name, seed: 0.04 + noise[names.index(name), seed] + (0.002 if name == "relu" else 0),
    )
    tables = procedure(specs, compare="activation", family="reference", reference="elu")
    gate = tables["omnibus"].set_index("role").loc["primary"]
    family = tables["family"]
    if not gate["rejects"]:
        assert (family["grade"] != "detectable").all()
    assert set(family["grade"]) <= set(question.GRADES)
    weak = family["grade"] == "weak"
    assert (family.loc[weak, "p_permutation"] < 0.05).all()


def test_a_clear_effect_is_detectable_and_the_reference_family_is_the_paper_table():
    tables = procedure(
        activation_sweep(seeds=range(8)), compare="activation", family="reference", reference="elu"
    )
    family = tables["family"].set_index("setting")
    assert list(family.index) == ["relu", "tanh", "sigmoid"] and set(family["against"]) == {"elu"}
    assert (family["grade"] == "detectable").all()
    table6 = tables["activations"].set_index("activation")
    for name in family.index:  # Table 6 runs the same tests
        assert family.loc[name, "p_holm"] == pytest.approx(table6.loc[name, "p_holm"])
    assert "not_beaten" not in tables  # a reference family names no set


@pytest.mark.parametrize("family", ["best", "all_pairs"])
def test_outside_the_not_beaten_set_every_setting_has_a_holm_p_below_alpha(family):
    rng = np.random.default_rng(4)
    offsets = {"elu": 0.0, "relu": 0.001, "tanh": 0.01, "sigmoid": 0.02}
    specs = with_errors(
        activation_sweep(seeds=range(8)),
        lambda name, seed: 0.04 + offsets[name] + rng.normal(0, 0.003),
    )
    tables = procedure(specs, compare="activation", family=family)
    found = tables["not_beaten"]
    pairs = tables["family"]
    outside = found[~found["not_beaten"]]
    assert len(outside) >= 1 and found["not_beaten"].any()
    for row in outside.itertuples():
        involved = pairs[(pairs["setting"] == row.setting) | (pairs["against"] == row.setting)]
        assert (involved["p_holm"] < 0.05).any() and row.p_holm < 0.05


def test_power_is_for_holms_first_step_over_the_family():
    tables = procedure(
        activation_sweep(seeds=range(8)), compare="activation", family="reference", reference="elu"
    )
    row = tables["power"].iloc[0]
    assert row["test_alpha"] == pytest.approx(0.05 / 3)
    effect = TTestPower().solve_power(nobs=8, alpha=0.05 / 3, power=0.8)
    assert row["minimum_detectable_pct"] == pytest.approx(effect * row["difference_std"])


def test_seeds_on_shared_draws_answer_for_these_backbones_with_the_interaction_estimated():
    rng = np.random.default_rng(7)
    swing = {draw: rng.normal(0, 0.01) for draw in range(4)}  # tanh's effect varies by draw
    specs = on_draws(
        with_errors(
            activation_sweep(seeds=range(12)),
            lambda name, seed: (
                0.04 + (swing[seed % 4] if name == "tanh" else 0) + rng.normal(0, 0.002)
            ),
        ),
        draws=4,
    )
    tables = procedure(specs, compare="activation", family="reference", reference="elu")
    assert tables["question"]["answers"].iloc[0] == "these 4 backbones"
    interaction = tables["backbone"].set_index("effect").loc["backbone draw x setting"]
    # the same F from an OLS with seeds nested in draws: setting x draw against the residual
    runs = frame(specs)
    included = runs[runs["tags.run_type"] == "trial"]
    data = pd.DataFrame(
        {
            "y": 100 * included["metrics.test_error_rate"].astype(float),
            "seed": included["tags.seed"],
            "setting": included["params.model.activation"],
            "draw": included["tags.seed"].astype(int) % 4,
        }
    )
    full = smf.ols("y ~ C(seed) + C(setting) + C(setting):C(draw)", data).fit()
    additive = smf.ols("y ~ C(seed) + C(setting)", data).fit()
    f_statistic = ((additive.ssr - full.ssr) / (3 * 3)) / (full.ssr / (3 * (12 - 4)))
    assert interaction["f_statistic"] == pytest.approx(f_statistic)
    assert interaction["p_value"] < 0.05 and 0 <= interaction["share_low"] <= interaction["share"]
    tanh = tables["family"].set_index("setting").loc["tanh"]
    assert np.isfinite(tanh["draw_p_value"]) and tanh["draw_p_value"] >= 2 / 2**4


def test_a_backbone_per_seed_answers_for_another_random_backbone():
    specs = on_draws(activation_sweep(seeds=range(6)), draws=None)
    tables = procedure(specs, compare="activation", family="reference", reference="elu")
    assert tables["question"]["answers"].iloc[0] == "another random backbone"
    assert tables["family"]["draw_p_value"].isna().all()  # the seed-level test already is it


# The knob tests


def knob_runs(dropout_effect: float, seeds=range(3)) -> pd.DataFrame:
    """A full grid of activation x dropout x seeds with known additive effects."""
    rng = np.random.default_rng(1)
    specs = []
    for name, dropout, seed in itertools.product(["elu", "tanh"], [0.1, 0.3, 0.5], seeds):
        spec = run(seed, name, **{"model.dropout": dropout})
        error = 0.04 + (0.01 if name == "tanh" else 0) + dropout_effect * dropout
        spec["metrics"]["test_error_rate"] = error + rng.normal(0, 0.002)
        specs.append(spec)
    runs = frame(specs)
    runs["configuration"] = (
        runs["params.model.activation"].astype(str) + " " + runs["params.model.dropout"].astype(str)
    )
    runs["seed"] = pd.to_numeric(runs["tags.seed"])
    runs["params.activation"] = runs["params.model.activation"]
    runs["params.dropout"] = runs["params.model.dropout"]
    return runs[runs["tags.run_type"] == "trial"].reset_index(drop=True)


def test_knob_tests_are_type_two_f_tests_of_the_seed_blocked_additive_model():
    runs = knob_runs(dropout_effect=0.0)
    values = 100 * runs["metrics.test_error_rate"].astype(float)
    scales = {"activation": "factor", "dropout": "linear"}
    found, adjusted = knob_tests.knob_tests(runs, values, scales)
    data = pd.DataFrame(
        {
            "y": values,
            "activation": runs["params.activation"],
            "dropout": runs["params.dropout"].astype(float),
            "seed": runs["seed"].astype(str),
        }
    )
    expected = anova_lm(smf.ols("y ~ C(activation) + dropout + C(seed)", data).fit(), typ=2)
    rows = found.set_index("knob")
    assert rows.loc["activation", "f_statistic"] == pytest.approx(
        expected.loc["C(activation)", "F"]
    )
    assert rows.loc["dropout", "p_value"] == pytest.approx(expected.loc["dropout", "PR(>F)"])
    total = ((values - values.mean()) ** 2).sum()
    share = expected.loc["C(activation)", "sum_sq"] / total
    assert rows.loc["activation", "unique_share"] == pytest.approx(share)
    assert rows.loc["activation", "rejects"] and not rows.loc["dropout", "rejects"]
    # a full grid: the adjusted mean of a factor's level is its raw mean
    raw = values.groupby(runs["params.activation"]).mean()
    mean, se = adjusted["activation"]["tanh"]
    assert mean == pytest.approx(raw["tanh"]) and se > 0
    assert "lack of fit" in set(found["role"])


def test_a_design_that_cannot_separate_the_knobs_says_so():
    runs = knob_runs(dropout_effect=0.02)
    runs["params.optimizer"] = np.where(runs["params.activation"] == "elu", "adam", "adamax")
    values = 100 * runs["metrics.test_error_rate"].astype(float)
    scales = {"activation": "factor", "optimizer": "factor", "dropout": "linear"}
    found, adjusted = knob_tests.knob_tests(runs, values, scales)
    assert list(found["role"]) == ["not identified"] and not adjusted
    assert "cannot separate" in found["note"].iloc[0]
