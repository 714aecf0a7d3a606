"""How the numbers were obtained: which runs, seeds, data, machines, and what the statistics
assume; the runs left out, with their errors.
"""

from __future__ import annotations

import pandas as pd

from study.report import stats
from study.report.analysis import Analysis
from study.report.render import Block, Bullets, Heading, Paragraph, Table
from study.report.sections import sentences
from study.report.sections.text import SPLIT_NAMES, listing, objective_name
from study.report.stats import CONFIDENCE
from study.tracking.outcome import column, param


def section(analysis: Analysis) -> list[Block]:
    selection, runs = analysis.selection, analysis.selection.runs
    seeds = sorted(runs["seed"].dropna().unique())
    per_configuration = runs.groupby("configuration").size()
    items = [
        f"Runs: {selection.scope}. Included: {len(runs)} FINISHED runs, "
        f"{runs['configuration'].nunique()} configuration(s), the latest run of each "
        f"configuration and seed. Excluded and counted: {sentences.exclusions(analysis)}. "
        "Every run and why it was left out: `runs.csv`.",
    ]
    if selection.outside:
        items.append(
            f"{selection.outside} other trial or train runs of the experiment lie outside this "
            "scope and are not included."
        )
    if len(runs):
        machines = column(runs, "tags.machine")
        trained_on = listing(machines) if machines.notna().any() else "not recorded by the runs"
        timed_on = (
            listing(column(analysis.bench, "tags.machine"))
            if len(analysis.bench)
            else "not measured (no `study bench` run)"
        )
        items.append(
            f"Seeds: {', '.join(str(s) for s in seeds)}; runs per configuration: "
            f"{_range_text(per_configuration)}. Each seed re-draws train and validation, "
            "initialises the head and orders the augmented views, so runs that share a seed "
            "share their split."
        )
        if per_configuration.max() < 2:
            items.append(
                "**One seed per configuration: no spread.** Standard deviations, intervals and "
                "paired tests need two seeds or more and are left out (shown as –)."
            )
        items += [
            "Data: fingerprint "
            + listing(column(runs, "tags.data_fingerprint"), code=True)
            + f"; {listing(param(runs, 'dataset.images'))} images in classes "
            + listing(param(runs, "dataset.classes").str.replace(",", ", "))
            + f"; unreadable files skipped: {listing(column(runs, 'tags.skipped_files'))}.",
            f"Split (images): {listing(column(runs, 'tags.split'))}.",
            f"Backbone weights: {listing(column(runs, 'tags.weights'))}.",
            f"Training machine: {trained_on}. Inference timing: {timed_on}.",
            f"Selection: configurations are ranked by their mean "
            f"{objective_name(analysis.objective)} over seeds; the best is reported on the "
            f"{SPLIT_NAMES[analysis.split]} split.",
            f"Statistics: mean ± sample standard deviation (n − 1) over seeds. {CONFIDENCE:.0%} "
            "intervals of rates (error rate, accuracy, precision, recall, AUC) are Wilson score "
            "intervals, which stay inside [0, 100] and keep a width when every seed agrees; "
            "their sample size is the effective number of independent images the mean rests "
            "on: on the test split, from the variance of the seeds x images table of errors "
            "(Owen's estimate for a crossed design: new seeds and new images), elsewhere at "
            "most one split's images. Wherever a seed variance enters, the quantile is Student "
            "t's at its degrees of freedom (Satterthwaite's for the crossed variance), not 1.96. "
            "Losses get Student t intervals.",
            "Comparisons answer one question: trained again on this data, would A beat B? The "
            "test split is fixed and each seed re-draws everything else, so the per-seed "
            "differences (paired by seed) are independent draws of that retraining. The test "
            "is an exact sign-flip permutation test of their mean (every sign pattern when "
            f"there are at most {stats.PERMUTATIONS} of them, else that many drawn with a fixed "
            "seed); the difference's interval is the t interval of the same differences (df = "
            "pairs − 1); the effect size is Hedges' g_z (d_z with the small-sample correction). "
            "Where per-image outcomes were logged, a second, labelled interval answers '... and "
            "on new test images too', from the crossed variance of the seeds x images table of "
            "differences, the same kind of interval as each arm's. The comparisons of one table "
            "are one fixed family, Holm-adjusted together, a comparison that could not be tested "
            "still counting in its size. Not used: the Nadeau-Bengio correction (for this "
            "question the seed differences need no inflation, and for new images it cannot add "
            "the image variance a single test split leaves out) and McNemar's test on pooled "
            "images (every discordant image depends on the same trained models, so the images "
            "are not independent).",
            "Before a winner: a seed-blocked permutation F test (configurations permuted within "
            "each seed) of any difference among the configurations, and a confidence set for "
            "the best (a configuration leaves it only when another beats it by the one-sided "
            "sign-flip test at 0.05 / (k − 1)). Power: the paired t-test's smallest detectable "
            "difference at 80% power from the spread of the per-seed differences with the "
            "champion.",
            f"Logged by study version {listing(column(runs, 'tags.study_version'))}.",
        ]
    blocks: list[Block] = [Heading(2, "How the numbers were obtained"), Bullets(tuple(items))]
    left_out = selection.ledger[~selection.ledger["included"]]
    if len(left_out):
        shown = pd.DataFrame(
            {
                "Run": left_out["run_name"].fillna(left_out["run_id"]),
                "Status": left_out["status"],
                "Why excluded": left_out["reason"],
                "Error": left_out["error"].fillna("").map(_first_line),
            }
        )
        blocks += [Paragraph("Runs left out:"), Table(shown)]
    return blocks


def _range_text(counts: pd.Series) -> str:
    low, high = int(counts.min()), int(counts.max())
    return str(low) if low == high else f"{low} to {high}"


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 120 else line[:117] + "..."
