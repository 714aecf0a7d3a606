"""Which runs a report covers: one sweep (or the experiment's train runs), the runs that count
by the study's rules (`study.tracking.outcome`), and a ledger of everything left out and why.

Runs arrive as the DataFrame of `mlflow.search_runs`: columns `run_id`, `status`,
`start_time`, `params.<key>` (strings), `metrics.<key>` and `tags.<key>`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.errors import StudyError
from study.tracking.outcome import (
    at_budget,
    column,
    configuration_labels,
    counted_runs,
    ordered,
    param,
    seeds,
)
from study.tracking.store import ERROR_TAG


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


def select(runs: pd.DataFrame, sweep_run_id: str | None = None) -> Selection:
    """The runs of the chosen sweep (default: the latest), or without a sweep every trial and
    train run; those that count (`outcome.counted_runs`) are included."""
    runs = ordered(runs)
    sweeps = runs[column(runs, "tags.run_type") == "sweep"]
    if sweep_run_id is not None and sweep_run_id not in set(sweeps["run_id"]):
        known = ", ".join(sweeps["run_id"]) or "none"
        raise ReportError(f"no sweep run {sweep_run_id} in this experiment (sweep runs: {known})")
    parent = sweep_run_id or (sweeps["run_id"].iloc[-1] if len(sweeps) else None)
    if parent is None:
        scope = "every trial and train run of the experiment (it has no sweep run)"
    else:
        name = column(sweeps, "tags.mlflow.runName")[sweeps["run_id"] == parent].iloc[0]
        scope = f"the trials of sweep run {name} ({parent})"
    counted = counted_runs(runs, parent)
    in_scope = counted.scope
    ledger = pd.DataFrame(
        {
            "run_id": in_scope["run_id"],
            "run_name": column(in_scope, "tags.mlflow.runName"),
            "run_type": column(in_scope, "tags.run_type"),
            "trial_id": column(in_scope, "tags.trial_id"),
            "seed": seeds(in_scope),
            "status": in_scope["status"],
            "error": column(in_scope, f"tags.{ERROR_TAG}"),
            "configuration": configuration_labels(in_scope, counted.swept),
        }
    )
    ledger["included"] = ledger.index.isin(counted.runs.index)
    retried = column(in_scope, "tags.retried") == "true"
    ledger["reason"] = [
        "" if kept else "failed, then run again by --retry-failed" if again else _reason(status)
        for kept, status, again in zip(ledger["included"], ledger["status"], retried, strict=True)
    ]
    if counted.budget is not None:
        lower = ~ledger["included"] & (ledger["status"] == "FINISHED")
        lower &= ~at_budget(in_scope, counted.budget)
        ledger.loc[lower, "reason"] = f"a lower Hyperband budget (final: {counted.budget:g} epochs)"
    return Selection(
        runs=counted.runs,
        ledger=ledger.reset_index(drop=True),
        scope=scope,
        parent_run_id=parent,
        outside=counted.outside,
        swept=counted.swept,
    )


def sweep_param(runs: pd.DataFrame, parent_run_id: str | None, name: str) -> str | None:
    """The param `name` the sweep's parent run logged (`tuner.oracle`, `hyperparameters`);
    None without a sweep or the param."""
    if parent_run_id is None or f"params.{name}" not in runs.columns:
        return None
    logged = runs.loc[runs["run_id"] == parent_run_id, f"params.{name}"].dropna()
    return logged.iloc[0] if len(logged) else None


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


def _reason(status: str) -> str:
    return {
        "FAILED": "failed",
        "KILLED": "killed",
        "FINISHED": "repeat of a configuration and seed: the latest run is kept",
    }.get(status, f"unfinished ({status})")
