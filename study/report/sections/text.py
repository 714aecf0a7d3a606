"""How the report writes numbers, p-values, intervals, objectives and lists of values."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from study.objective import Objective

SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
PHASES = {
    "frozen": "phase 1 (backbone frozen, head trained)",
    "fine_tune": "phase 2 (fine-tuning: everything trained)",
}
SHOWN_CONFIGURATIONS = 10
DASH = "–"


def names(configurations: Iterable[object]) -> str:
    """The first SHOWN_CONFIGURATIONS names, and how many more there are."""
    shown = [str(name) for name in configurations]
    more = len(shown) - SHOWN_CONFIGURATIONS
    return "; ".join(shown[:SHOWN_CONFIGURATIONS]) + (f"; and {more} more" if more > 0 else "")


def objective_name(objective: str, unit: bool = False) -> str:
    """`val_accuracy` as "validation accuracy", or as a column header "Validation accuracy (%)"."""
    named = Objective.named(objective)
    text = f"{SPLIT_NAMES[named.split]} {named.metric.replace('_', ' ')}"
    if not unit:
        return text
    return text.capitalize() + ("" if raw(objective) else " (%)")


def objective_cell(objective: str, mean: float, std: float) -> str:
    if raw(objective):
        return mean_std(mean, std, 4)
    return mean_std(100 * mean, 100 * std, 2)


def raw(objective: str) -> bool:
    """Whether the objective is a loss, shown as is, rather than a fraction shown in percent."""
    return objective.endswith("_loss")


def mean_std(mean: float, std: float, digits: int) -> str:
    if mean is None or math.isnan(mean):
        return DASH
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def interval(low: float, high: float) -> str:
    if math.isnan(low):
        return DASH
    return f"[{low:.2f}, {high:.2f}]"


def number(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return DASH
    return f"{value:.{digits}f}"


def signed(value: float) -> str:
    return DASH if math.isnan(value) else f"{value:+.2f}"


def p_value(value: float, equals: bool = False) -> str:
    if value < 0.001:
        return "< 0.001"
    return f"= {value:.3f}" if equals else f"{value:.3f}"


def listing(values: pd.Series, code: bool = False) -> str:
    found = sorted(str(v) for v in values.dropna().unique())
    if not found:
        return "not recorded"
    shown = [f"`{v}`" if code else v for v in found]
    return shown[0] if len(shown) == 1 else "several: " + ", ".join(shown)


def difference(row: tuple) -> str:
    """A comparison's difference in points with its t interval over seeds, from a row of
    `itertuples` over a table of comparisons; why there is no interval when there is none."""
    value = getattr(row, "difference_pct", math.nan)
    if value is None or math.isnan(value):
        return DASH
    if math.isnan(row.difference_ci_low):
        pairs = int(row.pairs)
        if pairs < 2:
            return f"{value:+.2f} (one shared seed: no test)"
        return f"{value:+.2f} (the same in all {pairs} shared seeds: no interval)"
    return f"{value:+.2f} [{row.difference_ci_low:+.2f}, {row.difference_ci_high:+.2f}]"


def new_images(row: tuple) -> str:
    """A comparison's interval that lets the test images vary too, from a row of `itertuples`."""
    low = getattr(row, "new_images_ci_low", math.nan)
    if low is None or math.isnan(low):
        return DASH
    return f"[{low:+.2f}, {row.new_images_ci_high:+.2f}]"
