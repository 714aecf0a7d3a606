"""The summary: the verdict, the champion, the study's power, its design and what was left out, in
bullets.
"""

from __future__ import annotations

import math

from study.report import balance
from study.report.analysis import Analysis
from study.report.paper import Paper
from study.report.render import Block, Bullets, Heading
from study.report.sections import sentences
from study.report.sections.text import (
    SPLIT_NAMES,
    interval,
    listing,
    mean_std,
    names,
    objective_cell,
    objective_name,
    p_value,
    raw,
    signed,
)
from study.report.stats import CONFIDENCE
from study.tracking.outcome import column


def section(analysis: Analysis, paper: Paper) -> list[Block]:
    split = SPLIT_NAMES[analysis.split]
    runs = analysis.selection.runs
    items = [sentences.verdict(analysis), _champion(analysis)]
    detectable = sentences.power(analysis)
    if detectable:
        items.append(detectable)
    items += [_backbone(analysis), sentences.split_design(analysis)]
    if "fine_tune" in analysis.tables:
        items.append(f"Fine-tuning: {sentences.phase(analysis, 'fine_tune')}.")
    activations = analysis.tables["activations"]
    measured = activations[activations["n"] > 0]
    if len(measured) > 1:
        parts = [
            f"{row.activation} {mean_std(row.error_pct_mean, row.error_pct_std, 2)} %"
            + (
                ""
                if math.isnan(row.p_permutation)
                else f" (vs elu {signed(row.difference_pct)} points, permutation p "
                f"{p_value(row.p_permutation, equals=True)}, "
                f"Holm {p_value(row.p_holm, equals=True)})"
            )
            for row in measured.itertuples()
        ]
        role = "primary" if sentences.table6_is_the_question(analysis) else "secondary"
        items.append(
            f"Table 6 ({role}), {split} error rate by activation, same model: {'; '.join(parts)}."
        )
    items += balance.summary(analysis.best_runs, analysis.split)
    counts = sentences.exclusions(analysis)
    items.append(f"{len(runs)} runs included; excluded: {counts}.")
    if not analysis.same_data:
        items.append(sentences.not_neu(paper))
    return [Heading(2, "Summary"), Bullets(tuple(items))]


def _champion(analysis: Analysis) -> str:
    """The registered best configuration, why it was picked, how it did, and whether its lead on
    the objective is within noise of the next ones."""
    best = analysis.tables["configurations"].iloc[0]
    objective = objective_name(analysis.objective)
    split = SPLIT_NAMES[analysis.split]
    score = objective_cell(analysis.objective, best["objective_mean"], math.nan)
    text = (
        f"Best (registered): **{best['configuration']}**, the configuration of the best mean "
        f"{objective} over seeds ({score}{'' if raw(analysis.objective) else ' %'}); 'best' "
        f"means this choice on validation throughout the report. Its {split} error rate: "
        f"{mean_std(100 * best['error_rate_mean'], 100 * best['error_rate_std'], 2)} % "
        f"({CONFIDENCE:.0%} Wilson interval over seeds and test images "
        f"{interval(100 * best['error_rate_ci_low'], 100 * best['error_rate_ci_high'])}, "
        f"n = {best['n']} seeds)."
    )
    ties = analysis.tables.get("champion")
    tied = ties[ties["tied"]] if ties is not None else ties
    if tied is not None and len(tied):
        unit = 1 if raw(analysis.objective) else 100
        text += (
            f" Tied within noise with {names(tied['configuration'])}: its lead on {objective} "
            "over them is at most one standard error of the paired per-seed leads (largest "
            f"lead {unit * tied['lead'].max():.2f}, its standard error "
            f"{unit * tied.loc[tied['lead'].idxmax(), 'lead_se']:.2f}"
            f"{'' if raw(analysis.objective) else ' points'}); the choice among them rests on "
            "the ranking's rule, not on a difference (`champion_ties.csv`)."
        )
    return text


def _backbone(analysis: Analysis) -> str:
    """Which backbones the seeds ran on, and so what the answer covers."""
    weights = listing(column(analysis.selection.runs, "tags.weights"))
    if "question" not in analysis.tables:
        return f"Backbone weights: {weights}."
    asked = analysis.tables["question"].iloc[0]
    draws = int(asked["backbones"])
    if draws <= 1:
        return f"Backbone weights: {weights}."
    shared = "one per seed" if asked["answers"] == "another random backbone" else "shared"
    return f"Backbone weights: {draws} random backbones, {shared} (each run's in `runs.csv`)."
