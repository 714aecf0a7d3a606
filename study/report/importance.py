"""Which knob matters: each knob's importance for the sweep's objective, with an interval over
resamples of the seeds, the strongest pairwise interaction, and each knob's partial dependence.

Importance is Optuna's fANOVA (`FanovaImportanceEvaluator`: a random forest fitted to the runs'
params and objective values, one trial per run; a knob's importance is the share of the
forest's variance over the search space that the knob explains alone). The interval comes from
a bootstrap over seeds: draw as many seeds as the runs have, with replacement, keep those seeds'
runs (a seed drawn twice counts twice) and fit again. Interactions are Friedman's H statistic
from scikit-learn's `partial_dependence` on a random forest of the same runs. All of it is pure
and seeded, so the same runs give the same numbers.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from pandas.api.types import is_numeric_dtype
from sklearn.ensemble import RandomForestRegressor
from sklearn.inspection import partial_dependence

from study.report.selection import metric, param, value_order

RESAMPLES = 200
SEED = 0  # the bootstrap's and the forests' random seed: the report rebuilds byte-identically
TREES = 64  # Optuna's fANOVA default, used for the interaction forest too
CONFIDENCE = 0.95
METHOD = (
    "fANOVA (Optuna's FanovaImportanceEvaluator): the share of the objective's variance over "
    "the searched values that a random forest of the runs attributes to each knob alone. It "
    "describes these runs and this search space, not other values or data; it says nothing of "
    "the direction of an effect; knobs whose values changed together across the few "
    "configurations tried cannot be told apart; and a knob that mattered only through other "
    "knobs shows up in the interactions, not here."
)


def importance_tables(
    runs: pd.DataFrame,
    knobs: list[str],
    objective: str,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, pd.DataFrame]:
    """For runs (with `seed` and `params.<knob>` columns) that varied two or more knobs:
    `importance` (one row per knob, most important first: fANOVA importance and its bootstrap
    interval over seeds), `interactions` (one row per pair of knobs, strongest first) and
    `partial_dependence` (the objective against each value of each knob, the others
    marginalised). Empty when fewer than two knobs varied or fewer than three runs scored."""
    scores = metric(runs, objective)
    runs = runs[scores.notna()]
    knobs = [knob for knob in knobs if param(runs, knob).nunique() > 1]
    if len(knobs) < 2 or len(runs) < 3:
        return {}
    features = _features(runs, knobs)
    target = scores[runs.index].to_numpy()
    seeds = runs["seed"].to_numpy()
    point = _fanova(features, target, seed)

    distinct = np.unique(seeds)
    rng = np.random.default_rng(seed)
    fitted: dict[tuple, dict[str, float]] = {}  # a draw is a multiset of seeds: fit each once
    draws = []
    for _ in range(resamples if len(distinct) > 1 else 0):
        drawn = tuple(sorted(rng.choice(distinct, len(distinct))))
        if drawn not in fitted:
            chosen = np.concatenate([np.flatnonzero(seeds == s) for s in drawn])
            fitted[drawn] = _fanova(features.iloc[chosen], target[chosen], seed)
        draws.append(fitted[drawn])
    tail = 100 * (1 - CONFIDENCE) / 2
    rows = []
    for knob in knobs:
        values = np.array([draw[knob] for draw in draws])
        low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (np.nan, np.nan)
        rows.append(
            {
                "knob": knob,
                "importance": point[knob],
                "ci_low": low,
                "ci_high": high,
                "values": param(runs, knob).nunique(),
                "runs": len(runs),
                "seeds": len(distinct),
                "resamples": len(draws),
                "distinct_resamples": len(fitted),
                "objective": objective,
            }
        )
    importance = pd.DataFrame(rows).sort_values("importance", ascending=False, kind="stable")
    interactions, dependence = _interactions(features, target, seed)
    return {
        "importance": importance.reset_index(drop=True),
        "interactions": interactions,
        "partial_dependence": dependence,
    }


def importance_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The importance table as MLflow metrics: `importance.<knob>` and its `.ci_low`/`.ci_high`
    (intervals left out when there were no resamples)."""
    found = {}
    for row in table.itertuples():
        found[f"importance.{row.knob}"] = float(row.importance)
        if not np.isnan(row.ci_low):
            found[f"importance.{row.knob}.ci_low"] = float(row.ci_low)
            found[f"importance.{row.knob}.ci_high"] = float(row.ci_high)
    return found


def knob_values(runs: pd.DataFrame, knob: str) -> tuple[pd.Series, list[str] | None]:
    """A knob's value per run: numbers when every value is one, else text with its categories
    in order (numbers first)."""
    text = param(runs, knob).astype(str)
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        return numbers.astype(float), None
    return text, _categories(text)


def _features(runs: pd.DataFrame, knobs: list[str]) -> pd.DataFrame:
    """One column per knob: numbers as they are, categories as text."""
    return pd.DataFrame({knob: knob_values(runs, knob)[0].to_numpy() for knob in knobs})


def _fanova(features: pd.DataFrame, target: np.ndarray, seed: int) -> dict[str, float]:
    """Unnormalised fANOVA importances (shares of variance) of an in-memory Optuna study with
    one trial per run; distributions span the values seen in `features`."""
    distributions = {}
    for knob in features.columns:
        values = features[knob]
        if not is_numeric_dtype(values):
            distributions[knob] = CategoricalDistribution(sorted(values.unique(), key=value_order))
        else:
            distributions[knob] = FloatDistribution(float(values.min()), float(values.max()))
    records = features.to_dict("records")
    trials = [
        optuna.trial.create_trial(params=record, distributions=distributions, value=float(value))
        for record, value in zip(records, target, strict=True)
    ]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.add_trials(trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fANOVA is marked experimental in some versions
        found = get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=seed), normalize=False
        )
    return {knob: float(found.get(knob, 0.0)) for knob in features.columns}


def _interactions(
    features: pd.DataFrame, target: np.ndarray, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Friedman's H statistic for every pair of knobs, and each knob's partial dependence, from
    one random forest fitted to the runs (categories coded by their order). H is the share of
    the pair's joint partial dependence that their separate effects do not explain (0: none;
    noisy when the pair's joint effect is tiny); `interaction_share` relates the same
    interaction to the objective's variance, which ranks pairs."""
    coded = pd.DataFrame(
        {
            knob: features[knob].map({v: i for i, v in enumerate(_categories(features[knob]))})
            if not is_numeric_dtype(features[knob])
            else features[knob]
            for knob in features.columns
        }
    ).astype(float)
    forest = RandomForestRegressor(n_estimators=TREES, random_state=seed).fit(coded, target)
    grids = {knob: np.unique(coded[knob]) for knob in coded.columns}

    def dependence(pair: tuple[str, ...]) -> np.ndarray:
        """Partial dependence on the grid of the values the runs took of the knobs in `pair`."""
        return partial_dependence(
            forest,
            coded,
            list(pair),
            custom_values={knob: grids[knob] for knob in pair},
            method="recursion",
            kind="average",
        )["average"][0]

    def centred_at_runs(pair: tuple[str, ...]) -> np.ndarray:
        index = tuple(np.searchsorted(grids[knob], coded[knob]) for knob in pair)
        found = dependence(pair)[index]
        return found - found.mean()

    single = {knob: centred_at_runs((knob,)) for knob in coded.columns}
    variance = float(np.sum((target - target.mean()) ** 2))
    rows = []
    for first, second in itertools.combinations(coded.columns, 2):
        joint = centred_at_runs((first, second))
        residual = float(np.sum((joint - single[first] - single[second]) ** 2))
        total = float(np.sum(joint**2))
        rows.append(
            {
                "knob_a": first,
                "knob_b": second,
                "h_statistic": np.sqrt(residual / total) if total > 0 else 0.0,
                "interaction_share": residual / variance if variance > 0 else 0.0,
            }
        )
    interactions = pd.DataFrame(rows).sort_values(
        "interaction_share", ascending=False, kind="stable"
    )
    curves = []
    for knob in coded.columns:
        names = None if is_numeric_dtype(features[knob]) else _categories(features[knob])
        for code, value in zip(grids[knob], dependence((knob,)), strict=True):
            shown = names[int(code)] if names else float(code)
            curves.append({"knob": knob, "value": shown, "objective": float(value)})
    return interactions.reset_index(drop=True), pd.DataFrame(curves)


def _categories(values: pd.Series) -> list[str]:
    return sorted(values.unique(), key=value_order)
