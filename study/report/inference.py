"""Table 5: accuracy, parameters, inference time and data size, the paper's methods beside the
best configuration with the timings of each `study bench` run."""

from __future__ import annotations

import math

import pandas as pd

from study.report import stats
from study.report.paper import Paper
from study.tracking.outcome import column, metric, param

BENCH_BATCHES = (32, 1)
# What `study bench` logs per batch size: the median step, its quartiles, the median per image.
TIMINGS = [
    f"batch{batch}_{name}"
    for batch in BENCH_BATCHES
    for name in ("ms_per_step", "ms_per_step_q1", "ms_per_step_q3", "ms_per_image")
]
INFERENCE_COLUMNS = [
    *("method", "source", "split", "n", "accuracy", "accuracy_std", "parameters"),
    *TIMINGS,
    *("data_size", "image_size", "machine", "runtime", "bench_run_id"),
]


def benchmarks(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished `study bench` runs, the latest per machine, image size and runtime, oldest
    first (runs from before runtimes were named ran on TensorFlow)."""
    finished = column(runs, "status") == "FINISHED"
    bench = runs[(column(runs, "tags.run_type") == "bench") & finished]
    bench = bench.sort_values(["start_time", "run_id"], kind="stable")
    keys = pd.DataFrame(
        {
            "machine": column(bench, "tags.machine"),
            "size": param(bench, "image_size"),
            "runtime": bench_runtime(bench),
        }
    )
    return bench[~keys.duplicated(keep="last")]


def bench_runtime(bench: pd.DataFrame) -> pd.Series:
    return column(bench, "tags.runtime").fillna("tensorflow")


def inference_table(
    best: pd.DataFrame, bench: pd.DataFrame, split: str, label: str, paper: Paper
) -> pd.DataFrame:
    """Table 5: accuracy, parameters, inference time and data size; the paper's rows, then
    ours: the best configuration's accuracy on `split` with each benchmark's timings."""
    rows = []
    for published in paper.methods:
        batch = published.get("batch_size")
        rows.append(
            {
                "method": published["method"],
                "source": paper.short,
                "accuracy": published["accuracy"] / 100,
                "parameters": published["parameters"],
                "batch32_ms_per_step": published["ms_per_step"],
                "batch32_ms_per_image": published["ms_per_step"] / batch if batch else math.nan,
                "data_size": published["data_size"],
            }
        )
    accuracy = stats.spread(metric(best, f"{split}_accuracy"))
    ours = {
        "method": f"NASNet-Mobile, {label}",
        "source": "ours",
        "accuracy": accuracy.mean,
        "accuracy_std": accuracy.std,
        "n": accuracy.n,
        "split": split,
        "parameters": _single(metric(best, "parameters_total")),
        "data_size": _single(pd.to_numeric(param(best, "dataset.images"), errors="coerce")),
    }
    if bench.empty:
        rows.append(ours)
    for (_, run), runtime in zip(bench.iterrows(), bench_runtime(bench), strict=True):
        timings = {name: run.get(f"metrics.{name}", math.nan) for name in TIMINGS}
        rows.append(
            {
                **ours,
                **timings,
                "method": f"{ours['method']}, {runtime}",
                "image_size": run.get("params.image_size"),
                "machine": run.get("tags.machine"),
                "runtime": runtime,
                "bench_run_id": run["run_id"],
            }
        )
    return pd.DataFrame(rows).reindex(columns=INFERENCE_COLUMNS)


def _single(values: pd.Series) -> float:
    """The one value the runs share, or NaN when they logged none or differ."""
    found = values.dropna().unique()
    return float(found[0]) if len(found) == 1 else math.nan
