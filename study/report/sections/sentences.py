"""The findings more than one section states, each worded once."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.report import stats
from study.report.analysis import Analysis
from study.report.backbones import FEWEST_DRAWS
from study.report.paper import Paper
from study.report.sections.text import (
    PHASES,
    SPLIT_NAMES,
    difference,
    listing,
    mean_std,
    names,
    p_value,
)
from study.report.stats import CONFIDENCE
from study.tracking.outcome import param
from study.vocabulary import QUESTION_METRICS


def verdict(analysis: Analysis) -> str:
    """The answer to the study's declared question, graded: "no detectable difference" (with
    within how many points, and the smallest difference the test detects), "weak evidence" (a
    comparison's own p below alpha that the gate or Holm does not confirm), or "A is worse than
    B" (the gate rejects and the Holm p is below alpha); then the settings not beaten, and what
    the answer covers."""
    ranking = analysis.tables["configurations"]
    if len(ranking) < 2 or "family" not in analysis.tables or analysis.tables["family"].empty:
        best = ranking.iloc[0]
        return (
            f"One configuration, nothing to compare: {SPLIT_NAMES[analysis.split]} error rate "
            f"{mean_std(100 * best['error_rate_mean'], 100 * best['error_rate_std'], 2)} % "
            f"over {best['n']} seed(s)."
        )
    asked = analysis.tables["question"].iloc[0]
    family = analysis.tables["family"]
    gate = analysis.tables["omnibus"].iloc[0]
    what = settings_name(asked)
    quantity = metric_name(asked)
    alpha = float(asked["alpha"])
    evidence = omnibus(gate, what)
    parts = []
    if math.isnan(gate["p_permutation"]):
        kind = "declared" if asked["declared"] else "default"
        return (
            f"**No test of the {kind} question**: the {gate['settings']} {what} share "
            f"{gate['seeds']} seed(s) with any variation between them, so nothing can be "
            "compared; what the runs describe is in the tables below. " + scope(asked)
        )
    if not gate["rejects"]:
        parts.append(
            f"**No detectable difference** among the {int(asked['settings'])} {what} in "
            f"{quantity} ({evidence}){_within(family)}{_detectable(analysis)}"
        )
    else:
        parts.append(f"**The {what} differ** in {quantity} ({evidence})")
        shown = family[family["grade"] == "detectable"]
        if len(shown):
            parts.append(
                names(
                    f"{_worse(row)} by {difference(row)} points (Holm p "
                    f"{p_value(row.p_holm, True)})"
                    for row in shown.itertuples()
                )
            )
        level = family[family["grade"] == "none"]
        if len(level):
            which = "other " if len(shown) else ""
            parts.append(
                f"no detectable difference in the {which}{len(level)} comparison(s) of the "
                f"family{_within(level)}"
            )
    weak = family[family["grade"] == "weak"]
    if len(weak):
        reason = "the test of any difference" if not gate["rejects"] else "Holm's adjustment"
        parts.append(
            names(
                f"weak evidence that {_worse(row)} ({difference(row)} points, p "
                f"{p_value(row.p_permutation, True)} alone; not confirmed by {reason} at "
                f"{alpha:g})"
                for row in weak.itertuples()
            )
        )
    if gate["rejects"] and not (family["grade"] == "detectable").any():
        parts.append(f"the family's tests cannot say which{_detectable(analysis)}")
    if "not_beaten" in analysis.tables:
        found = analysis.tables["not_beaten"]
        kept = found[found["not_beaten"]]
        parts.append(
            f"not beaten: all {len(found)}"
            if len(kept) == len(found)
            else f"not beaten: {len(kept)} of {len(found)} ({names(kept['setting'])})"
        )
    return "; ".join(parts) + ". " + scope(asked)


def table6_is_the_question(analysis: Analysis) -> bool:
    """Whether Table 6's comparisons (each activation against elu on the error rate) are the
    study's declared question."""
    asked = analysis.tables["question"].iloc[0]
    declared = (asked["compare"], asked["family"], asked["reference"], asked["metric"])
    return declared == ("activation", "reference", "elu", "error_rate")


def settings_name(asked: pd.Series) -> str:
    """What the question compares, in the plural: "activations", "configurations"."""
    compare = str(asked["compare"])
    if compare == "configurations":
        return "configurations"
    return {"activation": "activations", "optimizer": "optimizers"}.get(
        compare, f"values of {compare.replace('_', ' ')}"
    )


def metric_name(asked: pd.Series) -> str:
    return f"{SPLIT_NAMES[str(asked['split'])]} {QUESTION_METRICS[str(asked['metric'])]}"


def backbones_covered(asked: pd.Series, each: bool = False) -> str:
    """The backbones the comparisons hold for (the question table's `answers`): "this
    backbone", "another random backbone" (one per seed; with `each`, "another random backbone
    each") or "these D backbones"."""
    answers = str(asked["answers"])
    if answers == "this backbone":
        return answers
    if answers == "another random backbone":
        return f"{answers} each" if each else answers
    return f"these {int(asked['backbones'])} backbones"


def scope(asked: pd.Series) -> str:
    """What the comparisons cover: which backbones (`backbones_covered`), new seeds, and the
    one test split."""
    answers = str(asked["answers"])
    covered = backbones_covered(asked)
    split = SPLIT_NAMES[str(asked["split"])]
    if answers == "this backbone":
        backbone = (
            "this one random backbone"
            if asked["weights_source"] == "none"
            else f"{covered} ({asked['weights_source']})"
        )
        return (
            f"It holds for {backbone}, for new seeds trained again on this data, scored on "
            f"this {split} split."
        )
    if answers == "another random backbone":
        return (
            f"Each seed ran on its own random backbone, so it holds for {covered} and new "
            f"seeds, scored on this {split} split."
        )
    count = int(asked["backbones"])
    if count < FEWEST_DRAWS:
        return (
            f"The seeds shared {count} random backbones, so it holds for {covered} only (fewer "
            f"than {FEWEST_DRAWS} draws: no claim about another backbone), for new seeds, "
            f"scored on this {split} split."
        )
    return (
        f"The seeds shared {count} random backbones, so it holds for {covered}; for another "
        "backbone the draw-level test (secondary, error term the draw x setting interaction) "
        f"answers; scored on this {split} split."
    )


def _worse(row) -> str:
    """ "A is worse than B" from a comparison row (difference = setting - against)."""
    loser, winner = (
        (row.setting, row.against) if row.difference_pct > 0 else (row.against, row.setting)
    )
    return f"{loser} is worse than {winner}"


def _within(family: pd.DataFrame) -> str:
    """How far the family's 95% intervals over seeds reach from 0."""
    bounds = family[["difference_ci_low", "difference_ci_high"]].abs().to_numpy(dtype=float)
    if not np.isfinite(bounds).any():
        return ""
    return (
        f": within ±{np.nanmax(bounds):.2f} points ({CONFIDENCE:.0%} intervals over seeds of "
        f"the {len(family)} comparisons)"
    )


def _detectable(analysis: Analysis) -> str:
    if "power" not in analysis.tables:
        return ""
    row = analysis.tables["power"].iloc[0]
    if math.isinf(row["minimum_detectable_pct"]):
        return "; with these seeds no difference is detectable at all"
    return (
        f"; the smallest difference its pairwise test detects with {row['power']:.0%} power is "
        f"{row['minimum_detectable_pct']:.2f} points"
    )


def omnibus(row: pd.Series, what: str = "configurations") -> str:
    if math.isnan(row["p_permutation"]):
        return (
            f"no test: {row['settings']} {what} share {row['seeds']} seed(s) with any "
            "variation between them"
        )
    kind = "exact" if row["permutation_exact"] else f"{stats.PERMUTATIONS} permutations"
    return (
        f"seed-blocked permutation F = {row['f_statistic']:.3g}, "
        f"p {p_value(row['p_permutation'], True)} ({kind}), {row['settings']} {what} "
        f"over the {row['seeds']} seeds they share"
    )


def power(analysis: Analysis) -> str | None:
    """The smallest difference the declared test could detect, and the seeds 0.5 points
    would need, for Holm's first step over the family."""
    if "power" not in analysis.tables:
        return None
    row = analysis.tables["power"].iloc[0]
    pairs = int(row["pairs"])
    level = f"{row['alpha']:g} / {int(row['comparisons'])}"
    if math.isinf(row["minimum_detectable_pct"]):
        detectable = (
            f"with {pairs} seeds no difference is detectable: the exact sign-flip test's "
            f"smallest p-value is {row['smallest_p']:.3g}, above {level}"
        )
    else:
        detectable = (
            f"the smallest difference the declared test (Holm's first step, {level}) detects "
            f"over these {pairs} seeds with {row['power']:.0%} power is "
            f"{row['minimum_detectable_pct']:.2f} points"
        )
    needed = row["seeds_for_target"]
    return (
        f"Power: {detectable} (paired two-sided test, from the std of the family's per-seed "
        f"differences, {row['difference_std']:.2f} points); {row['target_pct']:g} points "
        + (f"would need {int(needed)} seeds." if needed == needed else "cannot be sized.")
    )


def split_design(analysis: Analysis) -> str:
    """How the runs split their data, and what that means for the test split."""
    runs = analysis.selection.runs
    if analysis.split != "test":
        return (
            "Split design: no test split; the validation split chose the configuration and the "
            "early-stopping epoch, so its scores are optimistic."
        )
    folds = param(runs, "data.split.folds").dropna()
    folds = folds[folds != "None"]
    test_seeds = listing(param(runs, "data.split.test_seed"))
    drawn = (
        f"stratified {listing(folds)}-fold cross-validation over the other images (seed s "
        "validates on fold s mod k)"
        if len(folds)
        else "a stratified train/validation split of the other images re-drawn by each seed"
    )
    return (
        f"Split design: one test split drawn once (test seed {test_seeds}), the same for every "
        f"seed; {drawn}. No seed trains or selects on a test image: the test split took no part "
        "in choosing anything."
    )


def phase(analysis: Analysis, stage: str) -> str:
    """The phase as its runs trained it: fine-tuning from a cut names the cut."""
    cut = param(analysis.best_runs, "fine_tune.trainable.from").dropna()
    if stage != "fine_tune" or cut.empty:
        return PHASES[stage]
    frozen = set(param(analysis.best_runs, "fine_tune.batch_norm").dropna()) == {"frozen"}
    return (
        f"phase 2 (fine-tuning: the cells from {cut.iloc[0]} up and the head trained on cached "
        f"activations of the cells below{', batch norms frozen' if frozen else ''})"
    )


def not_neu(paper: Paper) -> str:
    return (
        f"**Other data**: these runs are not on the NEU database that {paper.short} used (their "
        "data fingerprint differs), so the paper's figures are shown for reference only and "
        "nothing is compared with them."
    )


def paper_label(analysis: Analysis) -> str:
    return "Paper" if analysis.same_data else "Paper, on NEU (not comparable)"


def exclusions(analysis: Analysis) -> str:
    excluded = analysis.selection.excluded
    return ", ".join(f"{n} {reason}" for reason, n in excluded.items()) or "none"
