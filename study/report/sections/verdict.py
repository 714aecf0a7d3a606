"""The verdict, which opens the report: whether any configuration differs, and the error rate
per activation in one figure.
"""

from __future__ import annotations

from study.report import figures
from study.report.analysis import Analysis
from study.report.paper import Paper
from study.report.render import Block, Heading, Image, Paragraph
from study.report.sections import sentences
from study.report.sections.text import SPLIT_NAMES
from study.report.stats import CONFIDENCE


def section(analysis: Analysis, paper: Paper, images: dict[str, bytes]) -> list[Block]:
    """The report's answer in one sentence, and the error per activation, before any table."""
    blocks: list[Block] = [Heading(2, "Verdict"), Paragraph(sentences.verdict(analysis))]
    table = analysis.tables["activations"]
    if (table["n"] > 0).any():
        split = SPLIT_NAMES[analysis.split]
        figure = figures.activation_errors(
            analysis.activation_runs,
            table,
            analysis.split,
            f"{paper.short}, not comparable" if analysis.same_data else None,
        )
        images["activation_error.png"] = figures.png(figure)
        blocks.append(
            Image(
                "activation_error.png",
                f"{split.capitalize()} error rate per activation, same model and protocol "
                f"(Table 6): one dot per seed, the mean with its {CONFIDENCE:.0%} Wilson interval"
                + (
                    ", and the paper's figure (other models; its elu value is a loss)."
                    if analysis.same_data
                    else "."
                ),
            )
        )
    return blocks
