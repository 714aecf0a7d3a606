"""Expected best validation score against the search budget (Dodge et al. 2019), per activation:
how many configurations a user needs to try before another activation would be expected to win.
Only for a random search (its configurations are the independent draws the estimator assumes).
"""

from __future__ import annotations

import pandas as pd

from study.report.analysis import TABLE_FILES, Analysis
from study.report.expected_max import expected_max_figure
from study.report.render import Block, Heading, Image, Paragraph
from study.report.sections.text import objective_name


def section(analysis: Analysis, images: dict[str, bytes]) -> list[Block]:
    if "expected_max" not in analysis.tables or analysis.tables["expected_max"].empty:
        return []
    table = analysis.tables["expected_max"]
    objective = analysis.objective
    images["expected_max.png"] = expected_max_figure(table, objective)
    draws = table.groupby("group", sort=False)["draws"].first()
    return [
        Heading(2, "Expected best score against the search budget"),
        Paragraph(
            "Secondary, descriptive (no test): for each activation, the expected best "
            f"{objective_name(objective)} among n configurations drawn at random over the other "
            "knobs (Dodge et al. 2019: the best of n draws from the empirical distribution of "
            "this random search's configurations, ± one standard deviation of that best). "
            "Configurations per activation: "
            + ", ".join(f"{group} {count}" for group, count in draws.items())
            + f". {_leaders(table)} (`{TABLE_FILES['expected_max']}`)"
        ),
        Image(
            "expected_max.png",
            f"Expected best {objective_name(objective)} after n configurations per activation, "
            "with a band of ± one standard deviation of the best of n.",
        ),
    ]


def _leaders(table: pd.DataFrame) -> str:
    """Which activation leads at which budgets, where every activation has that many draws."""
    led = table.dropna(subset=["leader"]).drop_duplicates("budget")[["budget", "leader"]]
    if led.empty:
        return "No budget has draws of every activation."
    runs = (led["leader"] != led["leader"].shift()).cumsum()
    spans = [
        f"{group['leader'].iloc[0]} from {group['budget'].min()} to {group['budget'].max()}"
        for _, group in led.groupby(runs)
    ]
    return "Expected to lead: " + "; ".join(spans) + " configurations."
