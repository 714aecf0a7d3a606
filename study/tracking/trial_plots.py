"""Figures shared by the run artifacts and the report. Each function returns a closed-over
matplotlib Figure; the caller saves it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def learning_curves(
    history: dict[str, list[float]], title: str, best_epoch: int | None = None
) -> Figure:
    """Loss and accuracy per epoch, training against validation."""
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        for key, label, style in ((metric, "training", "-"), (f"val_{metric}", "validation", "--")):
            values = history.get(key)
            if values:
                epochs = np.arange(1, len(values) + 1)
                axis.plot(epochs, values, style, marker="o", markersize=3, label=label)
        if best_epoch is not None:
            axis.axvline(best_epoch + 1, color="grey", linewidth=0.8, label="kept weights")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    plt.close(figure)
    return figure


def confusion_matrix(matrix: np.ndarray, class_names: list[str], title: str) -> Figure:
    """Counts with true classes as rows and predictions as columns."""
    size = max(4.0, 0.9 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size * 0.85), layout="constrained")
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
    plt.close(figure)
    return figure
