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
        items.append(f"Table 6, {split} error rate by activation, same model: {'; '.join(parts)}.")
    items += balance.summary(analysis.best_runs, analysis.split)
    counts = sentences.exclusions(analysis)
    items.append(f"{len(runs)} runs included; excluded: {counts}.")
    if not analysis.same_data:
        items.append(sentences.not_neu(paper))
    return [Heading(2, "Summary"), Bullets(tuple(items))]


def _champion(analysis: Analysis) -> str:
    """The registered best configuration, why it was picked, and how it did."""
    best = analysis.tables["configurations"].iloc[0]
    objective = objective_name(analysis.objective)
    split = SPLIT_NAMES[analysis.split]
    score = objective_cell(analysis.objective, best["objective_mean"], math.nan)
    text = (
        f"Champion (registered): **{best['configuration']}**, picked for the best mean "
        f"{objective} over seeds ({score}{'' if raw(analysis.objective) else ' %'}); "
        f"{split} error rate "
        f"{mean_std(100 * best['error_rate_mean'], 100 * best['error_rate_std'], 2)} % "
        f"({CONFIDENCE:.0%} Wilson interval "
        f"{interval(100 * best['error_rate_ci_low'], 100 * best['error_rate_ci_high'])}, "
        f"n = {best['n']} seeds)."
    )
    omnibus = analysis.tables["omnibus"]
    on_objective = omnibus[omnibus["quantity"] == analysis.objective]
    if len(analysis.tables["configurations"]) > 1 and len(on_objective):
        row = on_objective.iloc[0]
        verdict = "differ" if row["rejects"] else "do not differ detectably"
        text += f" On {objective} itself the configurations {verdict} ({sentences.omnibus(row)})."
    return text


def _backbone(analysis: Analysis) -> str:
    """Which backbones the seeds ran on and, for random backbone draws, how much of the
    run-to-run variance the draw accounts for (`verdicts.backbone_variance`)."""
    row = analysis.tables["backbone"].iloc[0]
    weights = listing(column(analysis.selection.runs, "tags.weights"))
    if row["weights_source"] != "none":
        return f"Backbone weights: {weights}."
    if row["backbones"] == 1:
        return (
            f"Backbone: one random backbone ({weights}) for every seed: every conclusion here "
            "is conditional on it, and how much of the run-to-run variance the backbone draw "
            "accounts for is not estimable from these runs."
        )
    design = f"Backbone: {row['backbones']} random backbone draws crossed with the seeds"
    design += f" ({weights})"
    quantity = f"{SPLIT_NAMES[analysis.split]} error rate"
    if not row["nested"]:
        return f"{design}; some seed ran on two of them, so the draw's share is not estimated."
    if math.isnan(row["share"]):
        return (
            f"{design}. The draw's share of the run-to-run variance is not estimable from the "
            f"{row['seeds']} seeds every configuration has: it needs some draw with two seeds "
            "or more that differ (at least twice as many seeds as model.backbone_draws)."
        )
    return (
        f"{design}. The draw accounts for {row['share']:.0%} of the run-to-run variance of a "
        f"seed's mean {quantity} over the configurations (one-way random-effects ANOVA, "
        f"{row['seeds']} seeds nested in the draws: F = {row['f_statistic']:.3g}, p "
        f"{p_value(row['p_value'], True)}; between draws {row['between_variance']:.3g}, within "
        f"{row['within_variance']:.3g} points²)."
    )
