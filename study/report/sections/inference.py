"""Table 5: accuracy, size and inference time, ours (`study bench`) beside the paper's methods."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.report.analysis import TABLE_FILES, Analysis
from study.report.paper import Paper
from study.report.render import Block, Bullets, Heading, Table
from study.report.sections.text import DASH, SPLIT_NAMES, listing, mean_std, number
from study.tracking.outcome import param


def section(analysis: Analysis, paper: Paper) -> list[Block]:
    table = analysis.tables["inference"]
    rows = []
    for row in table.to_dict("records"):
        ours = row["source"] == "ours"
        accuracy = mean_std(100 * row["accuracy"], 100 * row.get("accuracy_std", np.nan), 2)
        if ours:
            accuracy += f" ({SPLIT_NAMES[row['split']]}, n = {int(row['n'])})"
        per_image = number(row.get("batch32_ms_per_image"), 2)
        if not ours and per_image != DASH:
            per_image += f" ({row['batch32_ms_per_step']:g} / 32)"
        rows.append(
            {
                "Method": row["method"],
                "Source": row["source"],
                "Accuracy (%)": accuracy,
                "Parameters": _millions(row["parameters"]),
                "ms per step, batch 32": _timing(row, "batch32_ms_per_step"),
                "ms per image, batch 32": per_image,
                "ms per image, batch 1": _timing(row, "batch1_ms_per_step"),
                "Data size (images)": _count(row["data_size"]),
                "Machine": _machine(row),
            }
        )
    notes = list(paper.method_notes)
    notes.append(
        f"The paper's accuracy ({paper.methods[-1]['accuracy']:.2f}%) is its training accuracy "
        f"before fine-tuning (Table 3, {paper.scores['frozen']['train']['accuracy']:.2f}%)."
    )
    if analysis.bench.empty:
        notes.append(
            "**Not measured**: this experiment has no `study bench` run, so our inference times "
            f"are missing; `study bench` with the study's config logs them into "
            f"`{analysis.experiment}`."
        )
    else:
        repeats = listing(param(analysis.bench, "repeats"))
        warmup = listing(param(analysis.bench, "warmup"))
        notes.append(
            f"Our times (`study bench`): the median of {repeats} timed inference steps after "
            f"{warmup} warm-up steps, one step being `predict_on_batch` of the full classifier "
            "on random images; in brackets the interquartile range."
        )
        trained = set(param(analysis.best_runs, "data.image_size").dropna())
        timed = set(param(analysis.bench, "image_size").dropna())
        if timed - trained:
            notes.append(
                f"The runs trained at {', '.join(sorted(trained))} px; timings at other sizes "
                "describe a differently sized input."
            )
    return [
        Heading(2, "Table 5: accuracy, size and inference time"),
        Table(pd.DataFrame(rows), TABLE_FILES["inference"]),
        Bullets(tuple(notes)),
    ]


def _timing(row: dict, name: str) -> str:
    median = row.get(name, math.nan)
    if median is None or math.isnan(median):
        return DASH
    q1, q3 = row.get(f"{name}_q1", math.nan), row.get(f"{name}_q3", math.nan)
    quartiles = "" if math.isnan(q1) else f" ({q1:.1f}–{q3:.1f})"
    return f"{median:.1f}{quartiles}"


def _machine(row: dict) -> str:
    machine = row.get("machine")
    return f"{machine}, {row['image_size']} px" if isinstance(machine, str) else DASH


def _millions(value: float) -> str:
    return DASH if math.isnan(value) else f"{value / 1e6:.2f} M"


def _count(value: float) -> str:
    return DASH if math.isnan(value) else f"{int(value):,}"
