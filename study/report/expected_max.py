"""Expected best score against the search budget (Dodge et al. 2019): how good a model a user
can expect after trying n configurations of one setting (per activation, by default), and so
after how many trials another setting would be expected to win.

The method. A setting's N configurations, drawn at random over the other knobs, give N
validation scores v_1..v_N, i.i.d. draws from the score distribution a user would meet when
trying configurations of that setting. Sorted into their distinct values u_1 < ... < u_k with
the empirical CDF F (F(u_j) = share of the scores <= u_j, F(u_0) = 0), the best of n draws
with replacement from that distribution takes the value u_j with probability
F(u_j)^n - F(u_(j-1))^n, so

    E[max_n] = sum_j u_j (F(u_j)^n - F(u_(j-1))^n)
    Var[max_n] = sum_j (u_j - E[max_n])^2 (F(u_j)^n - F(u_(j-1))^n)

(the variance is E[max_n^2] - E[max_n]^2, summed about the mean so that scores near 1 do not
lose it to cancellation). Tied scores fall in one step of F, which is how the formula handles
them. E[max_1] is the mean score; E[max_n] rises with n to the sample's best score, which it
reaches once n draws almost surely contain it (the estimator cannot promise more than the
best configuration seen). For an objective to minimise (val_loss) the same holds for the
minimum, computed as the maximum of the negated scores.

What the variance means: the spread of the best score among n configurations a user would
draw, not the uncertainty of E[max_n] itself. Two settings whose ±1 std bands overlap widely
at a budget may change places for the next user who tries that many configurations.

Assumptions: the draws are independent and identically distributed, so the configurations
must come from a random search (search_spaces/random_search.yaml), not from Bayesian
optimisation, whose proposals depend on earlier scores; the estimate is only as good as the
empirical distribution of the N scores, and budgets beyond N only approach the sample's best.
With several seeds per configuration, a configuration's mean over its seeds is one draw (the
table's `draw` column says which), so the curve answers "n configurations, each trained on
that many seeds".

Reference: Jesse Dodge, Suchin Gururangan, Dallas Card, Roy Schwartz, Noah A. Smith, "Show
Your Work: Improved Reporting of Experimental Results", EMNLP 2019, section 3.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from study.objective import OBJECTIVES, Objective
from study.report.figures import png
from study.report.selection import value_order
from study.tracking.outcome import metric, param

COLUMNS = [
    *("knob", "group", "budget", "expected_max", "variance", "std", "draws", "draw"),
    *("objective", "leader"),
]


class ExpectedMax(NamedTuple):
    mean: np.ndarray  # E[max_n], one per budget
    variance: np.ndarray  # Var[max_n], one per budget


def expected_max(values: ArrayLike, budgets: ArrayLike) -> ExpectedMax:
    """Dodge et al.'s expected maximum of `budgets` draws (each a count n >= 1) with
    replacement from the empirical distribution of `values` (higher is better), and its
    variance (see the module's docstring)."""
    scores = np.asarray(values, dtype=float)
    if scores.ndim != 1 or scores.size == 0 or not np.isfinite(scores).all():
        raise ValueError("expected_max needs a non-empty 1-d array of finite scores")
    counts = np.asarray(budgets)
    if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer) or (counts < 1).any():
        raise ValueError("budgets must be a 1-d array of integers >= 1")
    distinct, repeats = np.unique(scores, return_counts=True)
    cdf = np.cumsum(repeats) / scores.size
    below = np.concatenate(([0.0], cdf[:-1]))
    exponent = counts[:, None].astype(float)
    chance = cdf**exponent - below**exponent  # P(max_n = distinct_j), budgets x distinct values
    mean = chance @ distinct
    variance = (chance * (distinct - mean[:, None]) ** 2).sum(axis=1)
    return ExpectedMax(mean, variance)


def expected_max_table(
    runs: pd.DataFrame, objective: str, group: str = "activation"
) -> pd.DataFrame:
    """For each value of the knob `group` (the param `params.<group>`), the expected best
    `objective` after n = 1..draws configurations of that value, with its variance and std.

    `runs` are counted runs (`outcome.counted_runs`, with a `configuration` column). A draw
    is a configuration: its mean `objective` over its seeds that scored (`draw` says "run"
    when every configuration has one, else "mean of k seeds"); `draws` is the group's count.
    `leader` names the group with the best expected score at that budget, ties going to the
    first group in value order; it is left empty at budgets that some group has too few
    draws to reach, since the estimate there only approaches that group's best score."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {sorted(OBJECTIVES)}")
    sign = float(Objective.named(objective).sign)
    scores = pd.DataFrame(
        {
            "group": param(runs, group),
            "configuration": runs["configuration"],
            "score": metric(runs, objective),
        }
    )
    scores = scores[scores["group"].notna() & np.isfinite(scores["score"])]
    draws = scores.groupby(["group", "configuration"])["score"].agg(["mean", "size"])
    frames = []
    for name in sorted(draws.index.unique("group"), key=value_order):
        own = draws.loc[name]
        budgets = np.arange(1, len(own) + 1)
        found = expected_max(sign * own["mean"].to_numpy(), budgets)
        frames.append(
            pd.DataFrame(
                {
                    "knob": group,
                    "group": name,
                    "budget": budgets,
                    "expected_max": sign * found.mean,
                    "variance": found.variance,
                    "std": np.sqrt(found.variance),
                    "draws": len(own),
                    "draw": _draw(own["size"]),
                    "objective": objective,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    key = sign * table["expected_max"]
    reached_by_all = table["budget"] <= table["draws"].min()
    best = key[reached_by_all].groupby(table["budget"]).idxmax()
    table["leader"] = table["budget"].map(table.loc[best, "group"].set_axis(best.index))
    return table.reindex(columns=COLUMNS)


def expected_max_figure(table: pd.DataFrame, objective: str) -> bytes:
    """`expected_max_table` as a PNG: expected best `objective` against the budget, one line
    per group with a band of ±1 std (the spread of the best of n draws)."""
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axis = figure.subplots()
    for index, (name, rows) in enumerate(table.groupby("group", sort=False)):
        colour = f"C{index % 10}"
        budget, mean, std = rows["budget"], rows["expected_max"], rows["std"]
        label = f"{name} ({rows['draws'].iloc[0]} draws)"
        axis.plot(budget, mean, color=colour, marker="o", markersize=3, label=label)
        axis.fill_between(budget, mean - std, mean + std, color=colour, alpha=0.15, linewidth=0)
    name = objective.replace("val_", "validation ").replace("_", " ")
    axis.set_xlabel("configurations tried (random search)")
    axis.set_ylabel(f"expected best {name}")
    axis.set_title(f"Expected best {name} against the search budget, ±1 std")
    axis.grid(alpha=0.3)
    if len(table):
        axis.legend(title=table["knob"].iloc[0].replace("_", " "), fontsize="small")
    return png(figure)


def _draw(seeds: pd.Series) -> str:
    low, high = seeds.min(), seeds.max()
    if high == 1:
        return "run"
    return f"mean of {low} seeds" if low == high else f"mean of {low}-{high} seeds"
