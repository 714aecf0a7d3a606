"""Knobs: each value of each setting the sweep varied, raw and adjusted for the other settings,
and the whole sweep in one figure.
"""

from __future__ import annotations

import pandas as pd

from study.report import figures
from study.report.analysis import TABLE_FILES, Analysis
from study.report.render import Block, Heading, Image, Paragraph, Table
from study.report.sections.text import SPLIT_NAMES, mean_std, objective_cell, objective_name


def section(analysis: Analysis, images: dict[str, bytes]) -> list[Block]:
    table = analysis.tables["knobs"]
    objective = analysis.objective
    best = analysis.best
    shown = pd.DataFrame(
        {
            "Setting": table["knob"].str.replace("_", " "),
            "Value": [
                f"{row.value} (best)" if best.get(f"params.{row.knob}") == row.value else row.value
                for row in table.itertuples()
            ],
            "Runs": table["n"],
            "Configurations": table["configurations"],
            objective_name(objective, unit=True): [
                objective_cell(objective, row.objective_mean, row.objective_std)
                for row in table.itertuples()
            ],
            f"{SPLIT_NAMES[analysis.split].capitalize()} error rate (%)": [
                mean_std(row.error_pct_mean, row.error_pct_std, 2) for row in table.itertuples()
            ],
            "Adjusted (± standard error)": [
                mean_std(row.adjusted_mean, row.adjusted_se, 2) for row in table.itertuples()
            ],
        }
    )
    adjusted = table["adjusted_metric"].iloc[0] if len(table) else ""
    figure = figures.sweep_overview(
        analysis.selection.runs,
        analysis.selection.swept,
        objective,
        analysis.split,
        analysis.configuration,
    )
    images["sweep.png"] = figures.png(figure)
    listed: list[Block] = [
        Paragraph(
            "Each value of each setting the sweep varied (of a phase that ran) over every "
            "included run that has it, whatever the other settings were: raw means of what was "
            "sampled, whose spread includes the other settings' effect, and which a search that "
            "tried some values only beside others confounds. The adjusted column removes that, "
            f"on the question's metric ({adjusted}, %): the seed-blocked additive model of the "
            "knob tests (a text knob as a factor, a numeric one as a line on its searched "
            "scale), its prediction for every run with the setting at this value, averaged "
            "over the runs, with its standard error (equal to the raw mean in a full grid; "
            "empty where the design cannot separate the knobs). (best) marks the best "
            "configuration's value; the configurations table compares whole configurations."
        ),
        Table(shown, TABLE_FILES["knobs"]),
    ]
    if table.empty:
        listed = [Paragraph("The sweep varied no setting of a phase that ran: no knob to show.")]
    return [
        Heading(2, "Knobs: the settings the sweep varied"),
        *listed,
        Image(
            "sweep.png",
            f"The whole sweep: each run's {objective_name(objective)} (top) and "
            f"{SPLIT_NAMES[analysis.split]} error rate (bottom) against each setting the sweep "
            "varied (against the seed when nothing varied); the best configuration's runs in "
            "orange.",
        ),
    ]
