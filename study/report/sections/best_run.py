"""The best configuration's runs: which run the single-run figures show, and the confusion matrix
added up over its seeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from study.report import figures
from study.report.analysis import Analysis
from study.report.render import Block, Heading, Image, Paragraph
from study.report.sections.text import objective_name

if TYPE_CHECKING:  # document imports the sections: naming its type must not import it
    from study.report.document import BestRunDetails


def section(analysis: Analysis, details: BestRunDetails, images: dict[str, bytes]) -> list[Block]:
    best = analysis.best
    name = best.get("tags.mlflow.runName") or best["run_id"]
    blocks: list[Block] = [
        Heading(2, "The best configuration's runs"),
        Paragraph(
            f"Figures of single runs show run `{name}` (`{best['run_id']}`), seed {best['seed']}: "
            f"of the best configuration's {len(analysis.best_runs)} runs, the one of median "
            f"{objective_name(analysis.objective)}, not the luckiest seed."
        ),
    ]
    if details.confusion is None:
        blocks.append(Paragraph("**Missing**: no run has a `confusion_matrix.csv` artifact."))
        return blocks
    split = "test" if analysis.split == "test" else "validation"
    matrix = details.confusion
    title = f"Best configuration, {details.pooled_runs} seeds added up: {split} split"
    figure = figures.confusion_matrix(matrix.to_numpy(), list(matrix.columns), title)
    images["confusion_matrix.png"] = figures.png(figure)
    blocks.append(
        Image(
            "confusion_matrix.png",
            f"Confusion matrix of the best configuration's final models on the {split} split, "
            f"added up over its {details.pooled_runs} seeds: true classes as rows, predicted "
            "classes as columns, counts of image predictions.",
        )
    )
    return blocks
