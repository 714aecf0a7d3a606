"""The report's figures, drawn from logged runs, and PNG encoding that gives the same bytes for
the same figure. Figures are made without
pyplot, so nothing is left open and no backend is chosen."""

from __future__ import annotations

import io
import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from study.objective import Objective
from study.report.importance import knob_values
from study.report.selection import value_order
from study.tracking.outcome import metric, param

DPI = 100
FAMILY_ROWS = 12  # comparisons the verdict figure draws; the rest are in comparisons.csv
LABEL_WIDTH = 40  # characters of a comparison's label per line


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes, free of anything that changes between runs."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def activation_errors(
    runs: pd.DataFrame, table: pd.DataFrame, split: str, paper_label: str | None
) -> Figure:
    """Error rate per activation: each seed as a dot, the mean with its 95% interval, and the
    paper's figure as a cross (unless `paper_label` is None: other data, nothing to show)."""
    shown = table[table["n"] > 0].reset_index(drop=True)
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axis = figure.subplots()
    activation = param(runs, "activation")
    errors = 100 * metric(runs, f"{split}_error_rate")
    for x, row in shown.iterrows():
        values = errors[activation == row["activation"]].dropna().to_numpy()
        offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else 0.0
        axis.plot(x + offsets, values, "o", color="tab:blue", alpha=0.45, markersize=5)
        low, high = row["error_pct_ci_low"], row["error_pct_ci_high"]
        mean = row["error_pct_mean"]
        bar = None if np.isnan(low) else [[mean - low], [high - mean]]
        axis.errorbar(x + 0.25, mean, yerr=bar, fmt="s", color="tab:blue", capsize=5)
        if paper_label and not np.isnan(row["paper_error_pct"]):
            axis.plot(x - 0.25, row["paper_error_pct"], "x", color="tab:red", markersize=9, mew=2)
    axis.plot([], [], "o", color="tab:blue", alpha=0.45, label="one seed")
    axis.errorbar([], [], yerr=[], fmt="s", color="tab:blue", capsize=5, label="mean, 95% CI")
    if paper_label:
        axis.plot([], [], "x", color="tab:red", mew=2, label=f"{paper_label} (other models)")
    labels = [f"{name}\nn={n}" for name, n in zip(shown["activation"], shown["n"], strict=True)]
    axis.set_xticks(range(len(shown)), labels)
    axis.set_xlim(-0.6, len(shown) - 0.4)
    axis.set_ylabel(f"{_split_name(split)} error rate (%)")
    axis.set_title(f"{_split_name(split).capitalize()} error rate by activation, same model")
    axis.grid(axis="y", alpha=0.3)
    axis.legend()
    return figure


def paired_differences(paired: pd.DataFrame, family: pd.DataFrame, quantity: str) -> Figure:
    """The declared family, one row per comparison: each seed's difference (setting - against,
    points) as a dot, the mean with its 95% t interval over seeds, and 0 as a line. Rows beyond
    the first `shown` are left to the CSV."""
    shown = family.head(FAMILY_ROWS).reset_index(drop=True)
    labels = [
        textwrap.fill(f"{row.setting} − {row.against}", LABEL_WIDTH) for row in shown.itertuples()
    ]
    lines = sum(label.count("\n") + 1 for label in labels)
    figure = Figure(figsize=(9, 1.5 + 0.3 * lines + 0.15 * len(shown)), layout="constrained")
    axis = figure.subplots()
    for y, row in shown.iterrows():
        own = paired[(paired["setting"] == row["setting"]) & (paired["against"] == row["against"])]
        values = own["difference_pct"].to_numpy(dtype=float)
        offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else 0.0
        axis.plot(values, y + offsets, "o", color="tab:blue", alpha=0.45, markersize=4)
        low, high = row["difference_ci_low"], row["difference_ci_high"]
        mean = row["difference_pct"]
        bar = None if np.isnan(low) else [[mean - low], [high - mean]]
        colour = {"detectable": "tab:red", "weak": "tab:orange"}.get(row["grade"], "black")
        axis.errorbar(mean, y + 0.3, xerr=bar, fmt="s", color=colour, capsize=4)
    axis.axvline(0, color="grey", linewidth=1)
    axis.plot([], [], "o", color="tab:blue", alpha=0.45, label="one seed")
    axis.errorbar([], [], xerr=[], fmt="s", color="black", capsize=4, label="mean, 95% CI (seeds)")
    axis.set_yticks(range(len(shown)), labels, fontsize="small")
    axis.set_ylim(len(shown) - 0.4, -0.6)
    axis.set_xlabel(f"difference in {quantity} (points; > 0: the first is worse)")
    axis.set_title("The declared comparisons, seed by seed (red: detectable, orange: weak)")
    axis.grid(axis="x", alpha=0.3)
    axis.legend(loc="lower right", fontsize="small")
    return figure


def forest(rows: pd.DataFrame, quantity: str) -> Figure:
    """One comparison over the data sets (rows of `replication.meta_analysis`): each data set's
    difference with its own 95% t interval over seeds (the square's area its random-effects
    weight), the pooled estimate as a diamond over its 95% interval, the prediction interval for
    a new data set as a thin line when there is one, and 0 as a line."""
    sets = rows[rows["role"] == "data set"].reset_index(drop=True)
    pooled = rows[rows["role"] == "pooled"].iloc[0]
    figure = Figure(figsize=(7, 1.6 + 0.45 * (len(sets) + 1)), layout="constrained")
    axis = figure.subplots()
    for y, row in sets.iterrows():
        if not np.isnan(row["ci_low"]):
            axis.hlines(y, row["ci_low"], row["ci_high"], color="tab:blue")
        size = 4 + 10 * np.sqrt(row["weight"]) if not np.isnan(row["weight"]) else 4
        colour = {"detectable": "tab:red", "weak": "tab:orange"}.get(row["grade"], "tab:blue")
        axis.plot(row["estimate"], y, "s", color=colour, markersize=size)
    y = len(sets)
    if not np.isnan(pooled["estimate"]):
        if not np.isnan(pooled["prediction_low"]):
            axis.hlines(y, pooled["prediction_low"], pooled["prediction_high"], color="grey")
        middle, low, high = pooled["estimate"], pooled["ci_low"], pooled["ci_high"]
        axis.fill([low, middle, high, middle], [y, y - 0.25, y, y + 0.25], color="black")
    axis.axvline(0, color="grey", linewidth=1)
    labels = [f"{row.data_set}\nn={row.pairs}" for row in sets.itertuples()]
    axis.set_yticks(range(len(sets) + 1), [*labels, f"pooled (k={pooled['k']})"])
    axis.set_ylim(len(sets) + 0.6, -0.6)
    axis.set_xlabel(f"difference in {quantity} (points; > 0: {pooled['setting']} is worse)")
    axis.set_title(f"{pooled['comparison']}, data set by data set and pooled")
    axis.grid(axis="x", alpha=0.3)
    return figure


def sweep_overview(
    runs: pd.DataFrame, knobs: list[str], objective: str, split: str, best: str
) -> Figure:
    """Every run of the sweep: the objective (top) and the error rate (bottom) against each
    setting the sweep varied, one dot per run (the best configuration's in orange) and a bar
    at the mean per value."""
    knobs = knobs or ["seed"]
    rows = (
        (metric(runs, objective), _objective_label(objective)),
        (100 * metric(runs, f"{split}_error_rate"), f"{_split_name(split)} error rate (%)"),
    )
    colours = np.where(runs["configuration"] == best, "tab:orange", "tab:blue")
    figure = Figure(figsize=(3.4 * len(knobs) + 0.6, 6), layout="constrained")
    axes = figure.subplots(2, len(knobs), squeeze=False)
    for column_index, knob in enumerate(knobs):
        values = (runs["seed"] if knob == "seed" else param(runs, knob)).astype(str)
        order = sorted(values.unique(), key=value_order)
        codes = values.map({value: x for x, value in enumerate(order)}).to_numpy()
        for row_index, (scores, label) in enumerate(rows):
            axis = axes[row_index][column_index]
            scored = scores.notna().to_numpy()
            if not scored.any():
                continue
            points = pd.DataFrame({"x": codes[scored], "score": scores.to_numpy()[scored]})
            by_value = points.groupby("x")
            # each value's dots spread evenly over [x - 0.15, x + 0.15], in the runs' order
            count = by_value["score"].transform("size").to_numpy()
            position = by_value.cumcount().to_numpy()
            offsets = np.where(count > 1, -0.15 + 0.3 * position / np.maximum(count - 1, 1), 0.0)
            axis.scatter(points["x"] + offsets, points["score"], c=colours[scored], alpha=0.6, s=25)
            means = by_value["score"].mean()
            axis.hlines(means, means.index - 0.3, means.index + 0.3, color="black", linewidth=2)
            axis.set_xticks(range(len(order)), order, rotation=30 if len(order) > 4 else 0)
            axis.set_xlim(-0.6, len(order) - 0.4)
            axis.grid(axis="y", alpha=0.3)
            if row_index == 1:
                axis.set_xlabel(knob.replace("_", " "))
            if column_index == 0:
                axis.set_ylabel(label)
    figure.suptitle("The whole sweep: one dot per run (best configuration in orange), bar = mean")
    return figure


def knob_effect(
    runs: pd.DataFrame, knob: str, objective: str, dependence: pd.DataFrame, best: str
) -> Figure:
    """The objective against one knob's values: one dot per run (the best configuration's in
    orange) and the knob's partial dependence (the other knobs marginalised) as a line."""
    values, categories = knob_values(runs, knob)
    scores = metric(runs, objective)
    curve = dependence[dependence["knob"] == knob]
    colours = np.where(runs["configuration"] == best, "tab:orange", "tab:blue")
    figure = Figure(figsize=(5, 3.6), layout="constrained")
    axis = figure.subplots()
    if categories is None:
        x, curve_x = values.to_numpy(), curve["value"].astype(float).to_numpy()
    else:
        position = {value: index for index, value in enumerate(categories)}
        jitter = (runs["seed"].astype(float).to_numpy() % 5 - 2) * 0.05
        x = values.map(position).to_numpy() + jitter
        curve_x = curve["value"].map(position).to_numpy()
        axis.set_xticks(range(len(categories)), categories)
    axis.scatter(x, scores, c=colours, alpha=0.6, s=20, label="one run")
    order = np.argsort(curve_x)
    axis.plot(
        curve_x[order],
        curve["objective"].to_numpy()[order],
        "-" if categories is None else "s",
        color="black",
        label="partial dependence",
    )
    axis.set_xlabel(knob.replace("_", " "))
    axis.set_ylabel(_objective_label(objective))
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    return figure


def knob_pair(runs: pd.DataFrame, first: str, second: str, objective: str, best: str) -> Figure:
    """Two knobs against each other: one dot per configuration, coloured by its mean objective
    over its seeds, the best configuration ringed."""
    frame = pd.DataFrame({"configuration": runs["configuration"], "score": metric(runs, objective)})
    ticks = {}
    for knob in (first, second):
        values, categories = knob_values(runs, knob)
        if categories is not None:
            ticks[knob] = categories
            values = values.map({value: index for index, value in enumerate(categories)})
        frame[knob] = values.astype(float)
    means = frame.groupby("configuration", sort=True).agg(
        score=("score", "mean"), x=(first, "first"), y=(second, "first")
    )
    spread = np.arange(len(means)) % 7 - 3  # separates configurations on one category
    if first in ticks:
        means["x"] += spread * 0.04
    if second in ticks:
        means["y"] += spread * 0.04
    figure = Figure(figsize=(6, 4.6), layout="constrained")
    axis = figure.subplots()
    dots = axis.scatter(means["x"], means["y"], c=means["score"], cmap="viridis", s=45)
    figure.colorbar(dots, ax=axis, label=f"mean {_objective_label(objective)} over seeds")
    if best in means.index:
        axis.scatter(
            means.loc[best, "x"],
            means.loc[best, "y"],
            s=260,
            facecolors="none",
            edgecolors="tab:red",
            linewidths=2,
            label="best configuration",
        )
        axis.legend(fontsize="small", loc="best")
    for knob, set_ticks in ((first, axis.set_xticks), (second, axis.set_yticks)):
        if knob in ticks:
            set_ticks(range(len(ticks[knob])), ticks[knob])
    axis.set_xlabel(first.replace("_", " "))
    axis.set_ylabel(second.replace("_", " "))
    axis.grid(alpha=0.3)
    return figure


def _objective_label(objective: str) -> str:
    named = Objective.named(objective)
    return f"{_split_name(named.split)} {named.metric.replace('_', ' ')}"


def _split_name(split: str) -> str:
    return {"val": "validation", "train": "training"}.get(split, split)


def learning_curves(
    history: dict[str, list[float]], title: str, best_epoch: int | None = None
) -> Figure:
    """Loss and accuracy per epoch, training against validation."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    for axis, name in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        for key, label, style in ((name, "training", "-"), (f"val_{name}", "validation", "--")):
            values = history.get(key)
            if values:
                epochs = np.arange(1, len(values) + 1)
                axis.plot(epochs, values, style, marker="o", markersize=3, label=label)
        if best_epoch is not None:
            axis.axvline(best_epoch + 1, color="grey", linewidth=0.8, label="kept weights")
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    return figure


def confusion_matrix(matrix: np.ndarray, class_names: list[str], title: str) -> Figure:
    """Counts with true classes as rows and predictions as columns."""
    size = max(4.0, 0.9 * len(class_names) + 2)
    figure = Figure(figsize=(size, size * 0.85), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis, shrink=0.8)
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    threshold = matrix.max() / 2 if matrix.size else 0
    for row, column in np.ndindex(matrix.shape):
        value = matrix[row, column]
        colour = "white" if value > threshold else "black"
        axis.text(column, row, str(value), ha="center", va="center", color=colour)
    axis.set_title(title)
    return figure
