"""Which runs a report covers: one sweep (or the experiment's train runs), FINISHED runs only,
one run per configuration and seed, and a ledger of everything left out and why.

Runs arrive as the DataFrame of `mlflow.search_runs`: columns `run_id`, `status`,
`start_time`, `params.<key>` (strings), `metrics.<key>` and `tags.<key>`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.config import KNOBS, PHASE_KNOBS, without_step_rounding
from study.errors import StudyError
from study.tracking.store import ERROR_TAG, PARENT_TAG

MODEL_RUN_TYPES = ("trial", "train")
# Params that differ between runs of one configuration: the seed, where the data lay, and the
# facts of the data as loaded (`dataset.*`: image counts per split vary with the seed's split).
NOT_CONFIGURATION = ("seed", "data.root")
DATA_FACTS = "dataset."
ONE_CONFIGURATION = "one configuration"


class ReportError(StudyError):
    """The report cannot be made from what the store holds (unknown experiment or sweep)."""


@dataclass(frozen=True)
class Selection:
    runs: pd.DataFrame  # included runs, with `configuration` (label) and `seed` (int) columns
    ledger: pd.DataFrame  # every run in scope: what it was, and whether and why it was left out
    scope: str
    parent_run_id: str | None
    outside: int  # trial and train runs of the experiment that are not in scope
    swept: list[str]  # settings that differ between included runs, short knob names first

    @property
    def excluded(self) -> dict[str, int]:
        left_out = self.ledger[~self.ledger["included"]]
        return {reason: int(n) for reason, n in left_out["reason"].value_counts(sort=False).items()}


def column(runs: pd.DataFrame, name: str) -> pd.Series:
    """A column of the runs, or missing values when no run logged it."""
    if name in runs.columns:
        return runs[name]
    return pd.Series([None] * len(runs), index=runs.index, dtype=object)


def param(runs: pd.DataFrame, key: str) -> pd.Series:
    return column(runs, f"params.{key}")


def metric(runs: pd.DataFrame, key: str) -> pd.Series:
    return pd.to_numeric(column(runs, f"metrics.{key}"), errors="coerce").astype(float)


def select(runs: pd.DataFrame, sweep_run_id: str | None = None) -> Selection:
    """The runs of the chosen sweep (default: the latest), or without a sweep every trial and
    train run; FINISHED ones are included, the latest run of each configuration and seed."""
    runs = _ordered(runs)
    run_type = column(runs, "tags.run_type")
    sweeps = runs[run_type == "sweep"]
    if sweep_run_id is not None and sweep_run_id not in set(sweeps["run_id"]):
        known = ", ".join(sweeps["run_id"]) or "none"
        raise ReportError(f"no sweep run {sweep_run_id} in this experiment (sweep runs: {known})")
    parent = sweep_run_id or (sweeps["run_id"].iloc[-1] if len(sweeps) else None)
    models = runs[run_type.isin(MODEL_RUN_TYPES)]
    if parent is None:
        scope = "every trial and train run of the experiment (it has no sweep run)"
        in_scope = models
    else:
        name = column(sweeps, "tags.mlflow.runName")[sweeps["run_id"] == parent].iloc[0]
        scope = f"the trials of sweep run {name} ({parent})"
        in_scope = models[column(models, f"tags.{PARENT_TAG}") == parent]

    ledger = pd.DataFrame(
        {
            "run_id": in_scope["run_id"],
            "run_name": column(in_scope, "tags.mlflow.runName"),
            "run_type": column(in_scope, "tags.run_type"),
            "trial_id": column(in_scope, "tags.trial_id"),
            "seed": _seeds(in_scope),
            "status": in_scope["status"],
            "error": column(in_scope, f"tags.{ERROR_TAG}"),
        }
    )
    finished = in_scope[in_scope["status"] == "FINISHED"]
    budget = None
    oracle = column(runs, "params.tuner.oracle")[runs["run_id"] == parent]
    if (oracle == "hyperband").any():  # compare trials at Hyperband's final budget only
        epochs = pd.to_numeric(param(finished, "frozen.epochs"), errors="coerce")
        budget = epochs.max()
        finished = finished[epochs == budget]
    identity = [c for c in finished.columns if _is_configuration_param(c)]
    keys = pd.DataFrame({"configuration": _identity(finished, identity), "seed": _seeds(finished)})
    included = finished[~keys.duplicated(keep="last")].copy()

    swept = _swept(included, identity)
    included["configuration"] = configuration_labels(included, swept)
    included["seed"] = _seeds(included)
    ledger["configuration"] = configuration_labels(in_scope, swept)
    ledger["included"] = ledger.index.isin(included.index)
    retried = column(in_scope, "tags.retried") == "true"
    ledger["reason"] = [
        "" if kept else "failed, then run again by --retry-failed" if again else _reason(status)
        for kept, status, again in zip(ledger["included"], ledger["status"], retried, strict=True)
    ]
    if budget is not None:
        lower = ~ledger["included"] & (ledger["status"] == "FINISHED")
        lower &= pd.to_numeric(param(in_scope, "frozen.epochs"), errors="coerce").ne(budget)
        ledger.loc[lower, "reason"] = f"a lower Hyperband budget (final: {budget:g} epochs)"
    return Selection(
        runs=included,
        ledger=ledger.reset_index(drop=True),
        scope=scope,
        parent_run_id=parent,
        outside=len(models) - len(in_scope),
        swept=swept,
    )


def configuration_labels(runs: pd.DataFrame, swept: list[str]) -> pd.Series:
    if not swept:
        return pd.Series(ONE_CONFIGURATION, index=runs.index, dtype=object)
    parts = [f"{key}=" + param(runs, key).fillna("?").astype(str) for key in swept]
    labels = parts[0]
    for part in parts[1:]:
        labels = labels + ", " + part
    return labels.astype(object)


def matching(runs: pd.DataFrame, fixed: dict[str, str]) -> pd.DataFrame:
    """The runs whose params equal every value in `fixed`."""
    mask = np.ones(len(runs), dtype=bool)
    for key, value in fixed.items():
        mask &= (param(runs, key) == value).to_numpy(dtype=bool, na_value=False)
    return runs[mask]


def value_order(value: object) -> tuple:
    """Sort key that puts numbers in numeric order and text after them."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return (1, 0.0, str(value))
    return (0, number if not math.isnan(number) else math.inf, str(value))


def _ordered(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty or "run_id" not in runs.columns:
        return pd.DataFrame(columns=["run_id", "status", "start_time"])
    runs = runs.sort_values(["start_time", "run_id"], kind="stable").reset_index(drop=True)
    params = [name for name in runs.columns if name.startswith("params.")]
    return runs.assign(**{name: runs[name].map(_without_float_noise) for name in params})


def _without_float_noise(value: object) -> object:
    """A logged 0.15000000000000002 (a float step's sum, as Keras Tuner makes it) as 0.15."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    tidy = repr(without_step_rounding(number))
    return tidy if "." in str(value) and len(tidy) < len(str(value)) else value


def _seeds(runs: pd.DataFrame) -> pd.Series:
    seeds = param(runs, "seed").fillna(column(runs, "tags.seed"))
    return pd.to_numeric(seeds, errors="coerce").astype("Int64")


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
    return runs[identity].astype(object).fillna("").astype(str).agg("\x1f".join, axis=1)


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


def _reason(status: str) -> str:
    return {
        "FAILED": "failed",
        "KILLED": "killed",
        "FINISHED": "repeat of a configuration and seed: the latest run is kept",
    }.get(status, f"unfinished ({status})")
