"""The report's text: how the numbers were obtained, each table beside the paper's, and what is
missing said in words. An `Analysis` (and the best run's curves and confusion matrix) in;
blocks, the CSV tables and the PNG figures out. Nothing here reads the store or the clock.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

import study
from study.report import balance, figures, importance, stats, tables
from study.report.analysis import TABLE_FILES, Analysis
from study.report.paper import Paper
from study.report.render import Block, Bullets, Heading, Image, Paragraph, Table
from study.report.stats import CONFIDENCE
from study.tracking.outcome import ONE_CONFIGURATION, column, param

SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
PHASES = {
    "frozen": "phase 1 (backbone frozen, head trained)",
    "fine_tune": "phase 2 (fine-tuning: everything trained)",
}
SHOWN_CONFIGURATIONS = 10
DASH = "–"


@dataclass(frozen=True)
class BestRunDetails:
    """What the report shows of the best run beyond its metrics."""

    histories: dict[str, dict[str, list[float]]]  # stage -> curve (loss, val_loss, ...) -> epochs
    confusion: pd.DataFrame | None  # confusion_matrix.csv added up over the best runs' seeds
    pooled_runs: int  # how many runs' confusion matrices were added up


@dataclass(frozen=True)
class Report:
    blocks: list[Block]
    csv: dict[str, pd.DataFrame]  # file name -> table
    figures: dict[str, bytes]  # file name -> PNG


def compose(analysis: Analysis, details: BestRunDetails, paper: Paper) -> Report:
    images: dict[str, bytes] = {}
    blocks: list[Block] = [
        Heading(1, f"Report: {analysis.experiment}"),
        Paragraph(
            f"The tables of {paper.short} rebuilt from the runs of MLflow experiment "
            f"`{analysis.experiment}`, beside the paper's figures. Made by study "
            f"{study.__version__} (`study report`)."
        ),
    ]
    if analysis.best is None:
        blocks += _provenance(analysis)
        blocks += [
            Heading(2, "Results"),
            Paragraph(
                "**No finished runs**: there is nothing to tabulate. The tables need at least "
                "one FINISHED trial or train run in scope; every run in scope is counted above "
                "and listed in `runs.csv`."
            ),
        ]
    else:
        blocks += _verdict(analysis, paper, images)
        blocks += _summary(analysis, paper)
        blocks += _provenance(analysis)
        blocks += balance.section(analysis.best_runs, analysis.split)
        blocks += _configurations(analysis)
        blocks += _any_difference(analysis)
        blocks += _hyperparameters(analysis)
        for stage in tables.STAGES:
            blocks += _scores(analysis, stage, paper, details, images)
        blocks += _inference(analysis, paper)
        blocks += _activations(analysis, paper)
        blocks += _knobs(analysis, images)
        blocks += _importance(analysis, images)
        blocks += _best_run(analysis, details, images)
    blocks += [
        Heading(2, "Reference"),
        Paragraph(paper.citation),
        Paragraph(
            f"{paper.data_note} The paper's figures used here are kept, with this citation, in "
            "`study/report/paper.yaml`."
        ),
    ]
    csv = {TABLE_FILES[name]: table for name, table in analysis.tables.items()}
    return Report(blocks, csv, images)


def _verdict(analysis: Analysis, paper: Paper, images: dict) -> list[Block]:
    """The report's answer in one sentence, and the error per activation, before any table."""
    blocks: list[Block] = [Heading(2, "Verdict"), Paragraph(_verdict_sentence(analysis))]
    table = analysis.tables["activations"]
    if (table["n"] > 0).any():
        split = SPLIT_NAMES[analysis.split]
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
                f"(Table 6): one dot per seed, the mean with its {CONFIDENCE:.0%} Wilson interval"
                + (
                    ", and the paper's figure (other models; its elu value is a loss)."
                    if analysis.same_data
                    else "."
                ),
            )
        )
    return blocks


def _verdict_sentence(analysis: Analysis) -> str:
    """Whether any configuration differs on the reported split's error rate, and which ones
    cannot be told from the best: "no configuration differs detectably" when the omnibus test
    does not reject (or cannot be run)."""
    split = SPLIT_NAMES[analysis.split]
    ranking = analysis.tables["configurations"]
    if len(ranking) < 2:
        best = ranking.iloc[0]
        return (
            f"One configuration, nothing to compare: {split} error rate "
            f"{_mean_std(100 * best['error_rate_mean'], 100 * best['error_rate_std'], 2)} % "
            f"over {best['n']} seed(s)."
        )
    test = analysis.tables["omnibus"].iloc[0]
    candidates = analysis.tables["best_set"]
    kept = candidates[candidates["in_best_set"]]
    if len(kept) == len(candidates):
        indistinguishable = (
            f"all {len(candidates)} configurations are indistinguishable from the best"
        )
        if candidates["p_shown_worse"].isna().all():
            pairs = int(candidates["pairs"].min())
            indistinguishable += (
                f" (with {pairs} shared seeds no pairwise test can reach "
                f"{stats.ALPHA:g} / {len(candidates) - 1}, whatever the differences)"
            )
    else:
        indistinguishable = (
            f"indistinguishable from the best: {len(kept)} of {len(candidates)} "
            f"({_names(kept['configuration'])})"
        )
    evidence = _omnibus_text(test)
    if not test["rejects"]:
        return (
            f"**No configuration differs detectably** in {split} error rate ({evidence}); "
            f"{indistinguishable}."
        )
    return f"**The configurations differ** in {split} error rate ({evidence}); {indistinguishable}."


def _names(names) -> str:
    """The first SHOWN_CONFIGURATIONS names, and how many more there are."""
    names = [str(name) for name in names]
    more = len(names) - SHOWN_CONFIGURATIONS
    return "; ".join(names[:SHOWN_CONFIGURATIONS]) + (f"; and {more} more" if more > 0 else "")


def _omnibus_text(row: pd.Series) -> str:
    if math.isnan(row["p_permutation"]):
        return (
            f"no test: {row['settings']} configurations share {row['seeds']} seed(s) with any "
            "variation between them"
        )
    kind = "exact" if row["permutation_exact"] else f"{stats.PERMUTATIONS} permutations"
    return (
        f"seed-blocked permutation F = {row['f_statistic']:.3g}, p {_p(row['p_permutation'], True)}"
        f" ({kind}), {row['settings']} configurations over the {row['seeds']} seeds they share"
    )


def _champion(analysis: Analysis) -> str:
    """The registered best configuration, why it was picked, and how it did."""
    best = analysis.tables["configurations"].iloc[0]
    objective = _objective_name(analysis.objective)
    split = SPLIT_NAMES[analysis.split]
    score = _objective_cell(analysis.objective, best["objective_mean"], math.nan)
    text = (
        f"Champion (registered): **{best['configuration']}**, picked for the best mean "
        f"{objective} over seeds ({score}{'' if _raw(analysis.objective) else ' %'}); "
        f"{split} error rate "
        f"{_mean_std(100 * best['error_rate_mean'], 100 * best['error_rate_std'], 2)} % "
        f"({CONFIDENCE:.0%} Wilson interval "
        f"{_interval(100 * best['error_rate_ci_low'], 100 * best['error_rate_ci_high'])}, "
        f"n = {best['n']} seeds)."
    )
    omnibus = analysis.tables["omnibus"]
    on_objective = omnibus[omnibus["quantity"] == analysis.objective]
    if len(analysis.tables["configurations"]) > 1 and len(on_objective):
        row = on_objective.iloc[0]
        verdict = "differ" if row["rejects"] else "do not differ detectably"
        text += f" On {objective} itself the configurations {verdict} ({_omnibus_text(row)})."
    return text


def _power(analysis: Analysis) -> str | None:
    """The smallest difference the study could detect, and the seeds 0.5 points would need."""
    if "power" not in analysis.tables:
        return None
    row = analysis.tables["power"].iloc[0]
    pairs = int(row["pairs"])
    if math.isinf(row["minimum_detectable_pct"]):
        detectable = (
            f"with {pairs} seeds no difference is detectable: the exact sign-flip test's "
            f"smallest p-value is {row['smallest_p']:.3f}, above {stats.ALPHA:g}"
        )
    else:
        detectable = (
            f"the smallest difference in error rate these {pairs} seeds detect with "
            f"{row['power']:.0%} power is {row['minimum_detectable_pct']:.2f} points"
        )
    return (
        f"Power: {detectable} (paired two-sided test at {stats.ALPHA:g}, from the std of the "
        f"per-seed differences with the champion, {row['difference_std']:.2f} points); "
        f"{row['target_pct']:g} points would need {int(row['seeds_for_target'])} seeds."
    )


def _summary(analysis: Analysis, paper: Paper) -> list[Block]:
    split = SPLIT_NAMES[analysis.split]
    runs = analysis.selection.runs
    items = [_verdict_sentence(analysis), _champion(analysis)]
    detectable = _power(analysis)
    if detectable:
        items.append(detectable)
    items += [_backbone(analysis), _split_design(analysis)]
    if "fine_tune" in analysis.tables:
        items.append(f"Fine-tuning: {_phase(analysis, 'fine_tune')}.")
    activations = analysis.tables["activations"]
    measured = activations[activations["n"] > 0]
    if len(measured) > 1:
        parts = [
            f"{row.activation} {_mean_std(row.error_pct_mean, row.error_pct_std, 2)} %"
            + (
                ""
                if math.isnan(row.p_permutation)
                else f" (vs elu {_signed(row.difference_pct)} points, permutation p "
                f"{_p(row.p_permutation, equals=True)}, Holm {_p(row.p_holm, equals=True)})"
            )
            for row in measured.itertuples()
        ]
        items.append(f"Table 6, {split} error rate by activation, same model: {'; '.join(parts)}.")
    items += balance.summary(analysis.best_runs, analysis.split)
    counts = _exclusions(analysis)
    items.append(f"{len(runs)} runs included; excluded: {counts}.")
    if not analysis.same_data:
        items.append(_not_neu(paper))
    return [Heading(2, "Summary"), Bullets(tuple(items))]


def _backbone(analysis: Analysis) -> str:
    """Which backbones the seeds ran on and, for random backbone draws, how much of the
    run-to-run variance the draw accounts for (`verdicts.backbone_variance`)."""
    row = analysis.tables["backbone"].iloc[0]
    listing = _listing(column(analysis.selection.runs, "tags.weights"))
    if row["weights_source"] != "none":
        return f"Backbone weights: {listing}."
    if row["backbones"] == 1:
        return (
            f"Backbone: one random backbone ({listing}) for every seed: every conclusion here "
            "is conditional on it, and how much of the run-to-run variance the backbone draw "
            "accounts for is not estimable from these runs."
        )
    design = f"Backbone: {row['backbones']} random backbone draws crossed with the seeds"
    design += f" ({listing})"
    quantity = f"{SPLIT_NAMES[analysis.split]} error rate"
    if not row["nested"]:
        return f"{design}; some seed ran on two of them, so the draw's share is not estimated."
    if math.isnan(row["share"]):
        return (
            f"{design}. The draw's share of the run-to-run variance is not estimable from the "
            f"{row['seeds']} seeds every configuration has: it needs some draw with two seeds "
            "or more that differ (at least twice as many seeds as model.backbone_draws)."
        )
    return (
        f"{design}. The draw accounts for {row['share']:.0%} of the run-to-run variance of a "
        f"seed's mean {quantity} over the configurations (one-way random-effects ANOVA, "
        f"{row['seeds']} seeds nested in the draws: F = {row['f_statistic']:.3g}, p "
        f"{_p(row['p_value'], True)}; between draws {row['between_variance']:.3g}, within "
        f"{row['within_variance']:.3g} points²)."
    )


def _split_design(analysis: Analysis) -> str:
    """How the runs split their data, and what that means for the test split."""
    runs = analysis.selection.runs
    if analysis.split != "test":
        return (
            "Split design: no test split; the validation split chose the configuration and the "
            "early-stopping epoch, so its scores are optimistic."
        )
    folds = param(runs, "data.split.folds").dropna()
    folds = folds[folds != "None"]
    test_seeds = _listing(param(runs, "data.split.test_seed"))
    drawn = (
        f"stratified {_listing(folds)}-fold cross-validation over the other images (seed s "
        "validates on fold s mod k)"
        if len(folds)
        else "a stratified train/validation split of the other images re-drawn by each seed"
    )
    return (
        f"Split design: one test split drawn once (test seed {test_seeds}), the same for every "
        f"seed; {drawn}. No seed trains or selects on a test image: the test split took no part "
        "in choosing anything."
    )


def _provenance(analysis: Analysis) -> list[Block]:
    selection, runs = analysis.selection, analysis.selection.runs
    seeds = sorted(runs["seed"].dropna().unique())
    per_configuration = runs.groupby("configuration").size()
    items = [
        f"Runs: {selection.scope}. Included: {len(runs)} FINISHED runs, "
        f"{runs['configuration'].nunique()} configuration(s), the latest run of each "
        f"configuration and seed. Excluded and counted: {_exclusions(analysis)}. Every run and "
        "why it was left out: `runs.csv`.",
    ]
    if selection.outside:
        items.append(
            f"{selection.outside} other trial or train runs of the experiment lie outside this "
            "scope and are not included."
        )
    if len(runs):
        machines = column(runs, "tags.machine")
        trained_on = _listing(machines) if machines.notna().any() else "not recorded by the runs"
        timed_on = (
            _listing(column(analysis.bench, "tags.machine"))
            if len(analysis.bench)
            else "not measured (no `study bench` run)"
        )
        items.append(
            f"Seeds: {', '.join(str(s) for s in seeds)}; runs per configuration: "
            f"{_range_text(per_configuration)}. Each seed re-draws train and validation, "
            "initialises the head and orders the augmented views, so runs that share a seed "
            "share their split."
        )
        if per_configuration.max() < 2:
            items.append(
                "**One seed per configuration: no spread.** Standard deviations, intervals and "
                "paired tests need two seeds or more and are left out (shown as –)."
            )
        items += [
            "Data: fingerprint "
            + _listing(column(runs, "tags.data_fingerprint"), code=True)
            + f"; {_listing(param(runs, 'dataset.images'))} images in classes "
            + _listing(param(runs, "dataset.classes").str.replace(",", ", "))
            + f"; unreadable files skipped: {_listing(column(runs, 'tags.skipped_files'))}.",
            f"Split (images): {_listing(column(runs, 'tags.split'))}.",
            f"Backbone weights: {_listing(column(runs, 'tags.weights'))}.",
            f"Training machine: {trained_on}. Inference timing: {timed_on}.",
            f"Selection: configurations are ranked by their mean "
            f"{_objective_name(analysis.objective)} over seeds; the best is reported on the "
            f"{SPLIT_NAMES[analysis.split]} split.",
            f"Statistics: mean ± sample standard deviation (n − 1) over seeds. {CONFIDENCE:.0%} "
            "intervals of rates (error rate, accuracy, precision, recall, AUC) are Wilson score "
            "intervals, which stay inside [0, 100] and keep a width when every seed agrees; "
            "their sample size is the effective number of independent images the mean rests "
            "on: on the test split, from the variance of the seeds x images table of errors "
            "(Owen's estimate for a crossed design: new seeds and new images), elsewhere at "
            "most one split's images. Wherever a seed variance enters, the quantile is Student "
            "t's at its degrees of freedom (Satterthwaite's for the crossed variance), not 1.96. "
            "Losses get Student t intervals.",
            "Comparisons answer one question: trained again on this data, would A beat B? The "
            "test split is fixed and each seed re-draws everything else, so the per-seed "
            "differences (paired by seed) are independent draws of that retraining. The test "
            "is an exact sign-flip permutation test of their mean (every sign pattern when "
            f"there are at most {stats.PERMUTATIONS} of them, else that many drawn with a fixed "
            "seed); the difference's interval is the t interval of the same differences (df = "
            "pairs − 1); the effect size is Hedges' g_z (d_z with the small-sample correction). "
            "Where per-image outcomes were logged, a second, labelled interval answers '... and "
            "on new test images too', from the crossed variance of the seeds x images table of "
            "differences, the same kind of interval as each arm's. The comparisons of one table "
            "are one fixed family, Holm-adjusted together, a comparison that could not be tested "
            "still counting in its size. Not used: the Nadeau-Bengio correction (for this "
            "question the seed differences need no inflation, and for new images it cannot add "
            "the image variance a single test split leaves out) and McNemar's test on pooled "
            "images (every discordant image depends on the same trained models, so the images "
            "are not independent).",
            "Before a winner: a seed-blocked permutation F test (configurations permuted within "
            "each seed) of any difference among the configurations, and a confidence set for "
            "the best (a configuration leaves it only when another beats it by the one-sided "
            "sign-flip test at 0.05 / (k − 1)). Power: the paired t-test's smallest detectable "
            "difference at 80% power from the spread of the per-seed differences with the "
            "champion.",
            f"Logged by study version {_listing(column(runs, 'tags.study_version'))}.",
        ]
    blocks: list[Block] = [Heading(2, "How the numbers were obtained"), Bullets(tuple(items))]
    left_out = selection.ledger[~selection.ledger["included"]]
    if len(left_out):
        shown = pd.DataFrame(
            {
                "Run": left_out["run_name"].fillna(left_out["run_id"]),
                "Status": left_out["status"],
                "Why excluded": left_out["reason"],
                "Error": left_out["error"].fillna("").map(_first_line),
            }
        )
        blocks += [Paragraph("Runs left out:"), Table(shown)]
    return blocks


def _configurations(analysis: Analysis) -> list[Block]:
    ranking = analysis.tables["configurations"]
    objective = analysis.objective
    split = SPLIT_NAMES[analysis.split]
    shown = pd.DataFrame(
        {
            "Rank": ranking["rank"],
            "Configuration": ranking["configuration"],
            "Seeds": [
                f"{row.seeds} (n = {row.n})"
                + (f"; missing {row.missing_seeds}" if row.missing_seeds else "")
                for row in ranking.itertuples()
            ],
            _objective_name(objective, unit=True): [
                _objective_cell(objective, row.objective_mean, row.objective_std)
                for row in ranking.itertuples()
            ],
            f"{split.capitalize()} error rate (%)": [
                _mean_std(100 * row.error_rate_mean, 100 * row.error_rate_std, 2)
                for row in ranking.itertuples()
            ],
            f"{CONFIDENCE:.0%} Wilson interval (%)": [
                _interval(100 * row.error_rate_ci_low, 100 * row.error_rate_ci_high)
                for row in ranking.itertuples()
            ],
            "Difference from rank 1 (points)": [_difference(row) for row in ranking.itertuples()],
            "Permutation p / Holm": [_p_pair(row) for row in ranking.itertuples()],
        }
    ).head(SHOWN_CONFIGURATIONS)
    more = len(ranking) - len(shown)
    shared = ranking["ranked_on_seeds"].iloc[0]
    return [
        Heading(2, "Best configuration"),
        Paragraph(
            f"Configurations ranked by mean {_objective_name(objective)} over the seeds every "
            f"configuration finished ({shared or 'none shared: each over its own seeds'}; the "
            "objective column shows the mean over all of a configuration's seeds; ties: more "
            f"seeds first); the first is the best configuration found, reported on the {split} "
            "split, which played no part in choosing it. Each other configuration is compared "
            "with it on the error rate, paired by seed (the difference's t interval over seeds; "
            "the sign-flip permutation test, Holm-adjusted over every other configuration; the "
            "interval for new test images too in the CSV)."
            + (f" {more} more configurations are in the CSV." if more > 0 else "")
        ),
        Table(shown, TABLE_FILES["configurations"]),
    ]


def _any_difference(analysis: Analysis) -> list[Block]:
    """The omnibus tests, the confidence set for the best, and the study's power."""
    if len(analysis.tables["configurations"]) < 2:
        return []
    omnibus = analysis.tables["omnibus"]
    shown = pd.DataFrame(
        {
            "Quantity": [_quantity_name(q) for q in omnibus["quantity"]],
            "Configurations x seeds": [
                f"{row.settings} x {row.seeds}" for row in omnibus.itertuples()
            ],
            "F (df)": [
                DASH
                if math.isnan(row.f_statistic)
                else f"{row.f_statistic:.3g} ({row.df_settings}, {row.df_residual})"
                for row in omnibus.itertuples()
            ],
            "Permutation p": [DASH if math.isnan(p) else _p(p) for p in omnibus["p_permutation"]],
        }
    )
    candidates = analysis.tables["best_set"]
    kept = candidates[candidates["in_best_set"]]
    blocks: list[Block] = [
        Heading(2, "Does any configuration differ?"),
        Paragraph(
            "Before naming a winner: the seed-blocked permutation F test of any difference "
            "among the configurations (the F of a two-way configuration + seed ANOVA, its "
            "p-value from permuting the configurations within each seed), over the seeds every "
            "configuration has; on the error rate the report is about, and on the objective "
            "that picked the champion."
        ),
        Table(shown, TABLE_FILES["omnibus"]),
        Paragraph(
            f"Confidence set for the best ({CONFIDENCE:.0%}, on the "
            f"{SPLIT_NAMES[analysis.split]} error rate): {len(kept)} of {len(candidates)} "
            "configurations, those no other configuration beats by the one-sided sign-flip "
            f"test at {stats.ALPHA:g} / (k − 1): "
            + _names(
                [f"{row.configuration} ({row.error_pct_mean:.2f} %)" for row in kept.itertuples()]
            )
            + f" (`{TABLE_FILES['best_set']}`)."
        ),
    ]
    detectable = _power(analysis)
    if detectable:
        blocks.append(Paragraph(detectable + f" (`{TABLE_FILES['power']}`)"))
    return blocks


def _quantity_name(quantity: str) -> str:
    split, _, name = quantity.partition("_")
    unit = " (%)" if name == "error_rate" else ""
    return f"{SPLIT_NAMES[split]} {name.replace('_', ' ')}{unit}"


def _difference(row) -> str:
    value = getattr(row, "difference_pct", math.nan)
    if value is None or math.isnan(value):
        return DASH
    if math.isnan(row.difference_ci_low):
        pairs = int(row.pairs)
        if pairs < 2:
            return f"{value:+.2f} (one shared seed: no test)"
        return f"{value:+.2f} (the same in all {pairs} shared seeds: no interval)"
    return f"{value:+.2f} [{row.difference_ci_low:+.2f}, {row.difference_ci_high:+.2f}]"


def _new_images(row) -> str:
    low = getattr(row, "new_images_ci_low", math.nan)
    if low is None or math.isnan(low):
        return DASH
    return f"[{low:+.2f}, {row.new_images_ci_high:+.2f}]"


def _p_pair(row) -> str:
    p = getattr(row, "p_permutation", math.nan)
    if p is None or math.isnan(p):
        return DASH
    return f"{_p(p)} / {_p(row.p_holm)}"


def _fine_tuning_gain(analysis: Analysis) -> list[Block]:
    gain = analysis.tables.get("fine_tuning_gain")
    if gain is None:
        return []
    shown = pd.DataFrame(
        {
            "Split": [SPLIT_NAMES[split].capitalize() for split in gain["split"]],
            "Seeds": gain["pairs"],
            "Before fine-tuning (%)": [f"{v:.2f}" for v in gain["frozen_mean"]],
            "After fine-tuning (%)": [f"{v:.2f}" for v in gain["fine_tune_mean"]],
            "Seeds higher / level / lower": [
                f"{row.higher} / {row.level} / {row.lower}" for row in gain.itertuples()
            ],
            "Difference (points, 95% CI)": [
                _difference(row) if row.split != "val" else _signed(row.difference_pct)
                for row in gain.itertuples()
            ],
            "Permutation p": [DASH if math.isnan(p) else _p(p) for p in gain["p_permutation"]],
        }
    )
    return [
        Paragraph(
            "Did fine-tuning help? Each run's accuracy after fine-tuning against its own frozen "
            "phase, mean over the best configuration's seeds. The test row is one comparison "
            "(no multiplicity correction): the sign-flip permutation test of the per-seed "
            "differences and their t interval, as under Comparisons above. Validation chose both "
            "phases' stopping epochs (and whether the fine-tuned model is kept), so its row "
            "counts seeds and is not tested."
        ),
        Table(shown, TABLE_FILES["fine_tuning_gain"]),
    ]


def _hyperparameters(analysis: Analysis) -> list[Block]:
    table = analysis.tables["hyperparameters"]
    shown = pd.DataFrame(
        {
            "Hyperparameter": table["hyperparameter"],
            "Paper: before fine-tuning": table["paper_before"],
            "Paper: after fine-tuning": table["paper_after"],
            "Paper: source": table["paper_source"],
            "Ours: before fine-tuning": table["ours_before"],
            "Ours: after fine-tuning": table["ours_after"],
        }
    )
    return [
        Heading(2, "Table 2: hyperparameters"),
        Paragraph(
            "The paper's Table 2 (and the protocol facts its text gives) beside the values our "
            f"{len(analysis.selection.runs)} included runs used, from their logged params; "
            "`varies` lists every value the sweep tried."
        ),
        Table(shown, TABLE_FILES["hyperparameters"]),
    ]


def _phase(analysis: Analysis, stage: str) -> str:
    """The phase as its runs trained it: fine-tuning from a cut names the cut."""
    cut = param(analysis.best_runs, "fine_tune.trainable.from").dropna()
    if stage != "fine_tune" or cut.empty:
        return PHASES[stage]
    frozen = set(param(analysis.best_runs, "fine_tune.batch_norm").dropna()) == {"frozen"}
    return (
        f"phase 2 (fine-tuning: the cells from {cut.iloc[0]} up and the head trained on cached "
        f"activations of the cells below{', batch norms frozen' if frozen else ''})"
    )


def _scores(
    analysis: Analysis, stage: str, paper: Paper, details: BestRunDetails, images: dict
) -> list[Block]:
    number = paper.scores[stage]["table"]
    title = f"Table {number}: {tables.STAGES[stage]}"
    if stage not in analysis.tables:
        return [
            Heading(2, title),
            Paragraph(
                f"**Missing**: no run of the best configuration has {PHASES[stage]} "
                f"(`{stage}.epochs` = 0, or the phase logged no scores), so Table {number} "
                "cannot be rebuilt."
            ),
        ]
    table = analysis.tables[stage]
    most = int(table["n"].max())
    rows = []
    for (key, label), group in table.groupby(["metric", "label"], sort=False):
        scale, digits = (1, 4) if key == "loss" else (100, 2)
        row = {"Metric": label if key == "loss" else f"{label} (%)"}
        for split, found in group.groupby("split", sort=False):
            cell = found.iloc[0]
            text = _mean_std(scale * cell["mean"], scale * cell["std"], digits)
            if 0 < cell["n"] < most:
                text += f" (n = {cell['n']})"
            row[f"{SPLIT_NAMES[split].capitalize()} (ours)"] = text
        for split in ("train", "val"):
            value = group.loc[group["split"] == split, "paper"].iloc[0]
            row[f"{SPLIT_NAMES[split].capitalize()} ({_paper_label(analysis, paper).lower()})"] = (
                DASH if math.isnan(value) else f"{scale * value:.2f}" if scale > 1 else f"{value:g}"
            )
        rows.append(row)
    blocks: list[Block] = [
        Heading(2, title),
        Paragraph(
            f"Scores after {_phase(analysis, stage)} of the best configuration "
            f"(**{analysis.configuration}**): mean ± std over n = {most} seeds; "
            f"{CONFIDENCE:.0%} intervals in the CSV. Precision, recall and AUC are Keras's "
            "metrics on one-hot targets at threshold 0.5, as the paper reports them; the macro "
            "rows are class averages the paper does not give. The paper has no test split: its "
            "validation split also chose the early-stopping epoch, as ours does, so "
            + (
                "only our test column is free of selection."
                if analysis.split == "test"
                else "these runs, which have no test split either, have no unbiased column."
            )
        ),
        Table(pd.DataFrame(rows), TABLE_FILES[stage]),
    ]
    if stage == "fine_tune":
        kept = column(analysis.best_runs, "tags.kept_model")
        blocks.append(
            Paragraph(
                "The final model of a run is the fine-tuned one only when a fine-tuning epoch "
                "beat the frozen model on the early-stopping monitor (unless "
                "`fine_tune.keep_frozen_if_better` is false); this table shows the fine-tuned "
                f"model either way. Fine-tuned model kept in {int((kept == 'fine_tune').sum())} "
                f"of {len(kept)} seeds"
                + (f" ({int(kept.isna().sum())} did not record it)." if kept.isna().any() else ".")
            )
        )
        blocks += _fine_tuning_gain(analysis)
    if not analysis.same_data:
        blocks.append(Paragraph(_not_neu(paper)))
    history = details.histories.get(stage)
    if history:
        best = analysis.best
        name = f"learning_curves_{stage}.png"
        kept = best.get(f"metrics.{stage}_best_epoch", np.nan)
        figure = figures.learning_curves(
            history,
            f"{_best_run_title(analysis)}: {tables.STAGES[stage]}",
            None if math.isnan(kept) else int(kept),
        )
        images[name] = figures.png(figure)
        blocks.append(
            Image(
                name,
                f"Learning curves of the best configuration's median-seed run, "
                f"{tables.STAGES[stage]}: loss and accuracy per epoch on training and "
                "validation data; the grey line marks the epoch whose weights were kept.",
            )
        )
    return blocks


def _inference(analysis: Analysis, paper: Paper) -> list[Block]:
    table = analysis.tables["inference"]
    rows = []
    for row in table.to_dict("records"):
        ours = row["source"] == "ours"
        accuracy = _mean_std(100 * row["accuracy"], 100 * row.get("accuracy_std", np.nan), 2)
        if ours:
            accuracy += f" ({SPLIT_NAMES[row['split']]}, n = {int(row['n'])})"
        per_image = _number(row.get("batch32_ms_per_image"), 2)
        if not ours and per_image != DASH:
            per_image += f" ({row['batch32_ms_per_step']:g} / 32)"
        rows.append(
            {
                "Method": row["method"],
                "Source": row["source"],
                "Accuracy (%)": accuracy,
                "Parameters": _millions(row["parameters"]),
                "ms per step, batch 32": _timing(row, "batch32_ms_per_step"),
                "ms per image, batch 32": per_image,
                "ms per image, batch 1": _timing(row, "batch1_ms_per_step"),
                "Data size (images)": _count(row["data_size"]),
                "Machine": _machine(row),
            }
        )
    notes = list(paper.method_notes)
    notes.append(
        f"The paper's accuracy ({paper.methods[-1]['accuracy']:.2f}%) is its training accuracy "
        f"before fine-tuning (Table 3, {paper.scores['frozen']['train']['accuracy']:.2f}%)."
    )
    if analysis.bench.empty:
        notes.append(
            "**Not measured**: this experiment has no `study bench` run, so our inference times "
            f"are missing; `study bench` with the study's config logs them into "
            f"`{analysis.experiment}`."
        )
    else:
        repeats = _listing(param(analysis.bench, "repeats"))
        warmup = _listing(param(analysis.bench, "warmup"))
        notes.append(
            f"Our times (`study bench`): the median of {repeats} timed inference steps after "
            f"{warmup} warm-up steps, one step being `predict_on_batch` of the full classifier "
            "on random images; in brackets the interquartile range."
        )
        trained = set(param(analysis.best_runs, "data.image_size").dropna())
        timed = set(param(analysis.bench, "image_size").dropna())
        if timed - trained:
            notes.append(
                f"The runs trained at {', '.join(sorted(trained))} px; timings at other sizes "
                "describe a differently sized input."
            )
    return [
        Heading(2, "Table 5: accuracy, size and inference time"),
        Table(pd.DataFrame(rows), TABLE_FILES["inference"]),
        Bullets(tuple(notes)),
    ]


def _activations(analysis: Analysis, paper: Paper) -> list[Block]:
    table = analysis.tables["activations"]
    split = SPLIT_NAMES[analysis.split]
    fixed = [key for key in analysis.selection.swept if key != "activation"]
    columns = {
        "Activation": table["activation"],
        "Seeds": [
            f"{row.seeds} (n = {row.n})" if row.n else "no runs" for row in table.itertuples()
        ],
        f"{split.capitalize()} error rate (%)": [
            _mean_std(row.error_pct_mean, row.error_pct_std, 2) for row in table.itertuples()
        ],
        f"{CONFIDENCE:.0%} Wilson interval (%)": [
            _interval(row.error_pct_ci_low, row.error_pct_ci_high) for row in table.itertuples()
        ],
        "Difference from elu (points, 95% CI over seeds)": [
            _difference(row) for row in table.itertuples()
        ],
        "Permutation p (pairs)": [
            DASH if math.isnan(p) else f"{_p(p)} ({int(n)})"
            for p, n in zip(table["p_permutation"], table["pairs"].fillna(0), strict=True)
        ],
        "Holm p": [DASH if math.isnan(p) else _p(p) for p in table["p_holm"]],
        "Hedges' g_z": [_number(v, 2) for v in table["hedges_gz"]],
        "95% CI, new test images too": [_new_images(row) for row in table.itertuples()],
    }
    label = _paper_label(analysis, paper)
    columns[f"{label}: method"] = table["paper_method"].fillna(DASH)
    columns[f"{label}: error rate (%)"] = [_number(v, 4) for v in table["paper_error_pct"]]
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
        protocol,
        _split_design(analysis),
        *(f"Paper: {note}" for note in paper.activation_notes),
    ]
    if not analysis.same_data:
        notes.append(_not_neu(paper))
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
        blocks.append(
            Paragraph("The error per activation, one dot per seed, opens the report (Verdict).")
        )
    return blocks


def _paper_label(analysis: Analysis, paper: Paper) -> str:
    return "Paper" if analysis.same_data else "Paper, on NEU (not comparable)"


def _not_neu(paper: Paper) -> str:
    return (
        f"**Other data**: these runs are not on the NEU database that {paper.short} used (their "
        "data fingerprint differs), so the paper's figures are shown for reference only and "
        "nothing is compared with them."
    )


def _knobs(analysis: Analysis, images: dict) -> list[Block]:
    table = analysis.tables["knobs"]
    objective = analysis.objective
    best = analysis.best
    shown = pd.DataFrame(
        {
            "Setting": table["knob"].str.replace("_", " "),
            "Value": [
                f"{row.value} (best)" if best.get(f"params.{row.knob}") == row.value else row.value
                for row in table.itertuples()
            ],
            "Runs": table["n"],
            "Configurations": table["configurations"],
            _objective_name(objective, unit=True): [
                _objective_cell(objective, row.objective_mean, row.objective_std)
                for row in table.itertuples()
            ],
            f"{SPLIT_NAMES[analysis.split].capitalize()} error rate (%)": [
                _mean_std(row.error_pct_mean, row.error_pct_std, 2) for row in table.itertuples()
            ],
            "Adjusted: " + _objective_name(objective, unit=True).lower(): [
                _objective_cell(objective, row.objective_adjusted, math.nan)
                for row in table.itertuples()
            ],
            "Adjusted: error rate (%)": [
                _number(value, 2) for value in table["error_pct_adjusted"]
            ],
        }
    )
    figure = figures.sweep_overview(
        analysis.selection.runs,
        analysis.selection.swept,
        objective,
        analysis.split,
        analysis.configuration,
    )
    images["sweep.png"] = figures.png(figure)
    listed: list[Block] = [
        Paragraph(
            "Each value of each setting the sweep varied (of a phase that ran) over every "
            "included run that has it, whatever the other settings were: raw means of what was "
            "sampled, whose spread includes the other settings' effect, and which a search that "
            "tried some values only beside others confounds. The adjusted columns remove that: "
            "an additive least-squares model of all the settings and the seed, its prediction "
            "for every run with the setting at this value, averaged over the runs (equal to "
            "the raw mean in a full grid). (best) marks the best configuration's value; the "
            "configurations table compares whole configurations."
        ),
        Table(shown, TABLE_FILES["knobs"]),
    ]
    if table.empty:
        listed = [Paragraph("The sweep varied no setting of a phase that ran: no knob to show.")]
    return [
        Heading(2, "Knobs: the settings the sweep varied"),
        *listed,
        Image(
            "sweep.png",
            f"The whole sweep: each run's {_objective_name(objective)} (top) and "
            f"{SPLIT_NAMES[analysis.split]} error rate (bottom) against each setting the sweep "
            "varied (against the seed when nothing varied); the best configuration's runs in "
            "orange.",
        ),
    ]


def _importance(analysis: Analysis, images: dict) -> list[Block]:
    """Which knob matters, when the runs varied two or more knobs (see `importance`)."""
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
            "Permutation p": [DASH if math.isnan(p) else _p(p) for p in table["p_permutation"]],
            "Values tried": table["values"],
        }
    )
    strongest = pairs.iloc[0]
    blocks: list[Block] = [
        Heading(2, "Which knob matters"),
        Paragraph(
            f"{importance.METHOD} Objective: {_objective_name(analysis.objective)}, "
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
            f"{importance.TREES}-tree random forest of the runs; every pair is in "
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
                f"{_objective_name(analysis.objective).capitalize()} against {knob}: one dot "
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
            f"configuration, coloured by its mean {_objective_name(analysis.objective)} over "
            "its seeds; the best configuration ringed in red.",
        )
    )
    return blocks


def _share(value: float) -> str:
    return DASH if math.isnan(value) else f"{100 * value:.1f} %"


def _file_part(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)


def _best_run(analysis: Analysis, details: BestRunDetails, images: dict) -> list[Block]:
    best = analysis.best
    name = best.get("tags.mlflow.runName") or best["run_id"]
    blocks: list[Block] = [
        Heading(2, "The best configuration's runs"),
        Paragraph(
            f"Figures of single runs show run `{name}` (`{best['run_id']}`), seed {best['seed']}: "
            f"of the best configuration's {len(analysis.best_runs)} runs, the one of median "
            f"{_objective_name(analysis.objective)}, not the luckiest seed."
        ),
    ]
    if details.confusion is None:
        blocks.append(Paragraph("**Missing**: no run has a `confusion_matrix.csv` artifact."))
        return blocks
    split = "test" if analysis.split == "test" else "validation"
    matrix = details.confusion
    title = f"Best configuration, {details.pooled_runs} seeds added up: {split} split"
    figure = figures.confusion_matrix(matrix.to_numpy(), list(matrix.columns), title)
    images["confusion_matrix.png"] = figures.png(figure)
    blocks.append(
        Image(
            "confusion_matrix.png",
            f"Confusion matrix of the best configuration's final models on the {split} split, "
            f"added up over its {details.pooled_runs} seeds: true classes as rows, predicted "
            "classes as columns, counts of image predictions.",
        )
    )
    return blocks


def _best_run_title(analysis: Analysis) -> str:
    seed = f"seed {analysis.best['seed']}"
    if analysis.configuration == ONE_CONFIGURATION:
        return f"Median run ({seed})"
    return f"Median run ({analysis.configuration}, {seed})"


def _exclusions(analysis: Analysis) -> str:
    excluded = analysis.selection.excluded
    return ", ".join(f"{n} {reason}" for reason, n in excluded.items()) or "none"


def _objective_name(objective: str, unit: bool = False) -> str:
    """`val_accuracy` as "validation accuracy", or as a column header "Validation accuracy (%)"."""
    split, _, name = objective.partition("_")
    text = f"{SPLIT_NAMES[split]} {name.replace('_', ' ')}"
    if not unit:
        return text
    return text.capitalize() + ("" if _raw(objective) else " (%)")


def _objective_cell(objective: str, mean: float, std: float) -> str:
    if _raw(objective):
        return _mean_std(mean, std, 4)
    return _mean_std(100 * mean, 100 * std, 2)


def _raw(objective: str) -> bool:
    """Whether the objective is a loss, shown as is, rather than a fraction shown in percent."""
    return objective.endswith("_loss")


def _mean_std(mean: float, std: float, digits: int) -> str:
    if mean is None or math.isnan(mean):
        return DASH
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _interval(low: float, high: float) -> str:
    if math.isnan(low):
        return DASH
    return f"[{low:.2f}, {high:.2f}]"


def _number(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return DASH
    return f"{value:.{digits}f}"


def _signed(value: float) -> str:
    return DASH if math.isnan(value) else f"{value:+.2f}"


def _p(value: float, equals: bool = False) -> str:
    if value < 0.001:
        return "< 0.001"
    return f"= {value:.3f}" if equals else f"{value:.3f}"


def _timing(row: dict, name: str) -> str:
    median = row.get(name, math.nan)
    if median is None or math.isnan(median):
        return DASH
    q1, q3 = row.get(f"{name}_q1", math.nan), row.get(f"{name}_q3", math.nan)
    quartiles = "" if math.isnan(q1) else f" ({q1:.1f}–{q3:.1f})"
    return f"{median:.1f}{quartiles}"


def _machine(row: dict) -> str:
    machine = row.get("machine")
    return f"{machine}, {row['image_size']} px" if isinstance(machine, str) else DASH


def _millions(value: float) -> str:
    return DASH if math.isnan(value) else f"{value / 1e6:.2f} M"


def _count(value: float) -> str:
    return DASH if math.isnan(value) else f"{int(value):,}"


def _listing(values: pd.Series, code: bool = False) -> str:
    found = sorted(str(v) for v in values.dropna().unique())
    if not found:
        return "not recorded"
    shown = [f"`{v}`" if code else v for v in found]
    return shown[0] if len(shown) == 1 else "several: " + ", ".join(shown)


def _range_text(counts: pd.Series) -> str:
    low, high = int(counts.min()), int(counts.max())
    return str(low) if low == high else f"{low} to {high}"


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 120 else line[:117] + "..."
