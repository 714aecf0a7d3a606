"""Does any configuration differ? The omnibus tests, the confidence set for the best, and the
study's power.
"""

from __future__ import annotations

import math

import pandas as pd

from study.report import stats
from study.report.analysis import TABLE_FILES, Analysis
from study.report.render import Block, Heading, Paragraph, Table
from study.report.sections import sentences
from study.report.sections.text import DASH, SPLIT_NAMES, names, p_value
from study.report.stats import CONFIDENCE


def section(analysis: Analysis) -> list[Block]:
    """The omnibus tests, the confidence set for the best, and the study's power."""
    if len(analysis.tables["configurations"]) < 2:
        return []
    omnibus = analysis.tables["omnibus"]
    shown = pd.DataFrame(
        {
            "Quantity": [_quantity_name(q) for q in omnibus["quantity"]],
            "Configurations x seeds": [
                f"{row.settings} x {row.seeds}" for row in omnibus.itertuples()
            ],
            "F (df)": [
                DASH
                if math.isnan(row.f_statistic)
                else f"{row.f_statistic:.3g} ({row.df_settings}, {row.df_residual})"
                for row in omnibus.itertuples()
            ],
            "Permutation p": [
                DASH if math.isnan(p) else p_value(p) for p in omnibus["p_permutation"]
            ],
        }
    )
    candidates = analysis.tables["best_set"]
    kept = candidates[candidates["in_best_set"]]
    blocks: list[Block] = [
        Heading(2, "Does any configuration differ?"),
        Paragraph(
            "Before naming a winner: the seed-blocked permutation F test of any difference "
            "among the configurations (the F of a two-way configuration + seed ANOVA, its "
            "p-value from permuting the configurations within each seed), over the seeds every "
            "configuration has; on the error rate the report is about, and on the objective "
            "that picked the champion."
        ),
        Table(shown, TABLE_FILES["omnibus"]),
        Paragraph(
            f"Confidence set for the best ({CONFIDENCE:.0%}, on the "
            f"{SPLIT_NAMES[analysis.split]} error rate): {len(kept)} of {len(candidates)} "
            "configurations, those no other configuration beats by the one-sided sign-flip "
            f"test at {stats.ALPHA:g} / (k − 1): "
            + names(
                [f"{row.configuration} ({row.error_pct_mean:.2f} %)" for row in kept.itertuples()]
            )
            + f" (`{TABLE_FILES['best_set']}`)."
        ),
    ]
    detectable = sentences.power(analysis)
    if detectable:
        blocks.append(Paragraph(detectable + f" (`{TABLE_FILES['power']}`)"))
    return blocks


def _quantity_name(quantity: str) -> str:
    split, _, name = quantity.partition("_")
    unit = " (%)" if name == "error_rate" else ""
    return f"{SPLIT_NAMES[split]} {name.replace('_', ' ')}{unit}"
