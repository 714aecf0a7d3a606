"""The study's declared question and the one procedure that answers it. Pure functions of the
included runs; one DataFrame per table.

A study states its question before it runs (`question:` in its YAML, logged on the sweep's
parent run as `question.*` params): what is compared (the configurations, or one knob's values
with the other knobs at the best configuration's), the family of pairwise comparisons (each
against a named reference, all pairs, or each against the best), the metric (an error in
percent on the test split) and alpha. A sweep that declared none gets the default question
(every configuration against the best, on the error rate, at 0.05), and the report says so.

The procedure, and nothing else, gives the verdict:
1. the gate: a seed-blocked permutation F test of any difference among the compared settings,
   over the seeds every setting has (`stats.omnibus`);
2. the declared family of paired comparisons (`tables.pair_row`: exact sign-flip test over
   seeds, t interval), Holm-adjusted over the family;
3. each comparison's grade: "detectable" where the gate rejects and its Holm p is below alpha,
   "weak" where only its own p is below alpha, else "none" (no detectable difference, with the
   interval saying within how much);
4. for the families all_pairs and best, the settings "not beaten": those that no comparison of
   the family shows detectably worse than another;
5. power for that same test: the smallest difference Holm's first step (alpha / family) detects
   with 80% power over these seeds, and the seeds a difference of TARGET_POINTS needs.

"Best" means one thing throughout: the setting of the configuration chosen on validation (the
sweep's objective averaged over seeds), never the lowest test error.

What each comparison covers depends on the backbones the seeds ran on (see `backbones`): one
backbone for every seed answers "on this backbone"; a random backbone per seed answers "on
another random backbone" (the draw x setting interaction is part of the per-seed differences);
D random draws shared by several seeds each answer "on these D backbones" only, and for another
backbone the error term is the draw x setting interaction (`backbones.draw_interaction`), which
the report estimates and uses in a secondary test on the draws' means.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.objective import Objective
from study.report import backbones, stats, tables
from study.report.selection import value_order
from study.schema.search import Question
from study.tracking.outcome import column, param

TARGET_POINTS = 0.5  # percentage points the power table asks about
GRADES = ("detectable", "weak", "none")
QUESTION_COLUMNS = [
    *("compare", "family", "reference", "metric", "alpha", "declared", "best", "settings"),
    *("seeds", "split", "metric_column", "answers", "backbones", "weights_source"),
]
OMNIBUS_COLUMNS = [
    *("role", "quantity", "settings", "seeds", "f_statistic", "df_settings", "df_residual"),
    *("p_permutation", "permutation_exact", "rejects"),
]
FAMILY_COLUMNS = [
    *("setting", "against"),
    *tables.COMPARISON_COLUMNS,
    *("grade", "answers", "backbones"),
    *("draw_difference_ci_low", "draw_difference_ci_high", "draw_p_value"),
]
NOT_BEATEN_COLUMNS = ["setting", "pairs", "metric_mean", "not_beaten", "beaten_by", "p_holm"]
POWER_COLUMNS = [
    *("comparisons", "pairs", "difference_std", "alpha", "test_alpha", "power"),
    *("minimum_detectable_pct", "smallest_p", "target_pct", "seeds_for_target"),
]


@dataclass(frozen=True)
class Compared:
    """The settings the question compares, each with its runs, and the best one."""

    question: Question
    declared: bool
    settings: dict[str, pd.DataFrame]  # label -> runs, in a stable order
    best: str  # the label of the setting of the configuration chosen on validation
    split: str

    @property
    def knob(self) -> str | None:
        return None if self.question.compare == "configurations" else self.question.compare

    def label(self, setting: str) -> str:
        """`activation=tanh` for a knob's value, the configuration's own label otherwise."""
        return setting if self.knob is None else f"{self.knob}={setting}"


def declared_question(runs: pd.DataFrame, parent_run_id: str | None) -> tuple[Question, bool]:
    """The question the sweep's parent run logged (`question.*` params), and whether it
    declared one; the default question otherwise."""
    if parent_run_id is None:
        return Question(), False
    parent = runs[runs["run_id"] == parent_run_id]
    logged = {
        name.removeprefix("params.question."): parent[name].iloc[0]
        for name in parent.columns
        if name.startswith("params.question.") and parent[name].notna().any()
    }
    if not logged:
        return Question(), False
    if logged.get("reference") in ("None", ""):
        logged["reference"] = None
    return Question.model_validate(logged), True


def _setting_order(value: str) -> tuple:
    """The paper's activations in its order (Table 6's), any other value after them."""
    known = value in tables.ACTIVATIONS
    return (not known, tables.ACTIVATIONS.index(value) if known else 0, value_order(value))


def compared_settings(
    included: pd.DataFrame,
    question: Question,
    declared: bool,
    swept: list[str],
    best_run: pd.Series,
    split: str,
    ranking: list[str],
) -> Compared:
    """The runs of each setting the question compares: every configuration (in the order of
    `ranking`, best first), or the values of the question's knob among the runs that match the
    best configuration in every other swept setting."""
    if question.compare == "configurations" or question.compare not in swept:
        groups = dict(tuple(included.groupby("configuration", sort=False)))
        ranked = {label: groups[label] for label in ranking if label in groups}
        return Compared(question, declared, ranked, best_run["configuration"], split)
    runs = tables.comparable(included, swept, best_run, vary=question.compare)
    values = param(runs, question.compare).astype(str)
    order = sorted(values.unique(), key=_setting_order)
    if question.reference in order:  # the reference first, as in the paper's Table 6
        order.remove(question.reference)
        order.insert(0, question.reference)
    groups = {value: runs[values == value] for value in order}
    return Compared(question, declared, groups, str(best_run[f"params.{question.compare}"]), split)


def answer(
    compared: Compared,
    objective: str,
    outcomes: tables.Outcomes | None,
) -> dict[str, pd.DataFrame]:
    """Every table of the procedure: `question` (what was asked and what the comparisons cover),
    `omnibus` (the gate on the metric, then the objective as a secondary row), `family` (the
    declared comparisons, graded), `not_beaten` (families all_pairs and best), `power` and
    `backbone` (the draws' share and the draw x setting interaction)."""
    question = compared.question
    metric = tables.metric_column(compared.split, question.metric)
    every = pd.concat(compared.settings.values()) if compared.settings else pd.DataFrame()
    values = _seed_table(
        compared, lambda runs: tables.metric_pct(runs, compared.split, question.metric)
    )
    gate = stats.omnibus(values.dropna(axis=0, how="any").to_numpy())
    scope = backbones.backbone_scope(every)
    family = _family(compared, outcomes, gate, scope)
    found = {
        "question": _question_row(compared, values, metric, scope),
        "omnibus": _omnibus_rows(compared, values, gate, objective),
        "family": family,
        "paired": paired_differences(compared),
        "backbone": backbones.backbone_rows(every, values, scope),
    }
    if question.family in ("all_pairs", "best"):
        found["not_beaten"] = not_beaten(compared, values, family)
    detectable = power(family, question.alpha)
    if not detectable.empty:
        found["power"] = detectable
    return found


def _seed_table(compared: Compared, value) -> pd.DataFrame:
    """(seed x setting) table of `value(runs)` per run, settings in the compared order."""
    frames = [
        pd.DataFrame({"seed": runs["seed"], "setting": label, "value": value(runs)})
        for label, runs in compared.settings.items()
    ]
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames).pivot_table(index="seed", columns="setting", values="value")
    return table.reindex(columns=list(compared.settings)).sort_index()


def _question_row(
    compared: Compared, values: pd.DataFrame, metric: str, scope: backbones.BackboneScope
) -> pd.DataFrame:
    question = compared.question
    row = {
        "compare": question.compare,
        "family": question.family,
        "reference": question.reference,
        "metric": question.metric,
        "alpha": question.alpha,
        "declared": compared.declared,
        "best": compared.best,
        "settings": len(compared.settings),
        "seeds": len(values.index),
        "split": compared.split,
        "metric_column": metric,
        "answers": scope.answers,
        "backbones": scope.count,
        "weights_source": scope.source,
    }
    return pd.DataFrame([row], columns=QUESTION_COLUMNS)


def _omnibus_rows(
    compared: Compared, values: pd.DataFrame, gate: stats.Omnibus, objective: str
) -> pd.DataFrame:
    """The gate on the question's metric (primary), then the same test on the objective that
    chose the best (secondary: it is not the question)."""
    objective_values = _seed_table(compared, lambda runs: tables.metric(runs, objective))
    secondary = stats.omnibus(objective_values.dropna(axis=0, how="any").to_numpy())
    rows = []
    for role, quantity, found in (
        ("primary", tables.metric_column(compared.split, compared.question.metric), gate),
        ("secondary", objective, secondary),
    ):
        rows.append(
            {
                "role": role,
                "quantity": quantity,
                "settings": found.settings,
                "seeds": found.seeds,
                "f_statistic": found.f_statistic,
                "df_settings": found.df_settings,
                "df_residual": found.df_residual,
                "p_permutation": found.p_value,
                "permutation_exact": found.exact,
                "rejects": bool(found.p_value < compared.question.alpha),
            }
        )
    return pd.DataFrame(rows, columns=OMNIBUS_COLUMNS)


def family_pairs(compared: Compared) -> list[tuple[str, str]]:
    """The declared family as (setting, against) pairs: the difference is setting - against."""
    labels = list(compared.settings)
    question = compared.question
    if question.family == "all_pairs":
        return list(itertools.combinations(labels, 2))
    against = question.reference if question.family == "reference" else compared.best
    return [(label, against) for label in labels if label != against]


def _family(
    compared: Compared,
    outcomes: tables.Outcomes | None,
    gate: stats.Omnibus,
    scope: backbones.BackboneScope,
) -> pd.DataFrame:
    question = compared.question
    empty = pd.DataFrame().iloc[:0]
    rows = []
    for setting, against in family_pairs(compared):
        runs = compared.settings.get(setting, empty)
        reference = compared.settings.get(against, empty)
        row = {"setting": setting, "against": against}
        row |= tables.pair_row(runs, reference, compared.split, outcomes, question.metric)
        row |= _draw_level(runs, reference, compared, scope)
        rows.append(row)
    table = pd.DataFrame(rows, columns=FAMILY_COLUMNS)
    table["p_holm"] = stats.holm(table["p_permutation"].to_numpy(dtype=float))
    table["family"] = len(table)
    gate_rejects = bool(gate.p_value < question.alpha)
    table["grade"] = [
        "detectable"
        if gate_rejects and holm < question.alpha
        else "weak"
        if p < question.alpha
        else "none"
        for holm, p in zip(table["p_holm"], table["p_permutation"], strict=True)
    ]
    table["answers"] = scope.answers
    table["backbones"] = scope.count
    return table


def _draw_level(
    runs: pd.DataFrame, reference: pd.DataFrame, compared: Compared, scope: backbones.BackboneScope
) -> dict[str, float]:
    """With D random draws shared by several seeds each, the comparison on another random
    backbone: the per-seed differences averaged within each draw, a t interval over the D
    draws' means (df D - 1) and the exact sign-flip p over them. Empty otherwise (with one
    draw per seed the seed-level test already is that test)."""
    nothing = dict.fromkeys(("draw_difference_ci_low", "draw_difference_ci_high"), math.nan)
    nothing["draw_p_value"] = math.nan
    if not scope.shared_draws:
        return nothing
    differences = _differences(runs, reference, compared)
    if differences.empty:
        return nothing
    means = differences.groupby(scope.draws.loc[differences.index]).mean()
    test = stats.paired_comparison(means.to_numpy(), np.zeros(len(means)))
    return {
        "draw_difference_ci_low": test.ci_low,
        "draw_difference_ci_high": test.ci_high,
        "draw_p_value": test.p_value,
    }


def _differences(runs: pd.DataFrame, reference: pd.DataFrame, compared: Compared) -> pd.Series:
    """Per-seed differences runs - reference on the question's metric (`tables.pair_by_seed`,
    as the family's tests pair them), indexed by the index of each seed's run in `runs`."""
    pairs = tables.pair_by_seed(runs, reference, compared.split, compared.question.metric)
    return pairs["difference_pct"]


def paired_differences(compared: Compared) -> pd.DataFrame:
    """Every comparison of the family seed by seed: setting, against, seed, backbone and the
    difference setting - against in points (what the family's tests and the verdict figure
    use)."""
    empty = pd.DataFrame().iloc[:0]
    frames = []
    for setting, against in family_pairs(compared):
        runs = compared.settings.get(setting, empty)
        differences = _differences(runs, compared.settings.get(against, empty), compared)
        frames.append(
            pd.DataFrame(
                {
                    "setting": setting,
                    "against": against,
                    "seed": runs.loc[differences.index, "seed"].to_numpy(),
                    "weights": column(runs, "tags.weights").loc[differences.index].to_numpy(),
                    "difference_pct": differences.to_numpy(),
                }
            )
        )
    columns = ["setting", "against", "seed", "weights", "difference_pct"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def not_beaten(compared: Compared, values: pd.DataFrame, family: pd.DataFrame) -> pd.DataFrame:
    """Each setting, lowest mean first, and whether any comparison of the declared family shows
    it detectably worse than another (`grade` detectable, difference above 0 for the setting,
    below 0 for the one it is compared with): those that none does are "not beaten". Derived
    from the family's own tests, so a setting outside the set has a Holm p below alpha there."""
    beaten: dict[str, tuple[str, float]] = {}
    for row in family[family["grade"] == "detectable"].itertuples():
        loser, winner = (
            (row.setting, row.against) if row.difference_pct > 0 else (row.against, row.setting)
        )
        if loser not in beaten or row.p_holm < beaten[loser][1]:
            beaten[loser] = (winner, row.p_holm)
    means = values.mean().sort_values(kind="stable")
    rows = [
        {
            "setting": label,
            "pairs": int(values[label].notna().sum()),
            "metric_mean": mean,
            "not_beaten": label not in beaten,
            "beaten_by": beaten.get(label, ("", math.nan))[0],
            "p_holm": beaten.get(label, ("", math.nan))[1],
        }
        for label, mean in means.items()
    ]
    return pd.DataFrame(rows, columns=NOT_BEATEN_COLUMNS)


def power(family: pd.DataFrame, alpha: float, target: float = TARGET_POINTS) -> pd.DataFrame:
    """For the test the report uses: Holm's first step over the family (alpha / family), the
    paired test over the typical number of seeds with the root mean square of the comparisons'
    per-seed difference stds: the smallest difference it detects with 80% power and the seeds a
    difference of `target` points needs. Empty when no comparison has a spread."""
    usable = family[(family["pairs"] >= 2) & (family["difference_std"] > 0)]
    if usable.empty:
        return pd.DataFrame(columns=POWER_COLUMNS)
    std = float(np.sqrt((usable["difference_std"] ** 2).mean()))
    pairs = int(usable["pairs"].median())
    level = alpha / max(len(family), 1)
    row = {
        "comparisons": len(family),
        "pairs": pairs,
        "difference_std": std,
        "alpha": alpha,
        "test_alpha": level,
        "power": stats.POWER,
        "minimum_detectable_pct": stats.minimum_detectable_difference(std, pairs, level),
        "smallest_p": stats.smallest_p_value(pairs),
        "target_pct": target,
        "seeds_for_target": stats.seeds_needed(target, std, level),
    }
    return pd.DataFrame([row], columns=POWER_COLUMNS)


def champion_ties(included: pd.DataFrame, ranking: pd.DataFrame, objective: str) -> pd.DataFrame:
    """The best configuration's lead on the objective over each other one, paired by seed: the
    mean per-seed lead (in the objective's better direction), its standard error, and whether
    the lead is within one standard error ("tied within noise")."""
    columns = ["configuration", "rank", "pairs", "lead", "lead_se", "tied"]
    if len(ranking) < 2:
        return pd.DataFrame(columns=columns)
    sign = Objective.named(objective).sign
    scores = tables.metric(included, objective)
    by_seed = pd.DataFrame(
        {"seed": included["seed"], "configuration": included["configuration"], "v": scores}
    ).pivot_table(index="seed", columns="configuration", values="v")
    best = by_seed[ranking["configuration"].iloc[0]]
    rows = []
    for row in ranking.iloc[1:].itertuples():
        lead = (sign * (best - by_seed[row.configuration])).dropna()
        se = float(lead.std(ddof=1) / math.sqrt(len(lead))) if len(lead) > 1 else math.nan
        mean = float(lead.mean()) if len(lead) else math.nan
        rows.append([row.configuration, row.rank, len(lead), mean, se, bool(mean <= se)])
    return pd.DataFrame(rows, columns=columns)
