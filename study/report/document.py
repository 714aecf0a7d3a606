"""The report put together: its title, the sections of `study.report.sections` in reading order
(or, without a finished run, what was left out), and the reference. An `Analysis` (and the best
run's curves and confusion matrix) in; blocks, the CSV tables and the PNG figures out. Nothing
here reads the store or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

import study
from study.report import balance, tables
from study.report.analysis import TABLE_FILES, Analysis
from study.report.paper import Paper
from study.report.render import Block, Heading, Paragraph
from study.report.sections import (
    activations,
    answer,
    best_run,
    configurations,
    expected_max,
    hyperparameters,
    importance,
    inference,
    knobs,
    provenance,
    scores,
    summary,
    verdict,
)


@dataclass(frozen=True)
class BestRunDetails:
    """What the report shows of the best run beyond its metrics."""

    histories: dict[str, dict[str, list[float]]]  # stage -> curve (loss, val_loss, ...) -> epochs
    confusion: pd.DataFrame | None  # confusion_matrix.csv added up over the best runs' seeds
    pooled_runs: int  # how many runs' confusion matrices were added up


@dataclass(frozen=True)
class Report:
    blocks: list[Block]
    csv: dict[str, pd.DataFrame]  # file name -> table
    figures: dict[str, bytes]  # file name -> PNG


def compose(analysis: Analysis, details: BestRunDetails, paper: Paper) -> Report:
    images: dict[str, bytes] = {}
    blocks: list[Block] = [
        Heading(1, f"Report: {analysis.experiment}"),
        Paragraph(
            f"The tables of {paper.short} rebuilt from the runs of MLflow experiment "
            f"`{analysis.experiment}`, beside the paper's figures. Made by study "
            f"{study.__version__} (`study report`)."
        ),
    ]
    if analysis.best is None:
        blocks += provenance.section(analysis)
        blocks += [
            Heading(2, "Results"),
            Paragraph(
                "**No finished runs**: there is nothing to tabulate. The tables need at least "
                "one FINISHED trial or train run in scope; every run in scope is counted above "
                "and listed in `runs.csv`."
            ),
        ]
    else:
        blocks += verdict.section(analysis, images)
        blocks += summary.section(analysis, paper)
        blocks += provenance.section(analysis)
        blocks += balance.section(analysis.best_runs, analysis.split)
        blocks += configurations.section(analysis)
        blocks += answer.section(analysis)
        blocks += hyperparameters.section(analysis)
        for stage in tables.STAGES:
            blocks += scores.section(analysis, stage, paper, details, images)
        blocks += inference.section(analysis, paper)
        blocks += activations.section(analysis, paper, images)
        blocks += knobs.section(analysis, images)
        blocks += importance.section(analysis, images)
        blocks += expected_max.section(analysis, images)
        blocks += best_run.section(analysis, details, images)
    blocks += [
        Heading(2, "Reference"),
        Paragraph(paper.citation),
        Paragraph(
            f"{paper.data_note} The paper's figures used here are kept, with this citation, in "
            "`study/report/paper.yaml`."
        ),
    ]
    csv = {TABLE_FILES[name]: table for name, table in analysis.tables.items()}
    return Report(blocks, csv, images)
