"""The report's class balance as pure functions of a hand-built `mlflow.search_runs` frame;
every expected number is computed here from the counts the frame holds."""

from __future__ import annotations

import json

import pandas as pd
import pytest

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
