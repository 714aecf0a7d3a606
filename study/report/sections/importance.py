"""Which knob matters, when the runs varied two or more knobs (see `study.report.importance`)."""

from __future__ import annotations

import math

import pandas as pd

from study.files import slug
from study.report import figures, stats
from study.report.analysis import TABLE_FILES, Analysis
from study.report.importance import METHOD, TREES
from study.report.render import Block, Heading, Image, Paragraph, Table
from study.report.sections.text import DASH, objective_name, p_value


def section(analysis: Analysis, images: dict[str, bytes]) -> list[Block]:
    blocks = _knob_tests(analysis)
    if "importance" not in analysis.tables:
        return blocks
    table = analysis.tables["importance"]
    pairs = analysis.tables["interactions"]
    runs = analysis.selection.runs
    first = table.iloc[0]
    shares = (
        "The configurations explain "
        f"{_share(first['configurations_share'])} of the run-to-run variance of the objective "
        f"and the seeds {_share(first['seed_share'])} (seed-blocked ANOVA: objective ~ "
        "configuration + seed, type II sums of squares). A knob's fANOVA share is of the "
        "forest's variance over the search space, not of the runs': the knob tests above give "
        "each knob's unique share of the runs' variance."
        if not math.isnan(first["configurations_share"])
        else "The runs' variance cannot be split between configurations and seeds (one seed, "
        "or one run per configuration), so the fANOVA shares are of the forest's variance only."
    )
    shown = pd.DataFrame(
        {
            "Knob": table["knob"].str.replace("_", " "),
            "fANOVA share (of the forest's variance)": [f"{v:.3f}" for v in table["importance"]],
            "Values tried": table["values"],
        }
    )
    strongest = pairs.iloc[0]
    blocks += [
        Paragraph(
            f"Described, not tested (secondary): {METHOD} Objective: "
            f"{objective_name(analysis.objective)}, {first['runs']} runs, in a fixed order "
            f"(knob values, then seed). {shares}"
        ),
        Table(shown, TABLE_FILES["importance"]),
        Paragraph(
            f"Strongest pairwise interaction: **{strongest['knob_a']} x {strongest['knob_b']}**, "
            f"Friedman's H = {strongest['h_statistic']:.2f} (the share of the pair's joint "
            f"effect their separate effects leave unexplained), "
            f"{100 * strongest['interaction_share']:.2f}% of the objective's variance. H comes "
            f"from scikit-learn's `partial_dependence` (recursion method) on a "
            f"{TREES}-tree random forest of the runs; every pair is in "
            f"`{TABLE_FILES['interactions']}`."
        ),
    ]
    for knob in table["knob"]:
        name = f"importance_{slug(knob)}.png"
        figure = figures.knob_effect(
            runs,
            knob,
            analysis.objective,
            analysis.tables["partial_dependence"],
            analysis.configuration,
        )
        images[name] = figures.png(figure)
        blocks.append(
            Image(
                name,
                f"{objective_name(analysis.objective).capitalize()} against {knob}: one dot "
                "per run (the best configuration's in orange); the line is the partial "
                "dependence, the other knobs marginalised "
                f"(`{TABLE_FILES['partial_dependence']}`).",
            )
        )
    top, second = table["knob"].iloc[:2]
    figure = figures.knob_pair(runs, top, second, analysis.objective, analysis.configuration)
    images["importance_pair.png"] = figures.png(figure)
    blocks.append(
        Image(
            "importance_pair.png",
            f"The two most important knobs, {top} and {second}, against each other: one dot per "
            f"configuration, coloured by its mean {objective_name(analysis.objective)} over "
            "its seeds; the best configuration ringed in red.",
        )
    )
    return blocks


def _knob_tests(analysis: Analysis) -> list[Block]:
    """The test of each knob's effect (secondary to the declared question)."""
    if "knob_tests" not in analysis.tables:
        return []
    tests = analysis.tables["knob_tests"]
    heading = Heading(2, "Which knob matters")
    if (tests["role"] == "not identified").any():
        return [heading, Paragraph(f"Knob tests: {tests['note'].iloc[0]}.")]
    rows = tests[tests["role"] != "lack of fit"]
    shown = pd.DataFrame(
        {
            "Term": [
                f"{row.knob.replace('_', ' ')} ({row.entered_as})" for row in rows.itertuples()
            ],
            "F (df)": [
                f"{row.f_statistic:.3g} ({row.df:g}, {row.df_residual:g})"
                for row in rows.itertuples()
            ],
            "p / Holm": [
                p_value(row.p_value)
                + " / "
                + (DASH if math.isnan(row.p_holm) else p_value(row.p_holm))
                for row in rows.itertuples()
            ],
            "Unique share of the runs' variance": [_share(v) for v in rows["unique_share"]],
        }
    )
    fit = tests[tests["role"] == "lack of fit"].iloc[0]
    lack = (
        f"Lack of fit against one mean per configuration: F = {fit['f_statistic']:.3g} "
        f"({fit['df']:g}, {fit['df_residual']:g}), p {p_value(fit['p_value'], True)}"
        + (
            ": the additive model misses part of the configurations' differences, so the "
            "knob tests describe a simplified model."
            if fit["p_value"] < stats.ALPHA
            else "."
        )
        if math.isfinite(fit["f_statistic"])
        else f"Lack of fit: {fit['note']}."
    )
    metric = analysis.tables["knobs"]["adjusted_metric"].iloc[0]
    return [
        heading,
        Paragraph(
            "Secondary to the declared question: each knob's type-II F test in the "
            f"seed-blocked additive model of {metric} (%) over the {int(rows['runs'].iloc[0])} "
            "runs (a text knob as a factor, a numeric one as a line on its searched scale): "
            "its null is that this knob adds nothing to a model of all the others. Holm over "
            "the knobs. A knob's unique share is its type-II sum of squares over the runs' "
            "total: what it explains beyond every other knob. " + lack
        ),
        Table(shown, TABLE_FILES["knob_tests"]),
    ]


def _share(value: float) -> str:
    return DASH if math.isnan(value) else f"{100 * value:.1f} %"
