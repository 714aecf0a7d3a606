"""The committed reports can be recomputed from the files they ship: each declared comparison's
sign-flip p-value from `runs.csv` by enumerating every sign pattern (independent code), Holm and
the gate's F with statsmodels, the not-beaten set from the same family's tests, and the new
images interval from `outcomes.csv.gz`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

REPORTS = Path(__file__).resolve().parents[1] / "reports"
DECLARED = sorted(path.parent for path in REPORTS.glob("*/question.csv"))


def every_sign_pattern_p(differences: np.ndarray) -> float:
    """Two-sided: the share of all 2^n sign patterns whose |sum| reaches the observed |sum|, a
    pattern equal to it (within rounding) counted in."""
    n = len(differences)
    signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.int8)
    sums = signs @ differences
    return float(np.mean(np.abs(sums) >= abs(differences.sum()) - 1e-9))


def per_seed(folder: Path) -> tuple[pd.DataFrame, pd.Series, str]:
    """(seed x setting) table of the question's metric from runs.csv alone."""
    asked = pd.read_csv(folder / "question.csv").iloc[0]
    runs = pd.read_csv(folder / "runs.csv")
    runs = runs[runs["included"]]
    if asked["compare"] == "configurations":
        setting = runs["configuration"]
    else:  # a knob's values, the other knobs at the best configuration's
        best = runs[runs[asked["compare"]].astype(str) == str(asked["best"])]
        setting = runs[asked["compare"]].astype(str)
        others = [
            k
            for k in ("activation", "dropout", "head_width", "optimizer", "decay_rate")
            if k != asked["compare"] and k in runs and runs[k].nunique() > 1
        ]
        keep = np.ones(len(runs), dtype=bool)
        for knob in others:
            keep &= (runs[knob] == best[knob].iloc[0]).to_numpy()
        runs, setting = runs[keep], setting[keep]
    table = runs.assign(setting=setting.astype(str)).pivot_table(
        index="seed", columns="setting", values=asked["metric_column"]
    )
    return table, asked, asked["metric_column"]


@pytest.mark.parametrize("folder", DECLARED, ids=lambda path: path.name)
def test_each_declared_comparison_is_recomputed_from_runs_csv(folder):
    table, asked, _ = per_seed(folder)
    family = pd.read_csv(folder / "comparisons.csv")
    assert len(family) >= 1
    for row in family.itertuples():
        both = table[[str(row.setting), str(row.against)]].dropna()
        differences = (both.iloc[:, 0] - both.iloc[:, 1]).to_numpy()
        assert len(differences) == row.pairs
        assert differences.mean() == pytest.approx(row.difference_pct, abs=1e-9)
        if 2 <= row.pairs <= 20:
            assert every_sign_pattern_p(differences) == pytest.approx(row.p_permutation, abs=1e-9)
        elif row.pairs < 2:
            assert np.isnan(row.p_permutation)  # one shared seed: no test
    tested = family["p_permutation"].fillna(1.0)  # an untested comparison counts, as p = 1
    holm = multipletests(tested, method="holm")[1]
    shown = family["p_holm"].to_numpy()
    assert holm[~np.isnan(shown)] == pytest.approx(shown[~np.isnan(shown)], abs=1e-12)


@pytest.mark.parametrize("folder", DECLARED, ids=lambda path: path.name)
def test_the_gate_is_the_seed_blocked_anova_f(folder):
    table, asked, _ = per_seed(folder)
    gate = pd.read_csv(folder / "omnibus.csv").set_index("role").loc["primary"]
    complete = table.dropna(axis=0, how="any")
    if len(complete) < 2:  # one seed: no test
        assert np.isnan(gate["f_statistic"]) and np.isnan(gate["p_permutation"])
        return
    long = complete.stack().rename("y").reset_index()
    long["seed"] = long["seed"].astype(str)
    fit = smf.ols("y ~ C(setting) + C(seed)", long).fit()
    assert anova_lm(fit, typ=2).loc["C(setting)", "F"] == pytest.approx(gate["f_statistic"])
    assert gate["seeds"] == len(complete) and gate["settings"] == complete.shape[1]


@pytest.mark.parametrize("folder", DECLARED, ids=lambda path: path.name)
def test_outside_the_not_beaten_set_a_holm_p_is_below_alpha_in_the_same_family(folder):
    asked = pd.read_csv(folder / "question.csv").iloc[0]
    path = folder / "not_beaten.csv"
    if asked["family"] == "reference":
        assert not path.exists()  # a reference family names no set
        return
    found = pd.read_csv(path)
    family = pd.read_csv(folder / "comparisons.csv")
    gate = pd.read_csv(folder / "omnibus.csv").set_index("role").loc["primary"]
    for row in found[~found["not_beaten"]].itertuples():
        involved = family[
            (family["setting"].astype(str) == str(row.setting))
            | (family["against"].astype(str) == str(row.setting))
        ]
        assert (involved["p_holm"] < asked["alpha"]).any() and gate["rejects"]


def test_the_activation_report_ships_its_per_run_data():
    folder = REPORTS / "activation"
    runs = pd.read_csv(folder / "runs.csv")
    included = runs[runs["included"]]
    assert len(included) == 80
    assert {"configuration", "seed", "backbone_draw", "test_error_pct"} <= set(runs.columns)
    errors = included.pivot_table(index="seed", columns="activation", values="test_error_pct")
    table6 = pd.read_csv(folder / "table6_activation_error.csv").set_index("activation")
    for name in ("relu", "tanh", "sigmoid"):  # Table 6's sign-flip p from runs.csv alone
        differences = (errors[name] - errors["elu"]).to_numpy()
        expected = every_sign_pattern_p(differences)
        assert expected == pytest.approx(table6.loc[name, "p_permutation"], abs=1e-9)
    outcomes = pd.read_csv(folder / "outcomes.csv.gz")
    assert set(outcomes["run_id"]) == set(included["run_id"])
    # each run's test error rate is its per-image errors' mean
    rates = 100 * (1 - outcomes.groupby("run_id")["correct"].mean())
    merged = included.set_index("run_id")["test_error_pct"]
    assert rates.reindex(merged.index).to_numpy() == pytest.approx(merged.to_numpy(), abs=1e-9)


def test_the_replication_is_recomputed_from_each_data_sets_runs():
    """reports/replication: each data set's difference and standard error from its runs.csv,
    and the pooled DerSimonian-Laird estimate, tau^2 and I^2 with statsmodels from those."""
    from statsmodels.stats.meta_analysis import combine_effects

    folder = REPORTS / "replication"
    rows = pd.read_csv(folder / "replication.csv")
    for comparison, found in rows.groupby("comparison", sort=False):
        own = found[found["role"] == "data set"]
        for row in own.itertuples():
            runs = pd.read_csv(folder / f"{row.data_set}_runs.csv")
            table = runs[runs["included"]].pivot_table(
                index="seed", columns="activation", values="test_balanced_error_pct"
            )
            differences = (table[row.setting] - table[row.against]).dropna()
            assert len(differences) == row.pairs == 20
            assert differences.mean() == pytest.approx(row.estimate, abs=1e-9)
            se = differences.std(ddof=1) / np.sqrt(len(differences))
            assert se == pytest.approx(row.se, abs=1e-9)
        with np.errstate(all="ignore"):
            result = combine_effects(own["estimate"].to_numpy(), own["se"].to_numpy() ** 2)
        (pooled,) = found[found["role"] == "pooled"].itertuples()
        assert max(result.tau2, 0.0) == pytest.approx(pooled.tau2, abs=1e-12), comparison
        q = result.q
        assert max((q - 1) / q, 0.0) == pytest.approx(pooled.i2, abs=1e-12)
        if result.tau2 <= 0:  # truncated at 0: the random-effects pool is the fixed-effect one
            fixed = result.summary_frame().loc["fixed effect"]
            assert fixed["eff"] == pytest.approx(pooled.estimate, abs=1e-12)
            assert fixed["ci_low"] == pytest.approx(pooled.ci_low, abs=1e-12)
