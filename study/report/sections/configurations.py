"""The best configuration: every configuration ranked on the objective, compared with the first on
the error rate, paired by seed.
"""

from __future__ import annotations

import math

import pandas as pd

from study.report.analysis import TABLE_FILES, Analysis
from study.report.render import Block, Heading, Paragraph, Table
from study.report.sections.text import (
    DASH,
    SHOWN_CONFIGURATIONS,
    SPLIT_NAMES,
    difference,
    interval,
    mean_std,
    objective_cell,
    objective_name,
    p_value,
)
from study.report.stats import CONFIDENCE


def section(analysis: Analysis) -> list[Block]:
    ranking = analysis.tables["configurations"]
    objective = analysis.objective
    split = SPLIT_NAMES[analysis.split]
    shown = pd.DataFrame(
        {
            "Rank": ranking["rank"],
            "Configuration": ranking["configuration"],
            "Seeds": [
                f"{row.seeds} (n = {row.n})"
                + (f"; missing {row.missing_seeds}" if row.missing_seeds else "")
                for row in ranking.itertuples()
            ],
            objective_name(objective, unit=True): [
                objective_cell(objective, row.objective_mean, row.objective_std)
                for row in ranking.itertuples()
            ],
            f"{split.capitalize()} error rate (%)": [
                mean_std(100 * row.error_rate_mean, 100 * row.error_rate_std, 2)
                for row in ranking.itertuples()
            ],
            f"{CONFIDENCE:.0%} Wilson interval (%)": [
                interval(100 * row.error_rate_ci_low, 100 * row.error_rate_ci_high)
                for row in ranking.itertuples()
            ],
            "Difference from rank 1 (points)": [difference(row) for row in ranking.itertuples()],
            "Permutation p / Holm": [_p_pair(row) for row in ranking.itertuples()],
        }
    ).head(SHOWN_CONFIGURATIONS)
    more = len(ranking) - len(shown)
    shared = ranking["ranked_on_seeds"].iloc[0]
    return [
        Heading(2, "Best configuration"),
        Paragraph(
            f"Configurations ranked by mean {objective_name(objective)} over the seeds every "
            f"configuration finished ({shared or 'none shared: each over its own seeds'}; the "
            "objective column shows the mean over all of a configuration's seeds; ties: more "
            f"seeds first); the first is the best configuration found, reported on the {split} "
            "split, which played no part in choosing it. Each other configuration is compared "
            "with it on the error rate, paired by seed (the difference's t interval over seeds; "
            "the sign-flip permutation test, Holm-adjusted over every other configuration; the "
            "interval for new test images too in the CSV)."
            + (f" {more} more configurations are in the CSV." if more > 0 else "")
        ),
        Table(shown, TABLE_FILES["configurations"]),
    ]


def _p_pair(row) -> str:
    p = getattr(row, "p_permutation", math.nan)
    if p is None or math.isnan(p):
        return DASH
    return f"{p_value(p)} / {p_value(row.p_holm)}"
