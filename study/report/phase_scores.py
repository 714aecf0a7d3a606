"""Tables 3 and 4: each score on each split after a training phase, over the runs, beside the
paper's; and what fine-tuning gained over each run's own frozen phase."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.report import stats
from study.report.paper import Paper
from study.report.tables import Outcomes, error_spread
from study.tracking.outcome import metric, param
from study.vocabulary import SPLITS

# (our metric, label, the paper's name for it in Tables 3 and 4). The paper's precision,
# recall and AUC are Keras's metrics on one-hot targets, which `*_keras` reproduce.
SCORES = (
    ("accuracy", "Accuracy", "accuracy"),
    ("loss", "Loss", "loss"),
    ("precision_keras", "Precision", "precision"),
    ("recall_keras", "Recall", "recall"),
    ("auc_keras", "AUC", "auc"),
    ("precision_macro", "Precision (macro)", None),
    ("recall_macro", "Recall (macro)", None),
    ("f1_macro", "F1 (macro)", None),
    ("auc_ovr_macro", "AUC (one-vs-rest, macro)", None),
)


def scores_table(
    runs: pd.DataFrame, stage: str, paper: Paper, outcomes: Outcomes | None = None
) -> pd.DataFrame:
    """Tables 3 (stage frozen) and 4 (fine_tune): each score on each split after the stage,
    mean, std and 95% interval over the runs (Wilson for proportions, Student t over seeds for
    the loss and AUC; `covers` says what each interval lets vary), beside the paper's. The
    test accuracy of a stage whose model is every run's final one gets the same interval as
    the error rate in the other tables (`error_spread`, from the per-image outcomes when they
    were logged). Empty when no run has the stage's scores."""
    names = ["metric", "label", "split", "n", "mean", "std", "ci_low", "ci_high", "covers"]
    names += ["paper"]
    if not any(metric(runs, f"{stage}_{split}_accuracy").notna().any() for split in SPLITS):
        return pd.DataFrame(columns=names)
    final = np.isclose(metric(runs, f"{stage}_test_accuracy"), metric(runs, "test_accuracy"))
    reference = paper.scores[stage]
    rows = []
    for key, label, paper_key in SCORES:
        for split in SPLITS:
            values = metric(runs, f"{stage}_{split}_{key}")
            if key == "loss" or key.startswith("auc"):  # not proportions: no Wilson interval
                spread, covers = stats.spread(values), "new seeds (t over seeds)"
            elif (key, split) == ("accuracy", "test") and len(runs) and final.all():
                error = error_spread(runs, split, outcomes)
                spread = stats.Spread(
                    error.n, 1 - error.mean, error.std, 1 - error.ci_high, 1 - error.ci_low
                )
                covers = "new seeds and new test images (Wilson, crossed)"
            else:
                images = pd.to_numeric(param(runs, f"dataset.{split}_images"), errors="coerce")
                spread = stats.rate_spread(values, images)
                covers = "new seeds, one split's images at most (Wilson)"
            published = reference.get(split, {}).get(paper_key, math.nan)
            if paper_key != "loss":
                published /= 100
            rows.append([key, label, split, *_spread_values(spread), covers, published])
    return pd.DataFrame(rows, columns=names)


def fine_tuning_gain(runs: pd.DataFrame, split: str) -> pd.DataFrame:
    """Each run's accuracy after fine-tuning against its own frozen phase, on validation and on
    `split`: how many seeds went up, level or down, and on `split` the paired comparison of the
    per-seed difference (`stats.paired_comparison`; validation chose both phases' stopping
    epochs, so it is not tested). Empty when no run has both phases' scores."""
    names = [
        *("split", "pairs", "higher", "level", "lower", "frozen_mean", "fine_tune_mean"),
        *("difference_pct", "difference_ci_low", "difference_ci_high", "p_permutation"),
    ]
    rows = []
    for scored in dict.fromkeys(("val", split)):
        frozen = metric(runs, f"frozen_{scored}_accuracy").to_numpy()
        tuned = metric(runs, f"fine_tune_{scored}_accuracy").to_numpy()
        both = np.isfinite(frozen) & np.isfinite(tuned)
        if not both.any():
            continue
        frozen, tuned = 100 * frozen[both], 100 * tuned[both]
        test = stats.paired_comparison(tuned, frozen)
        rows.append(
            [
                *(scored, int(both.sum()), int((tuned > frozen).sum())),
                *(int((tuned == frozen).sum()), int((tuned < frozen).sum())),
                *(frozen.mean(), tuned.mean(), test.mean_difference),
                *(
                    (test.ci_low, test.ci_high, test.p_value)
                    if scored != "val"
                    else (math.nan,) * 3
                ),
            ]
        )
    return pd.DataFrame(rows, columns=names)


def _spread_values(spread: stats.Spread) -> list:
    return [spread.n, spread.mean, spread.std, spread.ci_low, spread.ci_high]
