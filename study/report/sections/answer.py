"""The question and its answer: what the study declared it would compare, the one procedure run on
it (the gate, the declared family, Holm), the settings not beaten, the power of that test, and
which backbones the answer covers.
"""

from __future__ import annotations

import math

import pandas as pd

from study.report import balance
from study.report.analysis import TABLE_FILES, Analysis
from study.report.render import Block, Heading, Paragraph, Table
from study.report.sections import sentences
from study.report.sections.text import (
    DASH,
    SHOWN_CONFIGURATIONS,
    difference,
    names,
    new_images,
    p_value,
)

GRADE_WORDS = {"detectable": "detectable", "weak": "weak evidence", "none": "none detected"}


def section(analysis: Analysis) -> list[Block]:
    if "family" not in analysis.tables or analysis.tables["family"].empty:
        return []
    asked = analysis.tables["question"].iloc[0]
    family = analysis.tables["family"]
    what = sentences.settings_name(asked)
    blocks: list[Block] = [
        Heading(2, "The question and its answer"),
        Paragraph(_declaration(asked, len(family)) + _imbalance(analysis, asked)),
        Table(_gate_table(analysis.tables["omnibus"], what), TABLE_FILES["omnibus"]),
        Table(_family_table(family), TABLE_FILES["family"]),
        Paragraph(
            f"Differences are {sentences.metric_name(asked)} of the first minus the second, in "
            "percentage points, paired by seed. The interval over seeds covers new seeds on "
            f"{sentences.backbones_covered(asked, each=True)} and this test split; the 'new "
            "test images too' interval also lets the test images vary (seeds x images, "
            "Satterthwaite; never narrower than the first). Each seed's difference: "
            f"`{TABLE_FILES['paired']}`; every run's metrics: `{TABLE_FILES['runs']}`."
            + (
                f" {len(family) - SHOWN_CONFIGURATIONS} more comparisons are in the CSV."
                if len(family) > SHOWN_CONFIGURATIONS
                else ""
            )
        ),
    ]
    if "not_beaten" in analysis.tables:
        found = analysis.tables["not_beaten"]
        kept = found[found["not_beaten"]]
        rule = (
            "no comparison of the family shows them detectably worse; every other one is shown "
            f"worse than the one it is compared with, at Holm p < {float(asked['alpha']):g}"
        )
        listed = (
            f"all {len(found)} {what}"
            if len(kept) == len(found)
            else f"{len(kept)} of {len(found)} {what} ({names(kept['setting'])})"
        )
        blocks.append(Paragraph(f"Not beaten: {listed}: {rule} (`{TABLE_FILES['not_beaten']}`)."))
    detectable = sentences.power(analysis)
    if detectable:
        blocks.append(Paragraph(detectable + f" (`{TABLE_FILES['power']}`)"))
    blocks.append(Paragraph(_backbones(analysis)))
    return blocks


def _declaration(asked: pd.Series, comparisons: int) -> str:
    compared = (
        "every configuration the sweep ran"
        if asked["compare"] == "configurations"
        else f"the values of {asked['compare']}, the other knobs at the best configuration's"
    )
    family = {
        "reference": f"each against {asked['reference']}",
        "all_pairs": "every pair",
        "best": f"each against the best ({asked['best']}: chosen on validation, never on test)",
    }[asked["family"]]
    origin = (
        "Declared by the study before any run (`question:` in its YAML, logged on the sweep's "
        "parent run)"
        if asked["declared"]
        else "The sweep declared no question (`question:`), so the default is answered"
    )
    return (
        f"{origin}: {compared}, {family}, on the {sentences.metric_name(asked)}, at "
        f"alpha {float(asked['alpha']):g}. One procedure answers it: a seed-blocked "
        f"permutation test of any difference among the {int(asked['settings'])} "
        f"{sentences.settings_name(asked)} (the gate; the objective's row below is secondary), "
        f"then the family's {comparisons} paired comparisons, each an exact sign-flip test over "
        "seeds, Holm-adjusted together. A comparison is 'detectable' when the gate rejects and "
        "its Holm p is below alpha, 'weak evidence' when only its own p is, else no difference "
        "is detected. Every other test in this report is secondary and says so."
    )


def _imbalance(analysis: Analysis, asked: pd.Series) -> str:
    """A warning when the classes are imbalanced and the declared metric is the error rate."""
    ratio = balance.imbalance(analysis.best_runs)
    if asked["metric"] != "error_rate" or not ratio > balance.IMBALANCED:
        return ""
    return (
        f" **The classes are imbalanced {ratio:.1f} : 1 and the declared metric is the error "
        "rate**, which the largest class dominates: a study that cares for every class "
        "declares `question.metric: balanced_error_rate` (or macro_f1) before it runs."
    )


def _gate_table(omnibus: pd.DataFrame, what: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Role": [
                "the gate" if role == "primary" else "secondary (not the question)"
                for role in omnibus["role"]
            ],
            "Quantity": omnibus["quantity"],
            f"{what.capitalize()} x seeds": [
                f"{row.settings} x {row.seeds}" for row in omnibus.itertuples()
            ],
            "F (df)": [
                DASH
                if math.isnan(row.f_statistic)
                else f"{row.f_statistic:.3g} ({row.df_settings}, {row.df_residual})"
                for row in omnibus.itertuples()
            ],
            "Permutation p": [
                DASH if math.isnan(p) else p_value(p) for p in omnibus["p_permutation"]
            ],
        }
    )


def _family_table(family: pd.DataFrame) -> pd.DataFrame:
    shown = family.head(SHOWN_CONFIGURATIONS)
    return pd.DataFrame(
        {
            "Comparison": [f"{row.setting} − {row.against}" for row in shown.itertuples()],
            "Pairs": shown["pairs"],
            "Difference (points, 95% CI over seeds)": [difference(r) for r in shown.itertuples()],
            "95% CI, new test images too": [new_images(r) for r in shown.itertuples()],
            "p / Holm": [
                DASH
                if math.isnan(row.p_permutation)
                else f"{p_value(row.p_permutation)} / {p_value(row.p_holm)}"
                for row in shown.itertuples()
            ],
            "Answer": [GRADE_WORDS[grade] for grade in shown["grade"]],
        }
    )


def _backbones(analysis: Analysis) -> str:
    """Which backbones the seeds ran on, the draws' share of the variance and the draw x
    setting interaction, each with its interval."""
    asked = analysis.tables["question"].iloc[0]
    rows = analysis.tables["backbone"].set_index("effect")
    main, interaction = rows.loc["backbone draw"], rows.loc["backbone draw x setting"]
    text = f"Backbones: {sentences.scope(asked)}"
    if math.isfinite(main["share"]):
        text += (
            f" The draw accounts for {main['share']:.0%} (95% interval "
            f"{main['share_low']:.0%} to {main['share_high']:.0%}) of the variance of a seed's "
            f"mean over the {sentences.settings_name(asked)} (one-way random-effects ANOVA, "
            f"{int(main['seeds'])} seeds nested in {int(main['backbones'])} draws: F = "
            f"{main['f_statistic']:.3g}, p {p_value(main['p_value'], True)})."
        )
    if math.isfinite(interaction["share"]):
        text += (
            f" The draw x setting interaction (how much the differences change from backbone "
            f"to backbone, the error term for another backbone) is {interaction['share']:.0%} "
            f"(95% interval {interaction['share_low']:.0%} to {interaction['share_high']:.0%}) "
            "of the variance of the differences left after the seeds (F = "
            f"{interaction['f_statistic']:.3g} on {int(interaction['df_effect'])} and "
            f"{int(interaction['df_residual'])} df, p {p_value(interaction['p_value'], True)}); "
            "the comparisons' draw-level tests (secondary) are in "
            f"`{TABLE_FILES['family']}` (`draw_*`)."
        )
    elif interaction["note"]:
        text += f" Draw x setting interaction: {interaction['note']}."
    return text + f" (`{TABLE_FILES['backbone']}`)"
