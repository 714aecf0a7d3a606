"""The verdict, which opens the report: the answer to the study's declared question in one
sentence, and its comparisons seed by seed in one figure.
"""

from __future__ import annotations

from study.report import figures
from study.report.analysis import Analysis
from study.report.render import Block, Heading, Image, Paragraph
from study.report.sections import sentences


def section(analysis: Analysis, images: dict[str, bytes]) -> list[Block]:
    """The report's answer in one sentence, and the declared comparisons' per-seed
    differences, before any table."""
    blocks: list[Block] = [Heading(2, "Verdict"), Paragraph(sentences.verdict(analysis))]
    paired = analysis.tables.get("paired")
    if paired is not None and len(paired):
        asked = analysis.tables["question"].iloc[0]
        family = analysis.tables["family"]
        quantity = sentences.metric_name(asked)
        images["verdict.png"] = figures.png(figures.paired_differences(paired, family, quantity))
        more = len(family) - figures.FAMILY_ROWS
        blocks.append(
            Image(
                "verdict.png",
                f"The declared comparisons: each seed's difference in {quantity} (a dot), the "
                "mean with its 95% t interval over seeds (red: detectable, orange: weak "
                "evidence, black: no difference detected)"
                + (f"; {more} more comparisons in comparisons.csv." if more > 0 else "."),
            )
        )
    return blocks
