"""The report put together: its title, the sections of `study.report.sections` in reading order
(or, without a finished run, what was left out), and the reference. An `Analysis` (and the best
run's curves and confusion matrix) in; blocks, the CSV tables and the PNG figures out. Nothing
here reads the store or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

import study
from study.report import balance, replication, tables
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
from study.report.sections import replication as replication_section
from study.report.selection import ReportError


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


def compose_replication(analyses: list[Analysis], data_files: list[str]) -> Report:
    """The replication report of one study over several data sets (one `Analysis` each, in the
    order given): each data set's verdict, the pooled comparisons, and each data set's own
    tables under its prefix. Raises ReportError when a data set has no finished run or the
    experiments declared different questions."""
    for analysis in analyses:
        if analysis.best is None:
            raise ReportError(
                f"experiment {analysis.experiment!r} has no finished runs: nothing to replicate"
            )
    replication.check_same_question({a.experiment: a.tables["question"] for a in analyses})
    table = replication.meta_analysis({a.experiment: a.tables["family"] for a in analyses})
    names = ", ".join(f"`{a.experiment}`" for a in analyses)
    images: dict[str, bytes] = {}
    blocks: list[Block] = [
        Heading(1, f"Replication: {', '.join(a.experiment for a in analyses)}"),
        Paragraph(
            f"Does the answer replicate? The MLflow experiments {names}, one study on "
            f"{len(analyses)} data sets. Made by study {study.__version__} (`study report` with "
            "several experiments)."
        ),
        *replication_section.section(analyses, table, data_files, images),
    ]
    csv = {replication_section.REPLICATION_FILE: table}
    for analysis in analyses:
        prefix = replication_section.file_prefix(analysis.experiment)
        for name in replication_section.PER_DATA_SET:
            if name in analysis.tables:
                csv[f"{prefix}_{TABLE_FILES[name]}"] = analysis.tables[name]
    return Report(blocks, csv, images)
