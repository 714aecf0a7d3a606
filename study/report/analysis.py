"""From the runs of an experiment to every table of the report, without touching the store.

The best configuration is chosen on validation (the sweep's objective, averaged over seeds) and
reported on test. Tables 3 to 5 describe the best configuration; Table 6 compares activations
among the runs that match it in every other setting the sweep varied.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from study.objective import OBJECTIVES
from study.report import hyperparameters, inference, phase_scores, question, tables
from study.report.expected_max import expected_max_table
from study.report.importance import start_importance
from study.report.knob_tests import knob_scales, knob_tests
from study.report.paper import Paper
from study.report.selection import ReportError, Selection, select, sweep_param
from study.tracking import outcome
from study.tracking.outcome import column

DEFAULT_OBJECTIVE = "val_accuracy"
TABLE_FILES = {
    "configurations": "configurations.csv",
    "hyperparameters": "table2_hyperparameters.csv",
    "frozen": "table3_before_fine_tuning.csv",
    "fine_tune": "table4_after_fine_tuning.csv",
    "fine_tuning_gain": "table4_fine_tuning_gain.csv",
    "inference": "table5_inference.csv",
    "activations": "table6_activation_error.csv",
    "knobs": "knobs.csv",
    "importance": "importance.csv",
    "interactions": "importance_interactions.csv",
    "partial_dependence": "importance_partial_dependence.csv",
    "runs": "runs.csv",
    "question": "question.csv",
    "champion": "champion_ties.csv",
    "omnibus": "omnibus.csv",
    "family": "comparisons.csv",
    "paired": "paired_differences.csv",
    "not_beaten": "not_beaten.csv",
    "power": "power.csv",
    "backbone": "backbone_variance.csv",
    "knob_tests": "knob_tests.csv",
    "expected_max": "expected_max.csv",
}


@dataclass(frozen=True)
class Analysis:
    experiment: str
    selection: Selection
    objective: str
    split: str  # the split that error rates and Table 5's accuracy are reported on
    compared: question.Compared | None  # the declared question's settings; None without runs
    best: pd.Series | None  # the median-seed run of the best configuration
    best_runs: pd.DataFrame  # every run of the best configuration
    activation_runs: pd.DataFrame  # runs that differ from the best only in activation and seed
    bench: pd.DataFrame  # the `study bench` runs that Table 5 shows
    tables: dict[str, pd.DataFrame]  # keys of TABLE_FILES; a table that cannot be made is absent
    same_data: bool = False  # the runs are on the data the paper's figures are on (NEU)

    @property
    def configuration(self) -> str | None:
        return None if self.best is None else self.best["configuration"]


def analyse(
    experiment: str,
    runs: pd.DataFrame,
    paper: Paper,
    sweep_run_id: str | None = None,
    objective: str | None = None,
    outcomes: tables.Outcomes | None = None,
) -> Analysis:
    """Every table of the report from the DataFrame of `mlflow.search_runs` (and, where the
    runs logged them, their per-image test outcomes: see `tables`)."""
    selection = select(runs, sweep_run_id)
    objective = objective or _sweep_objective(runs, selection.parent_run_id)
    if objective not in OBJECTIVES:
        raise ReportError(
            f"objective {objective!r} is not logged; choose one of {list(OBJECTIVES)}"
        )
    included = selection.runs
    split = tables.error_split(included)
    bench = inference.benchmarks(runs)
    found = {"runs": tables.run_table(selection.ledger, runs, split)}
    if included.empty:
        return Analysis(
            experiment, selection, objective, split, None, None, included, included, bench, found
        )

    knobs = tables.report_knobs(included, selection.swept)
    importance = start_importance(included, knobs, objective)  # fits beside the tables below
    ranking = tables.configurations(included, selection.swept, objective, split, outcomes)
    best_label = ranking["configuration"].iloc[0]
    best_runs = included[included["configuration"] == best_label]
    best = outcome.median_run(best_runs, objective)
    activation_runs = tables.comparable(included, selection.swept, best, vary="activation")
    found |= {
        "configurations": ranking,
        "hyperparameters": hyperparameters.hyperparameter_table(included, paper),
        "inference": inference.inference_table(best_runs, bench, split, best_label, paper),
        "activations": tables.activation_table(activation_runs, split, paper, outcomes),
    }
    asked, declared = question.declared_question(runs, selection.parent_run_id)
    compared = question.compared_settings(
        included, asked, declared, selection.swept, best, split, list(ranking["configuration"])
    )
    found |= question.answer(compared, objective, outcomes)
    found["champion"] = question.champion_ties(included, ranking, objective)
    scales = knob_scales(included, runs, selection.parent_run_id, knobs)
    knob_effects, adjusted = knob_tests(
        included, tables.metric_pct(included, split, asked.metric), scales, asked.alpha
    )
    found["knobs"] = tables.knob_table(included, knobs, objective, split, adjusted, asked.metric)
    if not knob_effects.empty:
        found["knob_tests"] = knob_effects
    oracle = sweep_param(runs, selection.parent_run_id, "tuner.oracle")
    if oracle == "random" and "activation" in knobs:
        found["expected_max"] = expected_max_table(included, objective)
    for stage in tables.STAGES:
        scores = phase_scores.scores_table(best_runs, stage, paper, outcomes)
        if not scores.empty:
            found[stage] = scores
    gain = phase_scores.fine_tuning_gain(best_runs, split)
    if not gain.empty:
        found["fine_tuning_gain"] = gain
    found |= importance()
    fingerprints = set(column(included, "tags.data_fingerprint").dropna())
    return Analysis(
        experiment,
        selection,
        objective,
        split,
        compared,
        best,
        best_runs,
        activation_runs,
        bench,
        found,
        same_data=fingerprints == {paper.data_fingerprint},
    )


def _sweep_objective(runs: pd.DataFrame, parent_run_id: str | None) -> str:
    """The objective the sweep optimised, when its run logged one as `tuner.objective`."""
    return sweep_param(runs, parent_run_id, "tuner.objective") or DEFAULT_OBJECTIVE
