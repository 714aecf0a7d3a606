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
            "intervals of error rates and accuracies are Wilson score intervals, which stay "
            "inside [0, 100] and keep a width when every seed agrees; on the test split with "
            "per-image outcomes they cover new seeds and new test images (the seeds x images "
            "table of errors, Owen's crossed variance with every mean square in Satterthwaite's "
            "degrees of freedom), elsewhere new seeds on at most one split's images. Losses and "
            "AUC get Student t intervals over seeds. Every interval says what it covers.",
            "Comparisons: the per-seed differences of two settings (paired by seed: same split, "
            "head initialisation, augmentation order and backbone) are independent draws of "
            "'train both again'. The test is an exact sign-flip permutation test of their mean "
            f"(every sign pattern up to {stats.EXACT_SIGN_FLIP_PAIRS} pairs, a pattern as extreme "
            "as the observed one counted in; beyond, "
            f"{stats.PERMUTATIONS} patterns drawn with a fixed seed); the interval is the t "
            "interval of the same differences (df = pairs − 1), covering new seeds on this test "
            "split; a second, labelled interval lets the test images vary too. Which backbones "
            "that covers is said beside each answer. Not used: the Nadeau-Bengio correction and "
            "McNemar's test on pooled images (docs/statistics.md says why).",
            "The verdict answers the study's declared question with one procedure (the gate, "
            "then the declared family, Holm-adjusted); every other test in the report is "
            "secondary. Power is that of the test used: Holm's first step over the family.",
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
