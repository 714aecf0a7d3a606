"""Which knob matters, when the runs varied two or more knobs (see `study.report.importance`)."""

from __future__ import annotations

import math
import re

import pandas as pd

from study.report import figures
from study.report.analysis import TABLE_FILES, Analysis
from study.report.importance import METHOD, TREES
from study.report.render import Block, Heading, Image, Paragraph, Table
from study.report.sections.text import DASH, objective_name, p_value


def section(analysis: Analysis, images: dict[str, bytes]) -> list[Block]:
    if "importance" not in analysis.tables:
        return []
    table = analysis.tables["importance"]
    pairs = analysis.tables["interactions"]
    runs = analysis.selection.runs
    first = table.iloc[0]
    shares = (
        "The configurations explain "
        f"{_share(first['configurations_share'])} of the run-to-run variance of the objective "
        f"and the seeds {_share(first['seed_share'])} (seed-blocked ANOVA: objective ~ "
        "configuration + seed, type II sums of squares); a knob's share of the runs' variance "
        "is its fANOVA share times the configurations' share."
        if not math.isnan(first["configurations_share"])
        else "The runs' variance cannot be split between configurations and seeds (one seed, "
        "or one run per configuration), so the fANOVA shares are of the forest's variance only."
    )
    null = (
        f"p: the share of {first['permutations']} permutations (the objective shuffled among "
        "the runs of each seed: no configuration effect, seed effects kept, one forest each) "
        "whose importance reaches the observed one, the observed fit counted in."
        if first["permutations"]
        else "No permutation p-value: too few runs."
    )
    shown = pd.DataFrame(
        {
            "Knob": table["knob"].str.replace("_", " "),
            "fANOVA share (of the forest's variance)": [f"{v:.3f}" for v in table["importance"]],
            "Share of the runs' variance": [_share(v) for v in table["share_of_runs"]],
            "Permutation p": [
                DASH if math.isnan(p) else p_value(p) for p in table["p_permutation"]
            ],
            "Values tried": table["values"],
        }
    )
    strongest = pairs.iloc[0]
    blocks: list[Block] = [
        Heading(2, "Which knob matters"),
        Paragraph(
            f"{METHOD} Objective: {objective_name(analysis.objective)}, "
            f"{first['runs']} runs, one fANOVA trial per run, in a fixed order (knob values, "
            f"then seed). {shares} {null}"
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
        name = f"importance_{_file_part(knob)}.png"
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


def _share(value: float) -> str:
    return DASH if math.isnan(value) else f"{100 * value:.1f} %"


def _file_part(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)
