"""Which knob matters, described: each knob's fANOVA importance for the sweep's objective, the
strongest pairwise interaction and each knob's partial dependence. The tests of each knob's
effect are `knob_tests`' (type-II F tests of the seed-blocked additive model); nothing here is a
test.

Importance is Optuna's fANOVA (`FanovaImportanceEvaluator`: a random forest fitted to points of
the search space and their objective values; a knob's importance is the share of the forest's
variance over the search space that the knob explains alone), averaged over FOREST_SEEDS
forests. The forest is fitted to the configurations, each point of the search space once with
its objective averaged over its seeds, not to the runs: the knob effect is a property of the
configuration, the seeds only repeat it, and a tree fitted to runs cannot split the seeds of one
configuration apart anyway (its leaves end at the configurations either way). Each tree is at
most MAX_DEPTH levels deep (at most 2**MAX_DEPTH leaves), which bounds the cost of a fit (pure
Python in Optuna, and with unbounded trees growing with the number of configurations: 48 s at
1,000 runs) at about a second however many configurations there are. The bound already shapes
most trees of a 40-configuration study, yet on synthetic studies of 40 and 100 configurations
the importances stayed within 0.005 of those of unbounded trees: fANOVA's main effects, the
shares reported here, do not need the deep splits. Averaging over seeds and bounding the depth
both smooth the forest.

That is a share of the forest's variance over the search space, not of the runs': the shares
of the run-to-run variance that the configurations and the seeds explain come from a seed-blocked
ANOVA (objective ~ configuration + seed, type II sums of squares, see `variance_shares`) and are
reported beside it, never multiplied into it. From PARALLEL_POINTS configurations the forests
fit on every usable core at once, each with its own seed, so the number of cores does not move
a figure.
Runs are put in a canonical order (knob values, then seed) before anything is fitted, so the
order in which the store returned them cannot move a figure.
Interactions are Friedman's H statistic from scikit-learn's `partial_dependence` on a random
forest of the runs. All of it is pure and seeded, so the same runs give the same numbers.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable

import numpy as np
import optuna
import pandas as pd
from joblib import Parallel, delayed
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from pandas.api.types import is_numeric_dtype
from sklearn.ensemble import RandomForestRegressor
from sklearn.inspection import partial_dependence

from study.processes import usable_cores
from study.report.selection import value_order
from study.tracking.outcome import metric, param

FOREST_SEEDS = 4  # forests averaged for each knob's importance
SEED = 0  # the forests' first random seed: the report rebuilds identically
TREES = 64  # Optuna's fANOVA default, used for the interaction forest too
MAX_DEPTH = 6  # levels of a fANOVA tree: bounds a fit's cost (Optuna's default, 64, does not)
PARALLEL_POINTS = 20  # configurations from which the fits run on every usable core
METHOD = (
    "fANOVA (Optuna's FanovaImportanceEvaluator): the share of the objective's variance over "
    "the searched values that a random forest of the configurations (each one's objective "
    "averaged over its seeds; trees at most "
    f"{MAX_DEPTH} levels deep) attributes to each knob alone, averaged over {FOREST_SEEDS} "
    "forests. It describes these runs and this search space, not other values or data; it says "
    "nothing of the direction of an effect; knobs whose values changed together across the few "
    "configurations tried cannot be told apart; and a knob that mattered only through other "
    "knobs shows up in the interactions, not here."
)


def start_importance(
    runs: pd.DataFrame,
    knobs: list[str],
    objective: str,
    seed: int = SEED,
) -> Callable[[], dict[str, pd.DataFrame]]:
    """Start the forest fits on worker processes and return the function that waits for them
    and gives the tables, so that the caller's own work in between runs beside the fits.

    The tables, for runs (with `seed`, `configuration` and `params.<knob>` columns) that varied
    two or more knobs: `importance` (one row per knob, most important first: the fANOVA share of
    the forest's variance, and the configurations' and seeds' shares of the runs' variance),
    `interactions` (one row per pair of knobs, strongest first) and `partial_dependence` (the
    objective against each value of each knob, the others marginalised). Empty when fewer than
    two knobs varied or fewer than three runs scored."""
    scores = metric(runs, objective)
    runs = runs[scores.notna()]
    knobs = [knob for knob in knobs if param(runs, knob).nunique() > 1]
    if len(knobs) < 2 or len(runs) < 3:
        return dict
    runs = _canonical(runs, knobs)
    features = _features(runs, knobs)
    target = metric(runs, objective).to_numpy()
    point_of_run, points = _points(features)
    shares = variance_shares(runs, target)
    fit_seeds = [seed + offset for offset in range(FOREST_SEEDS)]
    space = _study_of(points)
    # worker processes only where a fit costs more than starting them (a second each)
    workers = min(usable_cores(), len(fit_seeds)) if len(points) >= PARALLEL_POINTS else 1
    observed = _point_means(point_of_run, target)
    started = Parallel(n_jobs=workers, return_as="generator")(
        delayed(_fanova)(space, observed, fit_seed) for fit_seed in fit_seeds
    )
    return lambda: _tables(runs, features, target, objective, seed, list(started), shares)


def _tables(
    runs: pd.DataFrame,
    features: pd.DataFrame,
    target: np.ndarray,
    objective: str,
    seed: int,
    fits: list[dict[str, float]],
    shares: dict[str, float],
) -> dict[str, pd.DataFrame]:
    """The importance, interaction and partial dependence tables from the finished forest fits
    of the runs' `features` (a column per knob) and `target` (their objective)."""
    knobs = list(features.columns)
    seeds = runs["seed"].to_numpy()
    estimate = {knob: float(np.mean([fit[knob] for fit in fits])) for knob in knobs}
    rows = []
    for knob in knobs:
        rows.append(
            {
                "knob": knob,
                "importance": estimate[knob],
                "configurations_share": shares["configurations"],
                "seed_share": shares["seed"],
                "values": param(runs, knob).nunique(),
                "runs": len(runs),
                "seeds": len(np.unique(seeds)),
                "forests": FOREST_SEEDS,
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


def variance_shares(runs: pd.DataFrame, target: np.ndarray) -> dict[str, float]:
    """Shares of the runs' variance (sum of squares about the mean) that the configurations
    and the seeds explain in an additive seed-blocked ANOVA (type II sums of squares); NaN when
    the design leaves no residual to test them against (one run per configuration, or one
    seed).

    Type II: each factor's sum of squares is what it adds to the model of the other alone, the
    residual sums of squares of one-factor models (about each level's mean) minus that of the
    additive model. The additive model is fitted by absorbing the configurations (Frisch-Waugh-
    Lovell: the objective and the seed indicators centred within each configuration, then least
    squares on the few seed columns), which is exact and costs little however many
    configurations there are, where a regression on one indicator per configuration grows with
    their square."""
    configuration = pd.factorize(runs["configuration"].astype(str).to_numpy())[0]
    seed = pd.factorize(runs["seed"].astype(str).to_numpy())[0]
    total = float(np.sum((target - target.mean()) ** 2))
    levels = configuration.max() + seed.max() + 1
    if seed.max() < 1 or len(target) <= levels or total <= 0:
        return {"configurations": math.nan, "seed": math.nan}

    def centred_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
        sums = np.stack([np.bincount(groups, weights=column) for column in values.T], axis=1)
        return values - (sums / np.bincount(groups)[:, None])[groups]

    indicators = (seed[:, None] == np.arange(seed.max() + 1)).astype(float)
    centred = centred_within(np.column_stack([target, indicators]), configuration)
    fit = np.linalg.lstsq(centred[:, 1:], centred[:, 0], rcond=None)[0]
    additive = float(np.sum((centred[:, 0] - centred[:, 1:] @ fit) ** 2))
    configurations_alone = float(np.sum(centred[:, 0] ** 2))
    seeds_alone = float(np.sum(centred_within(target[:, None], seed) ** 2))
    return {
        "configurations": (seeds_alone - additive) / total,
        "seed": (configurations_alone - additive) / total,
    }


def importance_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The importance table as MLflow metrics: `importance.<knob>` (the fANOVA share)."""
    return {f"importance.{row.knob}": float(row.importance) for row in table.itertuples()}


def knob_values(runs: pd.DataFrame, knob: str) -> tuple[pd.Series, list[str] | None]:
    """A knob's value per run: numbers when every value is one, else text with its categories
    in order (numbers first)."""
    text = param(runs, knob).astype(str)
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        return numbers.astype(float), None
    return text, _categories(text)


def _canonical(runs: pd.DataFrame, knobs: list[str]) -> pd.DataFrame:
    """The runs sorted by their knob values (numbers numerically), then by seed."""
    columns = [param(runs, knob) for knob in knobs]
    key = {
        index: (*(value_order(column[index]) for column in columns), runs.at[index, "seed"])
        for index in runs.index
    }
    return runs.loc[sorted(runs.index, key=key.__getitem__)].reset_index(drop=True)


def _points(features: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """The points of the search space that the runs tried (their knob values, in the order the
    canonical runs first reach them) and, for each run, the index of its point."""
    point_of_run = features.groupby(list(features.columns), sort=False, dropna=False).ngroup()
    first_runs = np.unique(point_of_run.to_numpy(), return_index=True)[1]
    return point_of_run.to_numpy(), features.iloc[first_runs].reset_index(drop=True)


def _point_means(point_of_run: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Each point's objective averaged over its runs (its seeds)."""
    return np.bincount(point_of_run, weights=target) / np.bincount(point_of_run)


def _features(runs: pd.DataFrame, knobs: list[str]) -> pd.DataFrame:
    """One column per knob: numbers as they are, categories as text."""
    return pd.DataFrame({knob: knob_values(runs, knob)[0].to_numpy() for knob in knobs})


def _study_of(features: pd.DataFrame) -> optuna.Study:
    """An in-memory Optuna study with one trial per row of `features` (trial number = row),
    distributions spanning the values seen, made once and fitted to many targets."""
    distributions = {}
    for knob in features.columns:
        values = features[knob]
        if not is_numeric_dtype(values):
            distributions[knob] = CategoricalDistribution(sorted(values.unique(), key=value_order))
        else:
            distributions[knob] = FloatDistribution(float(values.min()), float(values.max()))
    trials = [
        optuna.trial.create_trial(params=record, distributions=distributions, value=0.0)
        for record in features.to_dict("records")
    ]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.add_trials(trials)
    return study


def _fanova(study: optuna.Study, target: np.ndarray, seed: int) -> dict[str, float]:
    """Unnormalised fANOVA importances (shares of variance) of `target`, a value per trial of
    `study` (`_study_of`), with trees at most MAX_DEPTH deep. All 0 when the target does not
    vary beyond rounding (a permutation can give every configuration the same mean): no
    variance to share, and Optuna refuses to fit an exact constant."""
    knobs = list(study.get_trials(deepcopy=False)[0].distributions)
    if np.ptp(target) <= 1e-12 * np.abs(target).max():
        return dict.fromkeys(knobs, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fANOVA is marked experimental in some versions
        found = get_param_importances(
            study,
            evaluator=FanovaImportanceEvaluator(max_depth=MAX_DEPTH, seed=seed),
            target=lambda trial: float(target[trial.number]),
            normalize=False,
        )
    return {knob: float(found.get(knob, 0.0)) for knob in knobs}


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
