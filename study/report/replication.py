"""Does the answer replicate? The same study's declared comparisons on several data sets, pooled
by a random-effects meta-analysis. Pure functions of each data set's `family` table (see
`question`); one DataFrame out.

Each data set gives, per comparison, the mean per-seed difference (setting - against, in points
of the declared metric) and its standard error, difference_std / sqrt(pairs). The pooled
estimate weighs each data set by 1 / (se^2 + tau^2), tau^2 being the variance of the true
difference from data set to data set (DerSimonian-Laird, or Paule-Mandel, as statsmodels'
`combine_effects` computes them); its 95% interval is normal-based. I^2 is the share of the
scatter among the data sets' estimates beyond what their standard errors explain. With k >= 3
data sets a 95% prediction interval for the difference on a new data set is
estimate +/- t(k - 2) * sqrt(tau^2 + se^2) (Higgins, Thompson & Spiegelhalter 2009); with two
there is none (no degree of freedom left), and tau^2 rests on one.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from statsmodels.stats.meta_analysis import combine_effects

from study.report.selection import ReportError
from study.report.stats import ALPHA

METHODS = {"dl": "DerSimonian-Laird", "pm": "Paule-Mandel"}
METHOD = "dl"  # closed form, the one most reports give; with a handful of data sets every
# tau^2 estimator is uncertain, and the report says so
ASKED = ("compare", "family", "reference", "metric", "alpha")  # what makes two questions one
REPLICATION_COLUMNS = [
    *("comparison", "setting", "against", "role", "data_set", "k", "pairs"),
    *("estimate", "se", "ci_low", "ci_high", "grade", "p_holm", "weight"),
    *("tau2", "i2", "q", "prediction_low", "prediction_high", "method"),
    *("same_sign", "detectable_same_sign", "detectable_opposite", "note"),
]
FEWEST_FOR_PREDICTION = 3


def check_same_question(questions: dict[str, pd.DataFrame]) -> None:
    """Raise ReportError unless every experiment's `question` table asks the same question
    (what is compared, the family, its reference, the metric and alpha)."""
    asked = {name: _asked(table) for name, table in questions.items()}
    first, expected = next(iter(asked.items()))
    for name, found in asked.items():
        if found != expected:
            raise ReportError(
                f"experiments {first!r} and {name!r} declared different questions "
                f"({_describe(expected)} against {_describe(found)}): a replication pools one "
                "question; report them one at a time"
            )


def _asked(table: pd.DataFrame) -> tuple:
    row = table.iloc[0]
    return tuple(None if pd.isna(row[key]) else row[key] for key in ASKED)


def _describe(asked: tuple) -> str:
    return ", ".join(f"{key} {value}" for key, value in zip(ASKED, asked, strict=True))


def meta_analysis(families: dict[str, pd.DataFrame], method: str = METHOD) -> pd.DataFrame:
    """Per comparison, a row per data set (its own difference with its t interval over seeds
    and its random-effects weight) and a pooled row (estimate, se, 95% interval, tau2, i2, q,
    the prediction interval where k >= 3, and in how many data sets the difference has the
    pooled one's sign, detectably or not). `families` maps each data set's name to its
    `family` table. Comparisons are matched by their two labels: a data set that compared them
    the other way round (family "best" with another best) has its difference turned round."""
    if method not in METHODS:
        raise ReportError(f"meta-analysis method {method!r} is unknown; choose one of {METHODS}")
    rows: dict[frozenset, list[dict]] = {}
    oriented: dict[frozenset, tuple[str, str]] = {}
    for data_set, family in families.items():
        for row in family.itertuples():
            key = frozenset((row.setting, row.against))
            setting, against = oriented.setdefault(key, (row.setting, row.against))
            rows.setdefault(key, []).append(
                _data_set_row(data_set, row, turned=row.setting != setting)
            )
    frames = []
    for key, found in rows.items():
        setting, against = oriented[key]
        pooled = _pooled_row(found, method)
        frame = pd.DataFrame([*found, pooled], columns=REPLICATION_COLUMNS)
        frame["comparison"] = f"{setting} vs {against}"
        frame["setting"] = setting
        frame["against"] = against
        frame["method"] = METHODS[method]
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=REPLICATION_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    counts = ["k", "pairs", "same_sign", "detectable_same_sign", "detectable_opposite"]
    table[counts] = table[counts].astype("Int64")  # counts stay whole numbers beside NaN
    return table


def _data_set_row(data_set: str, row, turned: bool) -> dict:
    sign = -1.0 if turned else 1.0
    low, high = sign * row.difference_ci_low, sign * row.difference_ci_high
    pairs = int(row.pairs)
    se = row.difference_std / math.sqrt(pairs) if pairs >= 2 else math.nan
    usable = math.isfinite(se) and se > 0 and math.isfinite(row.difference_pct)
    note = []
    if turned:
        note.append("compared the other way round: difference turned round")
    if not usable:
        note.append(
            "left out of the pool: "
            + ("fewer than 2 seeds" if pairs < 2 else "the same difference in every seed (se 0)")
        )
    return {
        "role": "data set",
        "data_set": data_set,
        "k": 1,
        "pairs": pairs,
        "estimate": sign * row.difference_pct,
        "se": se,
        "ci_low": min(low, high),
        "ci_high": max(low, high),
        "grade": row.grade,
        "p_holm": row.p_holm,
        "weight": math.nan,
        "note": "; ".join(note),
        "usable": usable,
    }


def _pooled_row(found: list[dict], method: str) -> dict:
    """The random-effects pool of the usable data-set rows (their `weight` is set here too)."""
    usable = [row for row in found if row.pop("usable")]
    pooled: dict = {"role": "pooled", "data_set": "pooled", "k": len(usable)}
    pooled["pairs"] = sum(row["pairs"] for row in usable)
    if len(usable) < 2:
        pooled["note"] = f"{len(usable)} data set(s) with a standard error: nothing to pool"
        estimates = [row["estimate"] for row in found if math.isfinite(row["estimate"])]
        direction = np.sign(np.mean(estimates)) if estimates else 0.0
    else:
        effect = np.array([row["estimate"] for row in usable])
        variance = np.array([row["se"] for row in usable]) ** 2
        # statsmodels divides by Q, which may be 0, and its summary takes the square root of
        # a Hartung-Knapp variance that is negative when tau^2 is (a column the report skips)
        with np.errstate(all="ignore"):
            result = combine_effects(effect, variance, method_re=method)
            summary = result.summary_frame()
        # statsmodels leaves DerSimonian-Laird's moment estimate negative when Q < k - 1;
        # truncated at 0, as they define it, the random-effects pool is the fixed-effect one
        heterogeneous = result.tau2 > 0
        chosen = summary.loc["random effect" if heterogeneous else "fixed effect"]
        weights = summary["w_re" if heterogeneous else "w_fe"].iloc[: len(usable)]
        for row, weight in zip(usable, weights, strict=True):
            row["weight"] = float(weight)
        q, df = float(result.q), len(usable) - 1
        pooled |= {
            "estimate": float(chosen["eff"]),
            "se": float(chosen["sd_eff"]),
            "ci_low": float(chosen["ci_low"]),
            "ci_high": float(chosen["ci_upp"]),
            "weight": 1.0,
            "tau2": max(float(result.tau2), 0.0),
            "i2": max((q - df) / q, 0.0) if q > 0 else 0.0,
            "q": q,
        }
        pooled |= prediction_interval(pooled["estimate"], pooled["se"], pooled["tau2"], len(usable))
        if len(usable) < FEWEST_FOR_PREDICTION:
            pooled["note"] = (
                f"{len(usable)} data sets: no prediction interval for a new data set (it needs "
                f"{FEWEST_FOR_PREDICTION}), and tau2 rests on {len(usable) - 1} degree(s) of "
                "freedom"
            )
        direction = np.sign(pooled["estimate"])
    signs = np.sign([row["estimate"] for row in found])
    detectable = np.array([row["grade"] == "detectable" for row in found])
    pooled["same_sign"] = int((signs == direction).sum()) if direction else 0
    pooled["detectable_same_sign"] = int((detectable & (signs == direction)).sum())
    pooled["detectable_opposite"] = int((detectable & (signs == -direction)).sum())
    return pooled


def prediction_interval(estimate: float, se: float, tau2: float, k: int) -> dict[str, float]:
    """The 95% interval for the difference on a new data set: estimate +/- t(k - 2) *
    sqrt(tau2 + se^2); NaN with fewer than FEWEST_FOR_PREDICTION data sets."""
    if k < FEWEST_FOR_PREDICTION:
        return {"prediction_low": math.nan, "prediction_high": math.nan}
    half = float(scipy_stats.t.ppf(1 - ALPHA / 2, k - 2)) * math.sqrt(tau2 + se**2)
    return {"prediction_low": estimate - half, "prediction_high": estimate + half}
