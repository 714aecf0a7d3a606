"""Tables 3 and 4: the best configuration's scores after each phase beside the paper's, and its
median run's learning curves.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from study.report import figures, tables
from study.report.analysis import TABLE_FILES, Analysis
from study.report.paper import Paper
from study.report.render import Block, Heading, Image, Paragraph, Table
from study.report.sections import fine_tuning_gain, sentences
from study.report.sections.text import DASH, PHASES, SPLIT_NAMES, mean_std
from study.report.stats import CONFIDENCE
from study.tracking.outcome import ONE_CONFIGURATION, column

if TYPE_CHECKING:  # document imports the sections: naming its type must not import it
    from study.report.document import BestRunDetails


def section(
    analysis: Analysis, stage: str, paper: Paper, details: BestRunDetails, images: dict[str, bytes]
) -> list[Block]:
    number = paper.scores[stage]["table"]
    title = f"Table {number}: {tables.STAGES[stage]}"
    if stage not in analysis.tables:
        return [
            Heading(2, title),
            Paragraph(
                f"**Missing**: no run of the best configuration has {PHASES[stage]} "
                f"(`{stage}.epochs` = 0, or the phase logged no scores), so Table {number} "
                "cannot be rebuilt."
            ),
        ]
    table = analysis.tables[stage]
    most = int(table["n"].max())
    paper_label = sentences.paper_label(analysis).lower()
    rows = []
    for (key, label), group in table.groupby(["metric", "label"], sort=False):
        scale, digits = (1, 4) if key == "loss" else (100, 2)
        row = {"Metric": label if key == "loss" else f"{label} (%)"}
        for split, found in group.groupby("split", sort=False):
            cell = found.iloc[0]
            text = mean_std(scale * cell["mean"], scale * cell["std"], digits)
            if 0 < cell["n"] < most:
                text += f" (n = {cell['n']})"
            row[f"{SPLIT_NAMES[split].capitalize()} (ours)"] = text
        for split in ("train", "val"):
            value = group.loc[group["split"] == split, "paper"].iloc[0]
            row[f"{SPLIT_NAMES[split].capitalize()} ({paper_label})"] = (
                DASH if math.isnan(value) else f"{scale * value:.2f}" if scale > 1 else f"{value:g}"
            )
        rows.append(row)
    blocks: list[Block] = [
        Heading(2, title),
        Paragraph(
            f"Scores after {sentences.phase(analysis, stage)} of the best configuration "
            f"(**{analysis.configuration}**): mean ± std over n = {most} seeds; "
            f"{CONFIDENCE:.0%} intervals in the CSV. Precision, recall and AUC are Keras's "
            "metrics on one-hot targets at threshold 0.5, as the paper reports them; the macro "
            "rows are class averages the paper does not give. The paper has no test split: its "
            "validation split also chose the early-stopping epoch, as ours does, so "
            + (
                "only our test column is free of selection."
                if analysis.split == "test"
                else "these runs, which have no test split either, have no unbiased column."
            )
        ),
        Table(pd.DataFrame(rows), TABLE_FILES[stage]),
    ]
    if stage == "fine_tune":
        kept = column(analysis.best_runs, "tags.kept_model")
        blocks.append(
            Paragraph(
                "The final model of a run is the fine-tuned one only when a fine-tuning epoch "
                "beat the frozen model on the early-stopping monitor (unless "
                "`fine_tune.keep_frozen_if_better` is false); this table shows the fine-tuned "
                f"model either way. Fine-tuned model kept in {int((kept == 'fine_tune').sum())} "
                f"of {len(kept)} seeds"
                + (f" ({int(kept.isna().sum())} did not record it)." if kept.isna().any() else ".")
            )
        )
        blocks += fine_tuning_gain.section(analysis)
    if not analysis.same_data:
        blocks.append(Paragraph(sentences.not_neu(paper)))
    history = details.histories.get(stage)
    if history:
        best = analysis.best
        name = f"learning_curves_{stage}.png"
        kept = best.get(f"metrics.{stage}_best_epoch", np.nan)
        figure = figures.learning_curves(
            history,
            f"{_best_run_title(analysis)}: {tables.STAGES[stage]}",
            None if math.isnan(kept) else int(kept),
        )
        images[name] = figures.png(figure)
        blocks.append(
            Image(
                name,
                f"Learning curves of the best configuration's median-seed run, "
                f"{tables.STAGES[stage]}: loss and accuracy per epoch on training and "
                "validation data; the grey line marks the epoch whose weights were kept.",
            )
        )
    return blocks


def _best_run_title(analysis: Analysis) -> str:
    seed = f"seed {analysis.best['seed']}"
    if analysis.configuration == ONE_CONFIGURATION:
        return f"Median run ({seed})"
    return f"Median run ({analysis.configuration}, {seed})"
