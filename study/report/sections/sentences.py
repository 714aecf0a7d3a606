"""The findings more than one section states, each worded once."""

from __future__ import annotations

import math

import pandas as pd

from study.report import stats
from study.report.analysis import Analysis
from study.report.paper import Paper
from study.report.sections.text import PHASES, SPLIT_NAMES, listing, mean_std, names, p_value
from study.tracking.outcome import param


def verdict(analysis: Analysis) -> str:
    """Whether any configuration differs on the reported split's error rate, and which ones
    cannot be told from the best: "no configuration differs detectably" when the omnibus test
    does not reject (or cannot be run)."""
    split = SPLIT_NAMES[analysis.split]
    ranking = analysis.tables["configurations"]
    if len(ranking) < 2:
        best = ranking.iloc[0]
        return (
            f"One configuration, nothing to compare: {split} error rate "
            f"{mean_std(100 * best['error_rate_mean'], 100 * best['error_rate_std'], 2)} % "
            f"over {best['n']} seed(s)."
        )
    test = analysis.tables["omnibus"].iloc[0]
    candidates = analysis.tables["best_set"]
    kept = candidates[candidates["in_best_set"]]
    if len(kept) == len(candidates):
        indistinguishable = (
            f"all {len(candidates)} configurations are indistinguishable from the best"
        )
        if candidates["p_shown_worse"].isna().all():
            pairs = int(candidates["pairs"].min())
            indistinguishable += (
                f" (with {pairs} shared seeds no pairwise test can reach "
                f"{stats.ALPHA:g} / {len(candidates) - 1}, whatever the differences)"
            )
    else:
        indistinguishable = (
            f"indistinguishable from the best: {len(kept)} of {len(candidates)} "
            f"({names(kept['configuration'])})"
        )
    evidence = omnibus(test)
    if not test["rejects"]:
        return (
            f"**No configuration differs detectably** in {split} error rate ({evidence}); "
            f"{indistinguishable}."
        )
    return f"**The configurations differ** in {split} error rate ({evidence}); {indistinguishable}."


def omnibus(row: pd.Series) -> str:
    if math.isnan(row["p_permutation"]):
        return (
            f"no test: {row['settings']} configurations share {row['seeds']} seed(s) with any "
            "variation between them"
        )
    kind = "exact" if row["permutation_exact"] else f"{stats.PERMUTATIONS} permutations"
    return (
        f"seed-blocked permutation F = {row['f_statistic']:.3g}, "
        f"p {p_value(row['p_permutation'], True)} ({kind}), {row['settings']} configurations "
        f"over the {row['seeds']} seeds they share"
    )


def power(analysis: Analysis) -> str | None:
    """The smallest difference the study could detect, and the seeds 0.5 points would need."""
    if "power" not in analysis.tables:
        return None
    row = analysis.tables["power"].iloc[0]
    pairs = int(row["pairs"])
    if math.isinf(row["minimum_detectable_pct"]):
        detectable = (
            f"with {pairs} seeds no difference is detectable: the exact sign-flip test's "
            f"smallest p-value is {row['smallest_p']:.3f}, above {stats.ALPHA:g}"
        )
    else:
        detectable = (
            f"the smallest difference in error rate these {pairs} seeds detect with "
            f"{row['power']:.0%} power is {row['minimum_detectable_pct']:.2f} points"
        )
    return (
        f"Power: {detectable} (paired two-sided test at {stats.ALPHA:g}, from the std of the "
        f"per-seed differences with the champion, {row['difference_std']:.2f} points); "
        f"{row['target_pct']:g} points would need {int(row['seeds_for_target'])} seeds."
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
