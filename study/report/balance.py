"""How the classes are balanced, from the runs' logged data facts: images per class and split,
the accuracy of always answering the largest class, and, when the classes are imbalanced by
more than 2:1, the class-averaged scores that such a baseline cannot inflate.

Runs log `dataset.class_counts` and `dataset.<split>_class_counts` as JSON objects of class ->
images; runs that did not log them give a report that says so.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from study.report import stats
from study.report.render import Block, Bullets, Heading, Paragraph, Table
from study.tracking.outcome import metric, param
from study.vocabulary import SPLITS

IMBALANCED = 2.0  # largest class / smallest class above which the summary adds macro scores
MACRO = {"precision_macro": "precision", "recall_macro": "recall", "f1_macro": "F1"}


def counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Images per run, split and class: columns run_id, split (`all` for the whole data set),
    class, images. Empty when no run logged its class counts."""
    rows = []
    for split in ("all", *SPLITS):
        key = "dataset.class_counts" if split == "all" else f"dataset.{split}_class_counts"
        for run_id, text in zip(runs["run_id"], param(runs, key), strict=True):
            if isinstance(text, str):
                rows += [(run_id, split, name, n) for name, n in json.loads(text).items()]
    return pd.DataFrame(rows, columns=["run_id", "split", "class", "images"])


def counts_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per class: its images in the whole data set and in each split, as the range
    over the runs when their splits differ ("11" or "10–12"), and its share of the data set."""
    found = counts(runs)
    spans = found.groupby(["class", "split"])["images"].agg(["min", "max"])
    text = [str(low) if low == high else f"{low}–{high}" for low, high in spans.to_numpy()]
    table = pd.Series(text, index=spans.index).unstack("split")
    table = table.reindex(columns=[s for s in ("all", *SPLITS) if s in table.columns])
    whole = found[found["split"] == "all"].groupby("class")["images"].max()
    table["share (%)"] = (100 * whole / whole.sum()).map(lambda v: f"{v:.1f}")
    return table.rename_axis(None, axis=1).reset_index()


def imbalance(runs: pd.DataFrame) -> float:
    """Images of the largest class over those of the smallest, in the whole data set."""
    whole = counts(runs).query("split == 'all'").groupby("class")["images"].max()
    return float(whole.max() / whole.min()) if len(whole) else float("nan")


def majority_baseline(runs: pd.DataFrame, split: str) -> pd.Series:
    """Per run (by run id): the accuracy on `split` of always answering the split's largest
    class."""
    found = counts(runs).query("split == @split").groupby("run_id")["images"]
    return found.max() / found.sum()


def section(runs: pd.DataFrame, split: str) -> list[Block]:
    """The report's section on classes: counts per split, the majority baseline beside the
    accuracy on `split` of the same runs."""
    heading = Heading(2, "Classes and imbalance")
    if counts(runs).empty:
        return [
            heading,
            Paragraph(
                "**Not logged**: these runs did not record their images per class and split "
                "(`dataset.<split>_class_counts`), so the balance of the classes is unknown."
            ),
        ]
    ratio = imbalance(runs)
    sources = sorted(param(runs, "dataset.class_source").dropna().unique())
    origin = f" Classes from: {'; '.join(sources)}." if sources else ""
    return [
        heading,
        Paragraph(
            "Images per class in the whole data set and in each split of the runs of the best "
            f"configuration (n = {len(runs)}; a range where their splits differ), from their "
            f"logged data facts. Largest class : smallest class = {ratio:.1f} : 1.{origin} "
            "Each run's `classes.csv` lists the folders each class's files came from."
        ),
        Table(counts_table(runs)),
        Bullets((_baseline_sentence(runs, split),)),
    ]


def summary(runs: pd.DataFrame, split: str) -> list[str]:
    """Summary items: the majority baseline beside the accuracy and, when the classes are
    imbalanced by more than 2:1, the macro-averaged scores."""
    if counts(runs).empty:
        return []
    items = [_baseline_sentence(runs, split)]
    ratio = imbalance(runs)
    if ratio > IMBALANCED:
        scores = ", ".join(
            f"{label} {_percent(metric(runs, f'{split}_{key}'))}" for key, label in MACRO.items()
        )
        items.append(
            f"Classes imbalanced {ratio:.1f} : 1 (more than {IMBALANCED:g} : 1), so accuracy "
            f"flatters the model; class-averaged (macro) scores on the {split} split: {scores}."
        )
    return items


def against_baseline(runs: pd.DataFrame, split: str) -> tuple[int, float, float, str]:
    """Does the model beat always answering the largest class on `split`? Per run, accuracy
    minus the majority share; returns (runs, mean difference in points, one-sided p-value,
    what the p-value rests on). Over two seeds or more: the sign-flip permutation test of the
    mean difference (trained again, would it beat the baseline?); with one run, the exact
    binomial test on its images (this trained model only)."""
    baseline = majority_baseline(runs, split)
    accuracy = metric(runs, f"{split}_accuracy").set_axis(runs["run_id"])
    difference = (accuracy - baseline.reindex(accuracy.index)).dropna()
    if difference.empty:
        return 0, float("nan"), float("nan"), "no run logged both"
    mean = 100 * float(difference.mean())
    if len(difference) > 1:
        p, _ = stats.sign_flip_test(difference.to_numpy(), alternative="greater")
        return len(difference), mean, p, "one-sided sign-flip permutation test over seeds"
    run_id = difference.index[0]
    images = int(counts(runs).query("split == @split and run_id == @run_id")["images"].sum())
    correct = round(float(accuracy[run_id]) * images)
    p = float(binomtest(correct, images, float(baseline[run_id]), alternative="greater").pvalue)
    return 1, mean, p, f"one-sided exact binomial test on its {images} images, this model only"


def _baseline_sentence(runs: pd.DataFrame, split: str) -> str:
    baseline = majority_baseline(runs, split)
    accuracy = metric(runs, f"{split}_accuracy")
    n, difference, p, method = against_baseline(runs, split)
    sentence = (
        f"Majority-class baseline on the {split} split (always answering the largest class): "
        f"accuracy {_percent(baseline)}, beside the model's {_percent(accuracy)} "
        + ("(1 run)." if len(runs) == 1 else f"(means over {len(runs)} runs).")
    )
    if n == 0:
        return sentence
    floor = 0.5**n  # the smallest one-sided p the sign-flip test can give with n seeds
    if n > 1 and floor > stats.ALPHA:
        return sentence + (
            f" The model is {difference:+.2f} points above it, but with {n} seeds the {method} "
            f"cannot go below p = {floor:.3f} (here p {_p_text(p)}): whether it beats the "
            f"baseline is not testable at {stats.ALPHA:g} with so few seeds."
        )
    if p < stats.ALPHA and difference > 0:
        return (
            sentence
            + f" The model beats it by {difference:+.2f} points ({method}: p "
            + (f"{_p_text(p)}).")
        )
    return sentence + (
        f" **The model does not beat the majority baseline detectably** ({difference:+.2f} "
        f"points; {method}: p {_p_text(p)}): it is no better than always answering the "
        "largest class."
    )


def _p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _percent(values: pd.Series) -> str:
    mean = float(np.nanmean(values)) if values.notna().any() else float("nan")
    return "–" if np.isnan(mean) else f"{100 * mean:.2f} %"
