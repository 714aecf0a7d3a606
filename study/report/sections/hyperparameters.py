"""Table 2: the paper's hyperparameters beside the values the runs used."""

from __future__ import annotations

import pandas as pd

from study.report.analysis import TABLE_FILES, Analysis
from study.report.render import Block, Heading, Paragraph, Table


def section(analysis: Analysis) -> list[Block]:
    table = analysis.tables["hyperparameters"]
    shown = pd.DataFrame(
        {
            "Hyperparameter": table["hyperparameter"],
            "Paper: before fine-tuning": table["paper_before"],
            "Paper: after fine-tuning": table["paper_after"],
            "Paper: source": table["paper_source"],
            "Ours: before fine-tuning": table["ours_before"],
            "Ours: after fine-tuning": table["ours_after"],
        }
    )
    return [
        Heading(2, "Table 2: hyperparameters"),
        Paragraph(
            "The paper's Table 2 (and the protocol facts its text gives) beside the values our "
            f"{len(analysis.selection.runs)} included runs used, from their logged params; "
            "`varies` lists every value the sweep tried."
        ),
        Table(shown, TABLE_FILES["hyperparameters"]),
    ]
