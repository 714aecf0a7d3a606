"""Table 6: the error rate by activation on one model and protocol, each compared with elu."""

from __future__ import annotations

import math

import pandas as pd

from study.report import figures, tables
from study.report.analysis import TABLE_FILES, Analysis
from study.report.paper import Paper
from study.report.render import Block, Bullets, Heading, Image, Table
from study.report.sections import sentences
from study.report.sections.text import (
    DASH,
    SPLIT_NAMES,
    difference,
    interval,
    mean_std,
    new_images,
    number,
    p_value,
)
from study.report.stats import CONFIDENCE


def section(analysis: Analysis, paper: Paper, images: dict[str, bytes]) -> list[Block]:
    table = analysis.tables["activations"]
    split = SPLIT_NAMES[analysis.split]
    fixed = [key for key in analysis.selection.swept if key != "activation"]
    columns = {
        "Activation": table["activation"],
        "Seeds": [
            f"{row.seeds} (n = {row.n})" if row.n else "no runs" for row in table.itertuples()
        ],
        f"{split.capitalize()} error rate (%)": [
            mean_std(row.error_pct_mean, row.error_pct_std, 2) for row in table.itertuples()
        ],
        f"{CONFIDENCE:.0%} Wilson interval (%)": [
            interval(row.error_pct_ci_low, row.error_pct_ci_high) for row in table.itertuples()
        ],
        "Difference from elu (points, 95% CI over seeds)": [
            difference(row) for row in table.itertuples()
        ],
        "Permutation p (pairs)": [
            DASH if math.isnan(p) else f"{p_value(p)} ({int(n)})"
            for p, n in zip(table["p_permutation"], table["pairs"].fillna(0), strict=True)
        ],
        "Holm p": [DASH if math.isnan(p) else p_value(p) for p in table["p_holm"]],
        "Hedges' g_z": [number(v, 2) for v in table["hedges_gz"]],
        "95% CI, new test images too": [new_images(row) for row in table.itertuples()],
    }
    label = sentences.paper_label(analysis)
    columns[f"{label}: method"] = table["paper_method"].fillna(DASH)
    columns[f"{label}: error rate (%)"] = [number(v, 4) for v in table["paper_error_pct"]]
    shown = pd.DataFrame(columns)
    held = ", ".join(f"{key}={analysis.best['params.' + key]}" for key in fixed)
    protocol = (
        f"Ours: the {split} error rate of one model and protocol per activation, the runs that "
        "match the best configuration in every other setting the sweep varied"
        + (f" ({held})" if held else "")
        + ", one run per seed. Mean ± sample std over seeds and the "
        f"{CONFIDENCE:.0%} Wilson interval (see Statistics above). Each activation is compared "
        "with elu over the seeds both have (same split, head initialisation and augmentation "
        "order): difference = activation − elu in percentage points with the t interval of "
        "the per-seed differences (would it beat elu if both were trained again on this "
        "data?), the exact sign-flip permutation test over seeds, Holm-adjusted over the fixed "
        f"family of all {len(table) - 1} activations compared with elu (untestable ones "
        "included), and Hedges' g_z; where per-image outcomes were logged, the last interval "
        "lets the test images vary too (crossed seeds x images variance)."
    )
    notes = [
        _role(analysis),
        protocol,
        sentences.split_design(analysis),
        *(f"Paper: {note}" for note in paper.activation_notes),
    ]
    if not analysis.same_data:
        notes.append(sentences.not_neu(paper))
    measured = table[table["n"] > 0]
    if len(measured) < 2:
        notes.append(
            "**No comparison**: the sweep trained "
            + (f"only {measured['activation'].iloc[0]}" if len(measured) else "no activation")
            + " with the best configuration's other settings; sweep `model.activation` to "
            "compare activations."
        )
    elif tables.REFERENCE_ACTIVATION not in set(measured["activation"]):
        notes.append("**No paired tests**: no elu runs share the other settings.")
    elif measured["n"].max() < 2:
        notes.append("**No spread and no paired tests**: one seed per activation.")
    blocks: list[Block] = [
        Heading(2, "Table 6: error rate by activation"),
        Table(shown, TABLE_FILES["activations"]),
        Bullets(tuple(notes)),
    ]
    if len(measured):
        figure = figures.activation_errors(
            analysis.activation_runs,
            table,
            analysis.split,
            f"{paper.short}, not comparable" if analysis.same_data else None,
        )
        images["activation_error.png"] = figures.png(figure)
        blocks.append(
            Image(
                "activation_error.png",
                f"{split.capitalize()} error rate per activation, same model and protocol "
                f"(Table 6): one dot per seed, the mean with its {CONFIDENCE:.0%} Wilson "
                "interval (seeds and test images)"
                + (
                    ", and the paper's figure (other models; its elu value is a loss)."
                    if analysis.same_data
                    else "."
                ),
            )
        )
    return blocks


def _role(analysis: Analysis) -> str:
    """Whether Table 6's comparisons are the study's declared question or a secondary view."""
    primary = "question" in analysis.tables and sentences.table6_is_the_question(analysis)
    if primary:
        return (
            "**Primary**: these comparisons are the study's declared question (each activation "
            "against elu on the error rate), the same tests as the verdict's."
        )
    return (
        "**Secondary**: the study's declared question is another (see the verdict); these "
        "comparisons keep the paper's layout and do not change its answer."
    )
