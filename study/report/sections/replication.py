"""The replication report's sections: each data set's verdict on the study's one question side by
side, the metric they share, and each comparison pooled over the data sets (its forest plot is
the verdict figure of this report).
"""

from __future__ import annotations

import math

import pandas as pd

from study.files import slug
from study.report import balance, figures
from study.report.analysis import TABLE_FILES, Analysis
from study.report.render import Block, Bullets, Heading, Image, Paragraph, Table
from study.report.replication import FEWEST_FOR_PREDICTION
from study.report.sections import sentences
from study.report.sections.text import DASH, interval, number, signed
from study.vocabulary import QUESTION_METRICS

REPLICATION_FILE = "replication.csv"
PER_DATA_SET = ("runs", "question", "omnibus", "family", "paired")  # tables shipped per data set


def file_prefix(experiment: str) -> str:
    """What each data set's files start with in the replication report's folder."""
    return slug(experiment)


def section(
    analyses: list[Analysis],
    table: pd.DataFrame,
    data_files: list[str],
    images: dict[str, bytes],
) -> list[Block]:
    """`data_files`: the per-run data beside the tables (each data set's per-image outcomes)."""
    asked = analyses[0].tables["question"].iloc[0]
    blocks: list[Block] = [
        Heading(2, "Verdict, data set by data set"),
        Paragraph(
            f"The same study, with the same declared question, run on {len(analyses)} data sets, "
            "each its own experiment; each verdict is the one its own report gives "
            "(`study report EXPERIMENT`)."
        ),
        Bullets(
            tuple(f"**{a.experiment}** ({_data(a)}): {sentences.verdict(a)}" for a in analyses)
        ),
        Heading(2, "The metric"),
        Paragraph(_metric(analyses, asked)),
    ]
    if table.empty:
        blocks.append(Paragraph("No data set has a comparison: nothing to pool."))
        return blocks
    pooled = table[table["role"] == "pooled"]
    method = pooled["method"].iloc[0]
    blocks += [
        Heading(2, "Pooled over the data sets"),
        Paragraph(
            "For each declared comparison (matched by its two labels across the data sets), a "
            f"random-effects meta-analysis ({method}, statsmodels' `combine_effects`) of each "
            "data set's mean per-seed difference, with its standard error difference_std / "
            "sqrt(seeds). tau² is the variance of the true difference from data set to data set "
            "(points²); I² the share of the scatter among the data sets' estimates that their "
            "standard errors do not explain; the pooled 95% interval is normal-based. The "
            f"prediction interval (from {FEWEST_FOR_PREDICTION} data sets on, t with k - 2 df) "
            "is where the difference on a new data set of this kind would fall. Each standard "
            "error is taken as known: fair with 20 seeds, rough with a handful."
        ),
        Table(_pooled_table(pooled), REPLICATION_FILE),
        Table(_data_set_table(table[table["role"] == "data set"]), REPLICATION_FILE),
    ]
    quantity = sentences.metric_name(asked)
    for number_, (comparison, rows) in enumerate(table.groupby("comparison", sort=False), 1):
        name = f"forest_{number_}.png"
        images[name] = figures.png(figures.forest(rows, quantity))
        blocks += [
            Paragraph(agreement(rows[rows["role"] == "pooled"].iloc[0])),
            Image(
                name,
                f"{comparison}: each data set's difference in {quantity} with its 95% t interval "
                "over seeds (square area: its weight in the pool; red: detectable, orange: weak "
                "evidence), the pooled estimate as a diamond over its 95% interval and, from "
                f"{FEWEST_FOR_PREDICTION} data sets on, the prediction interval as a grey line.",
            ),
        ]
    if (pooled["k"] == 2).any():
        blocks.append(Paragraph(TWO_DATA_SETS))
    blocks += [Heading(2, "Files"), Paragraph(_files(analyses, data_files))]
    return blocks


TWO_DATA_SETS = (
    "**What two data sets can and cannot show.** Two can show whether the difference points the "
    "same way on both and what they average. They cannot say how much it varies between data "
    "sets: tau² rests on one degree of freedom (so does I²), so a tau² of 0 does not mean the "
    "data sets agree, and there is no prediction interval for a third data set. A third data "
    "set is what turns the pooled estimate into a claim about data sets of this kind."
)


def agreement(pooled: pd.Series) -> str:
    """ "elu beats tanh on 2 of 3 data sets, detectably on 1", from a pooled row."""
    count = int(pooled["k"]) if pooled["k"] >= 2 else None
    estimate = pooled["estimate"]
    shown = f"{pooled['comparison']}: "
    if count is None or math.isnan(estimate) or estimate == 0:
        return shown + (pooled["note"] or "no direction to count") + "."
    winner, loser = (
        (pooled["setting"], pooled["against"])
        if estimate < 0
        else (pooled["against"], pooled["setting"])
    )
    text = (
        f"{shown}{winner} beats {loser} on {int(pooled['same_sign'])} of {count} data sets, "
        f"detectably on {int(pooled['detectable_same_sign'])}"
    )
    if pooled["detectable_opposite"]:
        text += f"; {loser} beats {winner} detectably on {int(pooled['detectable_opposite'])}"
    return (
        f"{text}. Pooled difference {signed(estimate)} points, 95% CI "
        f"{interval(pooled['ci_low'], pooled['ci_high'])}, tau² {number(pooled['tau2'], 3)}, "
        f"I² {_percent(pooled['i2'])}"
        + (
            f", a new data set's difference within "
            f"{interval(pooled['prediction_low'], pooled['prediction_high'])} (95% prediction)."
            if not math.isnan(pooled["prediction_low"])
            else "; no prediction interval from two data sets."
        )
    )


def _percent(value: float) -> str:
    return DASH if math.isnan(value) else f"{100 * value:.0f}%"


def _pooled_table(pooled: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Comparison": pooled["comparison"],
            "Data sets": pooled["k"],
            "Pooled difference (points, 95% CI)": [
                DASH
                if math.isnan(row.estimate)
                else f"{row.estimate:+.2f} {interval(row.ci_low, row.ci_high)}"
                for row in pooled.itertuples()
            ],
            "tau²": [number(value, 3) for value in pooled["tau2"]],
            "I²": [_percent(value) for value in pooled["i2"]],
            "95% prediction, new data set": [
                interval(row.prediction_low, row.prediction_high) for row in pooled.itertuples()
            ],
        }
    )


def _data_set_table(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Comparison": rows["comparison"],
            "Data set": rows["data_set"],
            "Seeds": rows["pairs"],
            "Difference (points, 95% CI over seeds)": [
                f"{signed(row.estimate)} {interval(row.ci_low, row.ci_high)}"
                for row in rows.itertuples()
            ],
            "SE": [number(value, 3) for value in rows["se"]],
            "Weight": [_percent(value) for value in rows["weight"]],
            "Answer": rows["grade"],
            "Note": rows["note"].fillna(""),
        }
    )


def _data(analysis: Analysis) -> str:
    """ "6 classes, 60 images" from the best runs' logged class counts."""
    whole = balance.counts(analysis.best_runs).query("split == 'all'")
    per_class = whole.groupby("class")["images"].max()
    if per_class.empty:
        return "classes not logged"
    return f"{len(per_class)} classes, {int(per_class.sum())} images"


def _metric(analyses: list[Analysis], asked: pd.Series) -> str:
    """Which metric every data set is compared on, why, and what that leaves out."""
    metric = str(asked["metric"])
    text = (
        f"Every data set is compared on the {sentences.metric_name(asked)} "
        f"(`question.metric: {metric}`), the one metric the study declared. "
    )
    imbalanced = {
        a.experiment: ratio
        for a in analyses
        if (ratio := balance.imbalance(a.best_runs)) > balance.IMBALANCED
    }
    if metric != "error_rate":
        text += (
            f"The {QUESTION_METRICS[metric]} weighs every class the same, so a point means the "
            "same on data sets whose classes are balanced differently."
        )
    elif imbalanced:
        shown = ", ".join(f"{name} {ratio:.1f} : 1" for name, ratio in imbalanced.items())
        text += (
            f"**Some data sets are imbalanced ({shown}) and the metric is the error rate**, "
            "which their largest class dominates: the pooled difference mixes what the settings "
            "do to different class mixes. A replication over imbalanced data declares "
            "`question.metric: balanced_error_rate` (or macro_f1) before it runs."
        )
    else:
        text += "Every data set's classes are balanced, where error rate and balanced error agree."
    classes = {a.experiment: _classes(a) for a in analyses}
    if len({frozenset(found) for found in classes.values()}) > 1:
        text += (
            " The data sets have different classes ("
            + ", ".join(f"{name}: {len(found)}" for name, found in classes.items())
            + "): each is compared on this metric only, as differences between settings within "
            "the data set; their error levels are not comparable, only the differences are "
            "pooled."
        )
    return text


def _classes(analysis: Analysis) -> set[str]:
    return set(balance.counts(analysis.best_runs)["class"])


def _files(analyses: list[Analysis], data_files: list[str]) -> str:
    shipped = ", ".join(f"`{TABLE_FILES[name]}`" for name in PER_DATA_SET)
    outcomes = f" and {', '.join(f'`{name}`' for name in data_files)}" if data_files else ""
    return (
        f"`{REPLICATION_FILE}`: a row per comparison and data set and a pooled row per "
        "comparison (estimate, se, ci_low, ci_high, tau2, i2, q, prediction_low, "
        "prediction_high, method, k). Each data set's own tables and runs, prefixed by its "
        f"experiment's name ({shipped}: "
        + ", ".join(f"`{file_prefix(a.experiment)}_*`" for a in analyses)
        + f"){outcomes}; `study report EXPERIMENT` builds any one data set's full report."
    )
