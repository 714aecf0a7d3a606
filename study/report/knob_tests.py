"""Does each knob matter? A test per knob whose null is about that knob alone.

The model is the seed-blocked additive model of the runs' metric (the study's question metric,
in percent): metric ~ knob_1 + ... + knob_m + C(seed), fitted by ordinary least squares
(statsmodels). A knob of text values (activation, optimizer) enters as a factor; a numeric knob
as a straight line on the scale it was searched on (`sampling: log` in the sweep's search space:
on log(value)), so a search that tried dozens of values spends one degree of freedom on it and
the model stays identified. Each knob's type-II F test (`anova_lm(typ=2)`) asks whether the knob
adds to a model of all the others: its null is "this knob has no additive effect, whatever the
others do". The p-values are Holm-adjusted over the knobs. A knob's `unique_share` is its type-II
sum of squares over the runs' total sum of squares: the share of the run-to-run variance that
this knob alone explains beyond all the others (the shares do not add up to the model's R^2 when
knobs were sampled together).

The additive model is an approximation: `lack of fit` compares it with one mean per configuration
(same seed blocks), and when that test rejects, the knob tests describe a simplified model.
Adjusted means: each knob value's mean metric predicted by the model with that knob set to the
value for every run (the others as the runs had them), with its standard error. When the design
cannot separate the terms (rank-deficient), nothing is tested or adjusted and the table says so.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm

from study.report import stats
from study.report.selection import sweep_param, value_order
from study.tracking.outcome import param
from study.vocabulary import KNOBS

COLUMNS = [
    *("role", "knob", "entered_as", "df", "sum_sq", "f_statistic", "df_residual", "p_value"),
    *("p_holm", "rejects", "unique_share", "runs", "note"),
]


def knob_scales(
    included: pd.DataFrame, runs: pd.DataFrame, parent_run_id: str | None, knobs: list[str]
) -> dict:
    """How each knob enters the model: "factor" (text values among the `included` runs), "log"
    (numbers searched with `sampling: log`, read from the search space the sweep's parent run
    logged among `runs`) or "linear"."""
    logged = sweep_param(runs, parent_run_id, "hyperparameters")
    searched = json.loads(logged) if logged else {}
    short = {key: name for name, key in KNOBS.items()}
    sampling = {
        short.get(key, key.rpartition(".")[2]): spec.get("sampling")
        for key, spec in searched.items()
    }
    scales = {}
    for knob in knobs:
        numbers = pd.to_numeric(param(included, knob), errors="coerce")
        if numbers.isna().any():
            scales[knob] = "factor"
        elif sampling.get(knob) == "log" and (numbers > 0).all():
            scales[knob] = "log"
        else:
            scales[knob] = "linear"
    return scales


def knob_tests(
    runs: pd.DataFrame, values: pd.Series, scales: dict[str, str], alpha: float = stats.ALPHA
) -> tuple[pd.DataFrame, dict[str, dict[str, tuple[float, float]]]]:
    """The type-II F test of each knob in `scales` (knob -> factor, linear or log) on `values`
    (one per run of `runs`), Holm over the knobs, with the seed block and the lack of fit as
    rows of their own; and the adjusted means: knob -> value (`level_key`) -> (mean, standard
    error). Empty when fewer than two knobs varied or the model leaves no residual."""
    data, formula = _design(runs, values, scales)
    knobs = [knob for knob in scales if data[knob].nunique() > 1]
    if len(knobs) < 2 or len(data) <= len(knobs) + data["seed"].nunique() + 1:
        return pd.DataFrame(columns=COLUMNS), {}
    fit = smf.ols(formula(knobs), data).fit()
    rank = np.linalg.matrix_rank(fit.model.exog)
    if rank < fit.model.exog.shape[1]:
        note = (
            f"the design cannot separate the knobs' effects (rank {rank} of "
            f"{fit.model.exog.shape[1]} columns): no knob is tested or adjusted"
        )
        row = dict.fromkeys(COLUMNS, math.nan) | {"role": "not identified", "note": note}
        return pd.DataFrame([row], columns=COLUMNS), {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = anova_lm(fit, typ=2)
    total = float(((data["y"] - data["y"].mean()) ** 2).sum())
    rows = []
    for knob in knobs:
        term = _term(knob, scales[knob])
        rows.append(_row("knob", knob, scales[knob], table.loc[term], fit, total))
    if "C(seed)" in table.index:
        rows.append(_row("seed block", "seed", "factor", table.loc["C(seed)"], fit, total))
    rows.append(_lack_of_fit(data, fit, formula(knobs), total))
    found = pd.DataFrame(rows, columns=COLUMNS).astype({"rejects": object})
    is_knob = found["role"] == "knob"
    found.loc[is_knob, "p_holm"] = stats.holm(found.loc[is_knob, "p_value"].to_numpy(float))
    found.loc[is_knob, "rejects"] = found.loc[is_knob, "p_holm"] < alpha
    return found, {knob: _adjusted(fit, data, knob) for knob in knobs}


def _design(runs: pd.DataFrame, values: pd.Series, scales: dict[str, str]):
    data = pd.DataFrame(
        {
            "y": np.asarray(values, dtype=float),
            "seed": runs["seed"].astype(str).to_numpy(),
            "configuration": runs["configuration"].astype(str).to_numpy(),
        }
    )
    for knob, scale in scales.items():
        text = param(runs, knob).astype(str).to_numpy()
        data[knob] = text if scale == "factor" else pd.to_numeric(text, errors="coerce")
    data = data[np.isfinite(data["y"])].reset_index(drop=True)

    def formula(knobs: list[str]) -> str:
        terms = [_term(knob, scales[knob]) for knob in knobs]
        if data["seed"].nunique() > 1:
            terms.append("C(seed)")
        return "y ~ " + " + ".join(terms)

    return data, formula


def _term(knob: str, scale: str) -> str:
    return {"factor": f"C({knob})", "log": f"np.log({knob})", "linear": knob}[scale]


def _row(role: str, knob: str, scale: str, line: pd.Series, fit, total: float) -> dict:
    return {
        "role": role,
        "knob": knob,
        "entered_as": scale,
        "df": float(line["df"]),
        "sum_sq": float(line["sum_sq"]),
        "f_statistic": float(line["F"]),
        "df_residual": float(fit.df_resid),
        "p_value": float(line["PR(>F)"]),
        "p_holm": math.nan,
        "rejects": math.nan,
        "unique_share": float(line["sum_sq"]) / total if total > 0 else math.nan,
        "runs": int(fit.nobs),
        "note": "",
    }


def _lack_of_fit(data: pd.DataFrame, fit, formula: str, total: float) -> dict:
    """The additive model against one mean per configuration (the same seed blocks)."""
    blocks = " + C(seed)" if data["seed"].nunique() > 1 else ""
    saturated = smf.ols("y ~ C(configuration)" + blocks, data).fit()
    row = dict.fromkeys(COLUMNS, math.nan) | {
        "role": "lack of fit",
        "knob": "",
        "entered_as": "one mean per configuration",
        "runs": int(fit.nobs),
        "note": "",
    }
    extra = fit.df_resid - saturated.df_resid
    if extra < 1 or saturated.df_resid < 1:
        return row | {"note": "no replicate runs beyond the additive model's: not testable"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compared = anova_lm(fit, saturated)
    line = compared.iloc[1]
    return row | {
        "df": float(line["df_diff"]),
        "sum_sq": float(line["ss_diff"]),
        "f_statistic": float(line["F"]),
        "df_residual": float(saturated.df_resid),
        "p_value": float(line["Pr(>F)"]),
        "unique_share": float(line["ss_diff"]) / total if total > 0 else math.nan,
    }


def _adjusted(fit, data: pd.DataFrame, knob: str) -> dict[str, tuple[float, float]]:
    """Each value of `knob`: the model's mean prediction over the runs with the knob set to it,
    and its standard error (the prediction is linear in the coefficients: the mean design row
    times them). The design of the runs with the knob set is built by the same formula over
    them and the observed runs together, so that every level is coded as in the fit."""
    covariance = fit.cov_params().to_numpy()
    found = {}
    for value in sorted(data[knob].unique(), key=value_order):
        both = pd.concat([data, data.assign(**{knob: value})], ignore_index=True)
        design = smf.ols(fit.model.formula, both)
        if design.exog_names != fit.model.exog_names:
            raise AssertionError(f"{knob}={value}: the design's columns differ from the fit's")
        weights = design.exog[len(data) :].mean(axis=0)
        mean = float(weights @ fit.params.to_numpy())
        found[level_key(value)] = (mean, float(np.sqrt(weights @ covariance @ weights)))
    return found


def level_key(value: object) -> str:
    """A knob value as the adjusted means are keyed: numbers by their float value (a logged
    param "100" and the model's 100.0 are one level), anything else as text."""
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)
