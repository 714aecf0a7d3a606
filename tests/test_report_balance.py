"""The report's class balance as pure functions of a hand-built `mlflow.search_runs` frame;
every expected number is computed here from the counts the frame holds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from study.report import balance
from study.report.render import Table, markdown

# An imbalanced data set as two seeds split it: 60 crazing, 20 patches, 10 scratches.
SPLITS = {
    0: {"train": (36, 12, 6), "val": (12, 4, 2), "test": (12, 4, 2)},
    1: {"train": (36, 12, 6), "val": (12, 4, 2), "test": (12, 4, 2)},
}
CLASSES = ("crazing", "patches", "scratches")


def runs(split_counts=SPLITS, classes=CLASSES, accuracy=0.8) -> pd.DataFrame:
    rows = []
    for seed, splits in split_counts.items():
        row = {"run_id": f"run-{seed}", "params.seed": str(seed)}
        row["params.dataset.class_source"] = "class folders under data.root"
        whole = [sum(parts) for parts in zip(*splits.values(), strict=True)]
        row["params.dataset.class_counts"] = json.dumps(dict(zip(classes, whole, strict=True)))
        for split, values in splits.items():
            row[f"params.dataset.{split}_class_counts"] = json.dumps(
                dict(zip(classes, values, strict=True))
            )
            row[f"metrics.{split}_accuracy"] = accuracy + seed / 100
            for key in balance.MACRO:
                row[f"metrics.{split}_{key}"] = accuracy - 0.2 + seed / 100
        rows.append(row)
    return pd.DataFrame(rows)


def test_counts_per_class_and_split():
    table = balance.counts_table(runs())
    assert list(table.columns) == ["class", "all", "train", "val", "test", "share (%)"]
    assert table.to_dict("records")[0] == {
        "class": "crazing",
        "all": "60",
        "train": "36",
        "val": "12",
        "test": "12",
        "share (%)": f"{100 * 60 / 90:.1f}",
    }
    assert balance.imbalance(runs()) == 60 / 10


def test_splits_that_differ_between_runs_show_a_range():
    moved = {0: SPLITS[0], 1: {"train": (35, 12, 6), "val": (13, 4, 2), "test": (12, 4, 2)}}
    row = balance.counts_table(runs(moved)).iloc[0]
    assert (row["train"], row["val"], row["test"]) == ("35–36", "12–13", "12")


def test_majority_baseline_is_the_largest_class_share_of_the_split():
    baseline = balance.majority_baseline(runs(), "test")
    assert baseline.to_dict() == {"run-0": 12 / 18, "run-1": 12 / 18}


def test_the_report_states_counts_baseline_and_macro_scores_when_imbalanced():
    frame = runs()
    text = markdown(balance.section(frame, "test"))
    assert "Largest class : smallest class = 6.0 : 1. Classes from: class folders under" in text
    assert "| crazing | 60 | 36 | 12 | 12 |" in text
    baseline, macro = balance.summary(frame, "test")
    assert f"accuracy {100 * 12 / 18:.2f} %, beside the model's {100 * 0.805:.2f} %" in baseline
    assert "imbalanced 6.0 : 1" in macro
    assert f"F1 {100 * 0.605:.2f} %" in macro


def test_balanced_classes_give_no_macro_line():
    even = {0: {"train": (6, 6), "val": (2, 2), "test": (2, 2)}}
    (only,) = balance.summary(runs(even, classes=("a", "b")), "test")
    assert "accuracy 50.00 %" in only


def test_runs_without_class_counts_say_so():
    old = runs().drop(columns=[c for c in runs().columns if "class_counts" in c])
    assert balance.summary(old, "val") == []
    blocks = balance.section(old, "val")
    assert not any(isinstance(block, Table) for block in blocks)
    assert "Not logged" in markdown(blocks)


@pytest.mark.parametrize("split", ["val", "test"])
def test_the_split_reported_is_the_one_asked_for(split):
    (baseline, _) = balance.summary(runs(), split)
    assert f"on the {split} split" in baseline


def test_the_model_against_the_majority_baseline_is_a_one_sided_test_over_seeds():
    two = runs()  # 2 seeds: the sign-flip test cannot go below 1/4, however clear the gap
    n, difference, p, method = balance.against_baseline(two, "test")
    assert (n, p) == (2, pytest.approx(0.25)) and "sign-flip" in method
    assert difference == pytest.approx(100 * (0.805 - 12 / 18))
    assert (
        "with 2 seeds the one-sided sign-flip permutation test over seeds cannot go below p = "
        in (balance.summary(two, "test")[0])
    )
    assert "does not beat" not in balance.summary(two, "test")[0]
    six = runs({seed: SPLITS[0] for seed in range(6)})
    gaps = np.array([0.8 + seed / 100 - 12 / 18 for seed in range(6)])
    expected = scipy_stats.permutation_test(
        (gaps,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="greater"
    )
    assert balance.against_baseline(six, "test")[2] == pytest.approx(expected.pvalue)
    assert "The model beats it by" in balance.summary(six, "test")[0]
    level = runs({seed: SPLITS[0] for seed in range(6)}, accuracy=12 / 18 - 0.025)  # mean gap 0
    assert balance.against_baseline(level, "test")[2] > 0.05
    assert (
        "**The model does not beat the majority baseline detectably**"
        in (balance.summary(level, "test")[0])
    )


def test_one_run_against_the_majority_baseline_is_an_exact_binomial_test_on_its_images():
    one = runs({0: SPLITS[0]}, accuracy=13 / 18)
    n, _, p, method = balance.against_baseline(one, "test")
    expected = scipy_stats.binomtest(13, 18, 12 / 18, alternative="greater").pvalue
    assert (n, p) == (1, pytest.approx(expected)) and "this model only" in method
