"""The study's outcome rules, one copy of each: which runs count, Hyperband's final budget, the
best configuration and the run that stands for a configuration.

The sweep's summary (`study.tuning.sweep`), the Model Registry (`study.tracking.registry`) and
the report (`study.report`) all call these on the runs MLflow holds, so the best configuration
the sweep prints, the model it registers and the report's winner are the same.

Runs arrive as the DataFrame of `mlflow.search_runs`: columns `run_id`, `status`,
`start_time`, `params.<key>` (strings), `metrics.<key>` and `tags.<key>`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.objective import Objective
from study.schema.search import without_step_rounding
from study.tracking.store import PARENT_TAG
from study.vocabulary import KNOBS, PHASE_KNOBS

MODEL_RUN_TYPES = ("trial", "train")
# Params that differ between runs of one configuration: the seed, where the data lay, and the
# facts of the data as loaded (`dataset.*`: image counts per split vary with the seed's split).
NOT_CONFIGURATION = ("seed", "data.root")
DATA_FACTS = "dataset."
ONE_CONFIGURATION = "one configuration"
TIE_DECIMALS = 4  # objective means that agree to this many decimals rank as tied
# A Hyperband trial trains its frozen phase for the epochs the oracle gave it (`tuner/epochs`).
BUDGET_PARAM = "frozen.epochs"


@dataclass(frozen=True)
class Counted:
    runs: pd.DataFrame  # the runs that count, with `configuration` (label) and `seed` columns
    scope: pd.DataFrame  # every trial and train run in scope, oldest first, counted or not
    outside: int  # trial and train runs of the experiment that are not in scope
    budget: float | None  # Hyperband's final budget (frozen epochs); None for other oracles
    swept: list[str]  # settings that differ between counted runs, short knob names first


def column(runs: pd.DataFrame, name: str) -> pd.Series:
    """A column of the runs, or missing values when no run logged it."""
    if name in runs.columns:
        return runs[name]
    return pd.Series([None] * len(runs), index=runs.index, dtype=object)


def param(runs: pd.DataFrame, key: str) -> pd.Series:
    return column(runs, f"params.{key}")


def metric(runs: pd.DataFrame, key: str) -> pd.Series:
    return pd.to_numeric(column(runs, f"metrics.{key}"), errors="coerce").astype(float)


def ordered(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs oldest first, their params without float noise (see `_without_float_noise`)."""
    if runs.empty or "run_id" not in runs.columns:
        return pd.DataFrame(columns=["run_id", "status", "start_time"])
    runs = runs.sort_values(["start_time", "run_id"], kind="stable").reset_index(drop=True)
    params = [name for name in runs.columns if name.startswith("params.")]
    return runs.assign(**{name: _tidy(runs[name]) for name in params})


def _tidy(values: pd.Series) -> pd.Series:
    """`_without_float_noise` of each value, worked out once per distinct value."""
    tidy = {value: _without_float_noise(value) for value in values.dropna().unique()}
    return values.map(lambda value: tidy.get(value, value))


def counted_runs(runs: pd.DataFrame, parent_run_id: str | None) -> Counted:
    """The runs that count: the trial runs of sweep `parent_run_id` (without a sweep, every
    trial and train run) that FINISHED, for Hyperband at its final budget only, and of each
    configuration and seed the latest. Failed, killed and unfinished runs, and runs outside
    the sweep, do not count."""
    runs = ordered(runs)
    models = runs[column(runs, "tags.run_type").isin(MODEL_RUN_TYPES)]
    if parent_run_id is None:
        scope = models
    else:
        scope = models[column(models, f"tags.{PARENT_TAG}") == parent_run_id]
    oracle = column(runs, "params.tuner.oracle")[runs["run_id"] == parent_run_id].dropna()
    finished = scope[scope["status"] == "FINISHED"]
    budget = final_budget(finished, oracle.iloc[0] if len(oracle) else None)
    finished = finished[at_budget(finished, budget)]
    identity = [name for name in finished.columns if _is_configuration_param(name)]
    keys = pd.DataFrame({"configuration": _identity(finished, identity), "seed": seeds(finished)})
    counted = finished[~keys.duplicated(keep="last")].copy()
    swept = _swept(counted, identity)
    counted["configuration"] = configuration_labels(counted, swept)
    counted["seed"] = seeds(counted)
    return Counted(counted, scope, len(models) - len(scope), budget, swept)


def final_budget(finished: pd.DataFrame, oracle: str | None) -> float | None:
    """Hyperband's final budget: the most frozen epochs any of the finished runs was given.
    Hyperband trains many configurations briefly and promotes few, so only runs at the final
    budget compare fairly; other oracles give every run the same epochs (None: no budget)."""
    if oracle != "hyperband":
        return None
    epochs = pd.to_numeric(param(finished, BUDGET_PARAM), errors="coerce")
    return float(epochs.max()) if epochs.notna().any() else None


def at_budget(runs: pd.DataFrame, budget: float | None) -> pd.Series:
    """Which runs trained for `budget` frozen epochs (every run when there is no budget)."""
    if budget is None:
        return pd.Series(True, index=runs.index)
    return pd.to_numeric(param(runs, BUDGET_PARAM), errors="coerce").eq(budget)


def seeds(runs: pd.DataFrame) -> pd.Series:
    found = param(runs, "seed").fillna(column(runs, "tags.seed"))
    return pd.to_numeric(found, errors="coerce").astype("Int64")


def configuration_labels(runs: pd.DataFrame, swept: list[str]) -> pd.Series:
    """Each run's configuration as `key=value, ...` over the swept settings: the canonical
    label, made from logged params alone, so whoever reads the runs names it the same."""
    if not swept:
        return pd.Series(ONE_CONFIGURATION, index=runs.index, dtype=object)
    parts = [f"{key}=" + param(runs, key).fillna("?").astype(str) for key in swept]
    labels = parts[0]
    for part in parts[1:]:
        labels = labels + ", " + part
    return labels.astype(object)


def ranking(runs: pd.DataFrame, objective: str) -> pd.DataFrame:
    """Every configuration of the counted runs, best first: columns `configuration`, `n` (its
    runs, one per seed), `ranked_on_seeds` and `objective_mean`.

    A configuration's score is the mean `objective` over the seeds that every configuration
    finished (over its own seeds when they share none), so a seed that failed for one
    configuration does not make another look better or worse. Means that agree to TIE_DECIMALS
    decimals (0.01 points of an accuracy) are tied: closer than that, a difference is the
    rounding of splits of 360 and 361 images, not of the models. Ties go to the configuration
    with more seeds, whose mean rests on more runs, then to the first canonical label
    (`configuration_labels`): a label is made from logged params alone, so the sweep, the
    registry and the report break a tie the same way, and the same on every rebuild, whatever
    order the runs or the tuner's trials came in. A configuration without the objective
    ranks last."""
    columns = ["configuration", "n", "ranked_on_seeds", "objective_mean"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    score = metric(runs, objective)
    runs = pd.DataFrame(
        {
            "configuration": runs["configuration"],
            "seed": runs["seed"],
            "score": score.where(np.isfinite(score)),
        }
    )
    labels = runs["configuration"].unique()
    seeds = runs.dropna(subset=["seed"]).groupby("configuration", sort=False)["seed"]
    found = seeds.agg(frozenset)  # (a configuration without a seed shares none)
    shared = frozenset.intersection(*found) if len(found) == len(labels) else frozenset()
    ranked_on = runs[runs["seed"].isin(shared)] if shared else runs
    by_label = ranked_on.groupby("configuration", sort=False)
    table = pd.DataFrame(
        {
            "configuration": labels,
            "n": runs.groupby("configuration", sort=False).size().reindex(labels).to_numpy(),
            "ranked_on_seeds": by_label["seed"]
            .agg(lambda group: " ".join(str(seed) for seed in sorted(group.dropna())))
            .reindex(labels, fill_value="")
            .to_numpy(),
            "objective_mean": by_label["score"].mean().reindex(labels).to_numpy(dtype=float),
        }
    )
    sign = -Objective.named(objective).sign

    def rank(row: tuple) -> tuple:
        label, n, _, mean = row
        missing = math.isnan(mean)
        return (missing, 0.0 if missing else sign * round(mean, TIE_DECIMALS), -n, label)

    rows = sorted(table.itertuples(index=False, name=None), key=rank)
    return pd.DataFrame(rows, columns=columns)


def best_configuration(runs: pd.DataFrame, objective: str) -> str | None:
    """The label of the best configuration of the counted runs (see `ranking`), or None when
    no run logged the objective."""
    ranked = ranking(runs, objective)
    scored = ranked[ranked["objective_mean"].notna()]
    return scored["configuration"].iloc[0] if len(scored) else None


def median_run(runs: pd.DataFrame, objective: str) -> pd.Series:
    """The run of median `objective` among these runs (the lower median for an even count,
    ordered best first; ties: the lowest seed): the run that stands for the configuration in
    figures and in the Model Registry, rather than its luckiest seed."""
    return runs.loc[median_runs(runs, objective, pd.Series(0, index=runs.index)).iloc[0]]


def median_runs(runs: pd.DataFrame, objective: str, groups: pd.Series) -> pd.Series:
    """`median_run`'s choice in each group of runs (`groups`: a label per run): the index of
    each group's median run, indexed by the group's label. (A group without any score gets
    its last run in that order, its highest seed.)"""
    ascending = Objective.named(objective).direction == "min"
    order = pd.DataFrame({"group": groups, "score": metric(runs, objective), "seed": runs["seed"]})
    order = order.sort_values(["score", "seed"], ascending=[ascending, True], na_position="last")
    by_group = order.groupby("group", sort=False)
    scored = by_group["score"].transform("count")
    size = by_group["score"].transform("size")
    target = np.where(scored > 0, (scored - 1) // 2, size - 1)
    chosen = order[by_group.cumcount().to_numpy() == target]
    return pd.Series(chosen.index, index=chosen["group"].to_numpy())


def _without_float_noise(value: object) -> object:
    """A logged 0.15000000000000002 (a float step's sum, as Keras Tuner makes it) as 0.15."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    tidy = repr(without_step_rounding(number))
    return tidy if "." in str(value) and len(tidy) < len(str(value)) else value


def _is_configuration_param(name: str) -> bool:
    key = name.removeprefix("params.")
    return (
        name.startswith("params.")
        and key not in NOT_CONFIGURATION
        and not key.startswith(DATA_FACTS)
    )


def _identity(runs: pd.DataFrame, identity: list[str]) -> pd.Series:
    """One string per run, equal for two runs exactly when their configurations are."""
    if runs.empty or not identity:
        return pd.Series("", index=runs.index, dtype=object)
    parts = runs[identity].astype(object).fillna("").astype(str)
    joined = parts[identity[0]]
    for name in identity[1:]:
        joined = joined + "\x1f" + parts[name]
    return joined


def _swept(runs: pd.DataFrame, identity: list[str]) -> list[str]:
    varying = {
        name.removeprefix("params.")
        for name in identity
        if runs[name].astype(object).fillna("").nunique() > 1
    }
    short = [knob for knob in KNOBS if knob in varying]
    aliased = {key for knob in short for key in _aliases(runs, knob)}
    return short + sorted(varying - set(short) - aliased)


def _aliases(runs: pd.DataFrame, knob: str) -> set[str]:
    """The config keys that a short knob name stood for in these runs: those logged with the
    same value in every run (a phase knob follows the phase that ran, see PHASE_KNOBS)."""
    keys = {KNOBS[knob]} | (
        {f"frozen.{knob}", f"fine_tune.{knob}"} if knob in PHASE_KNOBS else set()
    )
    short = param(runs, knob).astype(str)
    return {key for key in keys if (param(runs, key).astype(str) == short).all()}
