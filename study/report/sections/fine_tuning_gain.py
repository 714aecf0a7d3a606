"""Did fine-tuning help? Each run's accuracy after fine-tuning against its own frozen phase."""

from __future__ import annotations

import math

import pandas as pd

from study.report.analysis import TABLE_FILES, Analysis
from study.report.render import Block, Paragraph, Table
from study.report.sections.text import DASH, SPLIT_NAMES, difference, p_value, signed


def section(analysis: Analysis) -> list[Block]:
    gain = analysis.tables.get("fine_tuning_gain")
    if gain is None:
        return []
    shown = pd.DataFrame(
        {
            "Split": [SPLIT_NAMES[split].capitalize() for split in gain["split"]],
            "Seeds": gain["pairs"],
            "Before fine-tuning (%)": [f"{v:.2f}" for v in gain["frozen_mean"]],
            "After fine-tuning (%)": [f"{v:.2f}" for v in gain["fine_tune_mean"]],
            "Seeds higher / level / lower": [
                f"{row.higher} / {row.level} / {row.lower}" for row in gain.itertuples()
            ],
            "Difference (points, 95% CI)": [
                difference(row) if row.split != "val" else signed(row.difference_pct)
                for row in gain.itertuples()
            ],
            "Permutation p": [DASH if math.isnan(p) else p_value(p) for p in gain["p_permutation"]],
        }
    )
    return [
        Paragraph(
            "Did fine-tuning help? Each run's accuracy after fine-tuning against its own frozen "
            "phase, mean over the best configuration's seeds. The test row is one comparison "
            "(no multiplicity correction): the sign-flip permutation test of the per-seed "
            "differences and their t interval, as under Comparisons above. Validation chose both "
            "phases' stopping epochs (and whether the fine-tuned model is kept), so its row "
            "counts seeds and is not tested."
        ),
        Table(shown, TABLE_FILES["fine_tuning_gain"]),
    ]
