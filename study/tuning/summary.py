"""A sweep's outcome: the trials' statuses and the best configuration as the report names it,
logged on the parent run as its configurations table, its description and its metrics, with
the best configuration written as a study YAML to rerun."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from study.config import StudyConfig
from study.files import atomic_write_text, slug
from study.tracking import outcome
from study.tracking.store import CONFIGURATIONS, NOTE_TAG, REPORT_NOTE, Store
from study.tuning import tuner
from study.tuning.state import sweep_note


@dataclass
class SweepSummary:
    parent_run_id: str
    experiment_id: str
    # Every run of the experiment as the store held them once the sweep's trials ended (each
    # FAILED trial with its FAILED run), fetched once for the summary and the sweep's ends.
    runs: pd.DataFrame
    statuses: dict[str, str] = field(default_factory=dict)  # trial id -> Keras Tuner status
    best_values: dict | None = None  # the best configuration, chosen on the mean objective
    best_score: float | None = None
    best_config_path: Path | None = None
    stop_reason: str | None = None  # why the oracle stopped before the planned trials

    @property
    def completed(self) -> int:
        return sum(status == "COMPLETED" for status in self.statuses.values())

    @property
    def failed(self) -> int:
        return sum(status == "FAILED" for status in self.statuses.values())

    @property
    def all_failed(self) -> bool:
        """Whether the sweep ran trials and none completed."""
        return bool(self.statuses) and not self.completed


def summarise(
    config: StudyConfig,
    store: Store,
    summary: SweepSummary,
    trials: dict,
    planned: int | None,
    project: Path,
) -> None:
    """Fill `summary` from the Keras Tuner `trials` (by id) and log it on its parent run: the
    best configuration as `outcome` ranks the runs that count in `summary.runs` (for Hyperband
    those of the final budget only), written to `project`/best_config.yaml."""
    parent_run_id = summary.parent_run_id
    summary.statuses.update({trial.trial_id: str(trial.status) for trial in trials.values()})
    objective = config.tuner.objective
    found = outcome.counted_runs(summary.runs, parent_run_id)
    counted = found.runs
    table = configurations_table(found, objective)
    store.log_table(parent_run_id, table, CONFIGURATIONS)
    note = f"{sweep_note(config, planned)}\n\n{_outcome_note(config, parent_run_id, table)}"
    store.log(parent_run_id, tags={NOTE_TAG: note})
    best = outcome.best_configuration(counted, objective)
    if best is not None:
        ranked = outcome.ranking(counted, objective).set_index("configuration")
        trial_id = counted.loc[counted["configuration"] == best, "tags.trial_id"].iloc[0]
        summary.best_values = tuner.configuration(trials[trial_id])
        summary.best_score = float(ranked.loc[best, "objective_mean"])
        summary.best_config_path = _write_best_config(config, store, summary, project)
    store.log(
        parent_run_id,
        metrics=[
            ("trials_completed", summary.completed, 0),
            ("trials_failed", summary.failed, 0),
            *(
                [(f"best_mean_{objective}", summary.best_score, 0)]
                if summary.best_score is not None
                else []
            ),
        ],
    )


def configurations_table(counted: outcome.Counted, objective: str) -> pd.DataFrame:
    """The sweep's configurations in `outcome.ranking`'s order, best first: rank, label, the
    value of each swept setting, runs (one per seed), the seeds ranked on and the mean
    objective."""
    ranked = outcome.ranking(counted.runs, objective)
    first = counted.runs.drop_duplicates("configuration").set_index("configuration")
    labels = ranked["configuration"]
    return pd.DataFrame(
        {
            "rank": range(1, len(ranked) + 1),
            "configuration": labels,
            **{key: first[f"params.{key}"].reindex(labels).to_numpy() for key in counted.swept},
            "runs": ranked["n"],
            "ranked_on_seeds": ranked["ranked_on_seeds"],
            f"mean_{objective}": ranked["objective_mean"],
        }
    )


def _outcome_note(config: StudyConfig, parent_run_id: str, table: pd.DataFrame) -> str:
    """The parent run's description after the sweep: where its configurations table is and
    how to make its report (the report names itself here once it is built)."""
    objective = config.tuner.objective
    scored = table[table[f"mean_{objective}"].notna()]
    best = (
        f"best: {scored['configuration'].iloc[0]}, {scored[f'mean_{objective}'].iloc[0]:.4f}"
        if len(scored)
        else "none scored"
    )
    folder = slug(config.name)
    return (
        f"{len(table)} configurations, best first by mean {objective} over their seeds "
        f"({best}): the table {CONFIGURATIONS} in this run's artifacts.\n\n"
        f"{REPORT_NOTE}not built yet; `study report {config.name} --sweep "
        f"{parent_run_id}` writes reports/{folder}/report.html and logs it to this "
        "run's artifacts under report/."
    )


def _write_best_config(
    config: StudyConfig, store: Store, summary: SweepSummary, project: Path
) -> Path:
    best = config.with_values(summary.best_values)
    body = best.model_dump(exclude={"hyperparameters", "tuner", "seeds"})
    body["name"] = f"{config.name}-best"
    body["description"] = (
        f"Best configuration of sweep {config.name} (parent run {summary.parent_run_id}): "
        f"mean {config.tuner.objective} {summary.best_score:.4f} over its seeds."
    )
    path = project / "best_config.yaml"
    atomic_write_text(path, yaml.safe_dump(body, sort_keys=False))
    store.log_artifact(summary.parent_run_id, path)
    return path
