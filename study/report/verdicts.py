"""Before any winner: does any configuration differ at all, which configurations cannot be told
from the best, and what difference could these seeds have detected. Pure functions of the
included runs and the configurations table (`tables.configurations`), one DataFrame each.

- `omnibus`: the seed-blocked permutation F test (`stats.omnibus`) of the configurations, on
  the error rate of the reported split and on the objective that chose the champion, over the
  seeds every configuration has.
- `best_set`: a 95% confidence set for the configuration of lowest error rate (multiple
  comparisons with the best): a configuration leaves the set only when some other one is
  shown better than it by the one-sided sign-flip test over their shared seeds, at
  ALPHA / (k - 1) (Bonferroni over its k - 1 rivals), so the truly best one leaves it with
  probability at most ALPHA.
- `power`: from the spread of the paired seed differences in the configurations table, the
  smallest difference the paired test detects with 80% power, and the seeds that a difference
  of `TARGET_POINTS` needs.
- `backbone_variance`: which backbones the seeds ran on (one, or random backbone draws crossed
  with the seeds), and the draws' share of the variance of a seed's mean error rate over the
  configurations (`stats.variance_share`, seeds nested in draws).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from study.report import stats
from study.tracking.outcome import column, metric

TARGET_POINTS = 0.5  # percentage points of error rate the power table asks about
OMNIBUS_COLUMNS = [
    *("quantity", "settings", "seeds", "f_statistic", "df_settings", "df_residual"),
    *("p_permutation", "permutation_exact", "rejects"),
]
BEST_SET_COLUMNS = ["configuration", "pairs", "error_pct_mean", "p_shown_worse", "in_best_set"]
BACKBONE_COLUMNS = [
    *("quantity", "weights_source", "backbones", "backbone_labels", "seeds", "nested"),
    *("f_statistic", "df_backbones", "df_residual", "p_value"),
    *("between_variance", "within_variance", "share"),
]
POWER_COLUMNS = [
    *("comparisons", "pairs", "difference_std", "alpha", "power"),
    *("minimum_detectable_pct", "smallest_p", "target_pct", "seeds_for_target"),
]


def seed_table(runs: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """(seed x configuration) table of a metric, columns in the order of first appearance;
    error rates (`*_error_rate`) in percent."""
    values = metric(runs, quantity) * (100 if quantity.endswith("_error_rate") else 1)
    frame = pd.DataFrame(
        {"seed": runs["seed"], "configuration": runs["configuration"], "value": values}
    )
    order = list(dict.fromkeys(runs["configuration"]))
    table = frame.pivot_table(index="seed", columns="configuration", values="value")
    return table.reindex(columns=order).sort_index()


def omnibus(runs: pd.DataFrame, quantities: list[str]) -> pd.DataFrame:
    """One row per quantity: the seed-blocked permutation F test of any configuration effect,
    over the seeds that every configuration has (complete blocks)."""
    rows = []
    for quantity in dict.fromkeys(quantities):
        complete = seed_table(runs, quantity).dropna(axis=0, how="any")
        found = stats.omnibus(complete.to_numpy())
        rows.append(
            {
                "quantity": quantity,
                "settings": found.settings,
                "seeds": found.seeds,
                "f_statistic": found.f_statistic,
                "df_settings": found.df_settings,
                "df_residual": found.df_residual,
                "p_permutation": found.p_value,
                "permutation_exact": found.exact,
                "rejects": bool(found.p_value < stats.ALPHA),
            }
        )
    return pd.DataFrame(rows, columns=OMNIBUS_COLUMNS)


def best_set(runs: pd.DataFrame, split: str) -> pd.DataFrame:
    """Every configuration with its mean error rate (percent) on `split`, lowest first, the
    smallest one-sided sign-flip p-value that some other configuration has a lower error
    (paired over their shared seeds), and whether it stays in the confidence set for the best.
    The test is skipped where the seeds cannot reach the level whatever the data."""
    table = seed_table(runs, f"{split}_error_rate")
    means = table.mean().sort_values(kind="stable")
    level = stats.ALPHA / max(len(means) - 1, 1)
    values = table[means.index].to_numpy(dtype=float)
    scored = ~np.isnan(values)
    shared = scored.T.astype(int) @ scored.astype(int)  # seeds each pair of columns shares
    # with fewer shared seeds, even every one of them worse could not reach the level
    enough = next(n for n in itertools.count(2) if 1 / 2**n <= level)
    rows = []
    for index, (label, mean) in enumerate(means.items()):
        smallest = math.nan
        for rival in np.flatnonzero((means.to_numpy() < mean) & (shared[index] >= enough)):
            both = scored[:, index] & scored[:, rival]
            differences = values[both, index] - values[both, rival]
            p, _ = stats.sign_flip_test(differences, alternative="greater")
            smallest = p if math.isnan(smallest) else min(smallest, p)
        rows.append(
            {
                "configuration": label,
                "pairs": int(scored[:, index].sum()),
                "error_pct_mean": mean,
                "p_shown_worse": smallest,
                "in_best_set": not smallest < level,
            }
        )
    return pd.DataFrame(rows, columns=BEST_SET_COLUMNS)


def power(comparisons: pd.DataFrame, target: float = TARGET_POINTS) -> pd.DataFrame:
    """From the paired comparisons of a table (columns `pairs`, `difference_std` in points):
    the pooled std of the per-seed differences and the typical number of pairs, the smallest
    difference the paired test detects at 80% power, and the seeds `target` points need.
    Empty when no comparison has two pairs with a spread."""
    usable = comparisons[(comparisons["pairs"] >= 2) & (comparisons["difference_std"] > 0)]
    if usable.empty:
        return pd.DataFrame(columns=POWER_COLUMNS)
    std = float(np.sqrt((usable["difference_std"] ** 2).mean()))
    pairs = int(usable["pairs"].median())
    row = {
        "comparisons": len(usable),
        "pairs": pairs,
        "difference_std": std,
        "alpha": stats.ALPHA,
        "power": stats.POWER,
        "minimum_detectable_pct": stats.minimum_detectable_difference(std, pairs),
        "smallest_p": stats.smallest_p_value(pairs),
        "target_pct": target,
        "seeds_for_target": stats.seeds_needed(target, std),
    }
    return pd.DataFrame([row], columns=POWER_COLUMNS)


def backbone_variance(runs: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """One row: the backbones the runs used (tag `weights`, which names a random backbone's
    init seed) and, over the seeds every configuration has, the one-way random-effects ANOVA
    of each seed's mean `quantity` (error rates in percent) by its backbone. `nested` is
    false when some seed ran on two backbones; the test then stays NaN."""
    backbone = column(runs, "tags.weights").fillna("unknown").astype(str)
    per_seed = pd.DataFrame({"seed": runs["seed"], "backbone": backbone}).groupby("seed")
    nested = bool((per_seed["backbone"].nunique() <= 1).all())
    means = seed_table(runs, quantity).dropna(axis=0, how="any").mean(axis=1)
    labels = list(dict.fromkeys(backbone))
    groups = per_seed["backbone"].first()[means.index] if nested else []
    found = stats.variance_share(means.to_numpy() if nested else [], groups)
    sources = sorted(set(column(runs, "tags.weights_source").dropna().astype(str)))
    row = {
        "quantity": quantity,
        "weights_source": " ".join(sources),
        "backbones": len(labels),
        "backbone_labels": "; ".join(labels),
        "seeds": len(means),
        "nested": nested,
        "f_statistic": found.f_statistic,
        "df_backbones": found.df_groups,
        "df_residual": found.df_residual,
        "p_value": found.p_value,
        "between_variance": found.between,
        "within_variance": found.within,
        "share": found.share,
    }
    return pd.DataFrame([row], columns=BACKBONE_COLUMNS)


def verdict_tables(
    runs: pd.DataFrame, configurations: pd.DataFrame, objective: str, split: str
) -> dict[str, pd.DataFrame]:
    """`omnibus` (on the error rate of `split`, then on `objective`), `best_set`, `power`
    (from the comparisons with the champion in `configurations`; none when no comparison has
    a spread) and `backbone` (`backbone_variance` on the error rate of `split`)."""
    found = {
        "omnibus": omnibus(runs, [f"{split}_error_rate", objective]),
        "best_set": best_set(runs, split),
        "backbone": backbone_variance(runs, f"{split}_error_rate"),
    }
    detectable = power(configurations.iloc[1:])
    if not detectable.empty:
        found["power"] = detectable
    return found
