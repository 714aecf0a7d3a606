"""The report's tables, each a pure function: runs in (the DataFrame of `mlflow.search_runs`,
narrowed by `selection.select`), one DataFrame of numbers and labels out. The CSV files hold
these frames as they are; the `sections` package formats them for reading.

Scores are fractions as logged (accuracy 0.98), the paper's percentages converted to match,
except in the activation table, which is in percent like the paper's Table 6.

`outcomes`, where given, holds the final model's per-image correctness on the test split (from
each run's `predictions.csv`): one row per run (index `run_id`), one column per test image, 1
where the model was right, 0 where wrong, missing where the run scored no such image
(`Outcomes`). The test split is the same for every seed, so the
runs of two settings can be compared image by image.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.report import stats
from study.report.knob_tests import level_key
from study.report.paper import Paper
from study.report.selection import matching, value_order
from study.tracking import outcome
from study.tracking.outcome import column, metric, param
from study.vocabulary import KNOBS, PHASE_KNOBS

STAGES = {"frozen": "before fine-tuning", "fine_tune": "after fine-tuning"}
ACTIVATIONS = ("elu", "relu", "tanh", "sigmoid")  # the paper's, reference first
REFERENCE_ACTIVATION = "elu"
# A comparison of one setting with a reference, as `compare` gives it: over the seeds both have,
# the mean difference (percentage points) with its t interval over seeds, Hedges' g_z, the exact
# sign-flip permutation p (Holm over the table's fixed family), and with per-image outcomes the
# interval that also lets the test images vary.
COMPARISON_COLUMNS = [
    *("pairs", "difference_pct", "difference_std", "difference_ci_low", "difference_ci_high"),
    *("difference_df", "hedges_gz", "p_permutation", "permutation_exact", "p_holm", "family"),
    *("new_images_ci_low", "new_images_ci_high", "new_images_df"),
]
ACTIVATION_COLUMNS = [
    *("activation", "n", "seeds"),
    *("error_pct_mean", "error_pct_std", "error_pct_ci_low", "error_pct_ci_high"),
    *COMPARISON_COLUMNS,
    *("paper_method", "paper_error_pct"),
]


# question.metric -> (the logged score, whether it is an error already): each is compared as an
# error in percent, lower is better.
QUESTION_SCORES = {
    "error_rate": ("error_rate", True),
    "balanced_error_rate": ("recall_macro", False),
    "macro_f1": ("f1_macro", False),
}


def metric_pct(runs: pd.DataFrame, split: str, name: str = "error_rate") -> pd.Series:
    """Each run's error in percent on `split` by the question's metric `name`
    (QUESTION_SCORES): the error rate, 100 - macro recall (the balanced error rate) or
    100 - macro F1."""
    score, is_error = QUESTION_SCORES[name]
    values = metric(runs, f"{split}_{score}")
    return 100 * (values if is_error else 1 - values)


def metric_column(split: str, name: str = "error_rate") -> str:
    """The runs.csv column of `metric_pct`: test_error_pct, test_balanced_error_pct, ..."""
    return (
        f"{split}_{name.removesuffix('_rate')}_pct"
        if name != "macro_f1"
        else (f"{split}_macro_f1_error_pct")
    )


def run_table(ledger: pd.DataFrame, runs: pd.DataFrame, split: str) -> pd.DataFrame:
    """runs.csv: every run in scope (the selection's ledger: included or why not) with what a
    reader needs to recompute the report: its backbone (`backbone_draw`, the random draw's
    number, empty for one backbone; `weights`, the backbone's label), its knob values, and its
    scores: the question's metrics on `split` in percent (`metric_column`), the validation
    accuracy and error, and the epochs run."""
    by_id = runs.set_index("run_id")
    ids = ledger["run_id"]
    found = ledger.copy()
    found["backbone_draw"] = column(by_id, "tags.backbone_draw").reindex(ids).to_numpy()
    found["weights"] = column(by_id, "tags.weights").reindex(ids).to_numpy()
    for knob in KNOBS:
        if f"params.{knob}" in by_id.columns:
            found[knob] = by_id[f"params.{knob}"].reindex(ids).to_numpy()
    scored = by_id.reindex(ids)
    for name in QUESTION_SCORES:
        found[metric_column(split, name)] = metric_pct(scored, split, name).to_numpy()
    found["val_accuracy"] = metric(scored, "val_accuracy").to_numpy()
    found["val_error_pct"] = 100 * metric(scored, "val_error_rate").to_numpy()
    for stage in STAGES:
        found[f"{stage}_epochs_run"] = metric(scored, f"{stage}_epochs_run").to_numpy()
    return found


def error_split(runs: pd.DataFrame) -> str:
    """The split that error rates are reported on: test, or validation when there is none."""
    return "test" if metric(runs, "test_error_rate").notna().any() else "val"


def configurations(
    runs: pd.DataFrame,
    swept: list[str],
    objective: str,
    split: str,
    outcomes: Outcomes | None = None,
) -> pd.DataFrame:
    """Every configuration, best first as `outcome.ranking` ranks them (the mean of `objective`
    over the seeds that every configuration finished), with its error rate on `split` and how
    it compares with the best."""
    kept = ["run_id", "configuration", "seed", f"metrics.{objective}"]
    kept += [f"metrics.{split}_error_rate", f"params.dataset.{split}_images"]
    kept += [f"params.{key}" for key in swept]
    runs = runs[[name for name in dict.fromkeys(kept) if name in runs.columns]]
    groups = dict(tuple(runs.groupby("configuration", sort=False)))
    medians = outcome.median_runs(runs, objective, runs["configuration"])
    seeds = {label: set(group["seed"].dropna()) for label, group in groups.items()}
    every = set().union(*seeds.values()) if seeds else set()
    rows = []
    for ranked in outcome.ranking(runs, objective).itertuples():
        label = ranked.configuration
        group = groups[label]
        own = stats.spread(metric(group, objective))
        error = error_spread(group, split, outcomes)
        rows.append(
            {
                "configuration": label,
                **{key: group[f"params.{key}"].iloc[0] for key in swept},
                "n": len(group),
                "seeds": _seed_list(group),
                "missing_seeds": " ".join(str(s) for s in sorted(every - seeds[label])),
                "objective": objective,
                "ranked_on_seeds": ranked.ranked_on_seeds,
                "objective_mean": ranked.objective_mean,
                "objective_mean_all_seeds": own.mean,
                "objective_std": own.std,
                "error_split": split,
                "error_rate_mean": error.mean,
                "error_rate_std": error.std,
                "error_rate_ci_low": error.ci_low,
                "error_rate_ci_high": error.ci_high,
                "median_run_id": runs.at[medians[label], "run_id"],
            }
        )
    table = pd.DataFrame(rows)
    table.insert(0, "rank", range(1, len(table) + 1))
    if len(table):
        best = groups[table["configuration"].iloc[0]]
        others = {label: groups[label] for label in table["configuration"].iloc[1:]}
        found = compare(others, best, split, outcomes)
        table = table.merge(found, how="left", left_on="configuration", right_index=True)
    return table


def error_spread(runs: pd.DataFrame, split: str, outcomes: Outcomes | None = None) -> stats.Spread:
    """Error rate (fraction) over the runs' seeds, with a Wilson interval: from per-image
    outcomes on the test split when they were logged, else from the per-seed rates."""
    errors = _errors_by_image(runs, outcomes) if split == "test" else None
    if errors is not None:
        return stats.pooled_rate_spread(errors.to_numpy())
    return stats.rate_spread(
        metric(runs, f"{split}_error_rate"),
        pd.to_numeric(param(runs, f"dataset.{split}_images"), errors="coerce"),
    )


def compare(
    settings: dict[str, pd.DataFrame],
    reference: pd.DataFrame,
    split: str,
    outcomes: Outcomes | None,
    metric_name: str = "error_rate",
) -> pd.DataFrame:
    """Each setting's runs against the reference runs on `split`'s error in percent by
    `metric_name` (`metric_pct`), over the seeds both have (`stats.paired_comparison`: would it
    beat the reference if both were trained again?). Every setting given is one planned
    comparison: Holm's adjustment runs over all of them, those that cannot be tested included.
    With per-image outcomes on the test split, `new_images_*` is the difference's interval when
    new test images vary too (`stats.crossed_interval`; the balanced error rate weighs each
    image by the inverse of its class's count; macro F1 has none)."""
    rows = {
        label: pair_row(runs, reference, split, outcomes, metric_name)
        for label, runs in settings.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=COMPARISON_COLUMNS)
    table["p_holm"] = stats.holm(table["p_permutation"].to_numpy(dtype=float))
    table["family"] = len(table)
    return table


def pair_row(
    runs: pd.DataFrame,
    reference: pd.DataFrame,
    split: str,
    outcomes: Outcomes | None,
    metric_name: str = "error_rate",
) -> dict[str, float]:
    """One comparison of `runs` with `reference` (COMPARISON_COLUMNS but Holm's): the
    difference runs - reference in points, paired by seed (`pair_by_seed`), in seed order."""
    pairs = pair_by_seed(runs, reference, split, metric_name).sort_values("seed")
    common = pairs["seed"].tolist()
    test = stats.paired_comparison(
        pairs["value_pct"].to_numpy(dtype=float), pairs["reference_pct"].to_numpy(dtype=float)
    )
    row = {
        "pairs": test.n,
        "difference_pct": test.mean_difference,
        "difference_std": test.std_difference,
        "difference_ci_low": test.ci_low,
        "difference_ci_high": test.ci_high,
        "difference_df": test.n - 1 if test.n > 1 else math.nan,
        "hedges_gz": test.effect_size,
        "p_permutation": test.p_value,
        "permutation_exact": test.exact,
    }
    if split != "test" or not common or outcomes is None or metric_name == "macro_f1":
        return row
    balanced = metric_name == "balanced_error_rate"
    ours = _errors_by_image(runs[runs["seed"].isin(common)], outcomes, balanced)
    theirs = _errors_by_image(reference[reference["seed"].isin(common)], outcomes, balanced)
    if ours is None or theirs is None:
        return row
    files = ours.columns.intersection(theirs.columns)
    crossed = stats.crossed_interval(
        100 * (ours.loc[common, files].to_numpy() - theirs.loc[common, files].to_numpy())
    )
    return row | {
        "new_images_ci_low": crossed.ci_low,
        "new_images_ci_high": crossed.ci_high,
        "new_images_df": crossed.df,
    }


def pair_by_seed(
    runs: pd.DataFrame, reference: pd.DataFrame, split: str, metric_name: str = "error_rate"
) -> pd.DataFrame:
    """The runs of two settings paired by seed on `split`'s error in percent by `metric_name`
    (`metric_pct`): one row per seed that both have a value for (a seed's first run with one,
    on either side), in the order of `runs` and indexed by the run's index there (so that its
    backbone can be looked up): `seed`, `value_pct`, `reference_pct` and `difference_pct`
    (value - reference)."""
    columns = ["seed", "value_pct", "reference_pct", "difference_pct"]
    if runs.empty or reference.empty:
        return pd.DataFrame(columns=columns, dtype=float)
    theirs = pd.Series(
        metric_pct(reference, split, metric_name).to_numpy(), index=pd.Index(reference["seed"])
    ).dropna()
    theirs = theirs[~theirs.index.duplicated()]
    pairs = pd.DataFrame(
        {"seed": runs["seed"], "value_pct": metric_pct(runs, split, metric_name).to_numpy()},
        index=runs.index,
    ).dropna()
    pairs = pairs[~pairs["seed"].duplicated() & pairs["seed"].isin(theirs.index)]
    pairs["reference_pct"] = pairs["seed"].map(theirs).to_numpy(dtype=float)
    pairs["difference_pct"] = pairs["value_pct"] - pairs["reference_pct"]
    return pairs[columns]


@dataclass(frozen=True)
class Outcomes:
    """The final models' per-image results on the test split: `correct[i, j]` is 1 where run
    `run_ids[i]` was right on image `files[j]`, 0 where wrong, NaN where it scored no such
    image; `classes[j]` is the image's class and `predicted[i, j]` the run's answer ("" where
    it scored none)."""

    run_ids: pd.Index
    files: pd.Index
    correct: np.ndarray
    classes: np.ndarray
    predicted: np.ndarray

    @classmethod
    def from_runs(cls, per_run: dict[str, pd.DataFrame]) -> Outcomes:
        """From each run's test images: {run_id: frame with columns file, class, predicted,
        correct (0/1)}."""
        frames = list(per_run.values())
        every = pd.concat(frames) if frames else pd.DataFrame(columns=["file", "class"])
        classes = every.drop_duplicates("file").set_index("file")["class"].sort_index()
        files = pd.Index(classes.index, dtype=object)
        correct = np.full((len(per_run), len(files)), np.nan)
        predicted = np.full((len(per_run), len(files)), "", dtype=object)
        for row, frame in enumerate(frames):
            columns = files.get_indexer(frame["file"])
            correct[row, columns] = frame["correct"].to_numpy(dtype=float)
            predicted[row, columns] = frame["predicted"].to_numpy(dtype=object)
        return cls(
            pd.Index(list(per_run), dtype=object),
            files,
            correct,
            classes.to_numpy(dtype=object),
            predicted,
        )

    @functools.cached_property
    def row_of(self) -> dict[str, int]:
        return {run_id: row for row, run_id in enumerate(self.run_ids)}

    def frame(self, run_ids) -> pd.DataFrame:
        """One row per run of `run_ids` (that logged outcomes) and test image it scored:
        run_id, file, class, predicted, correct."""
        rows = [self.row_of[run_id] for run_id in run_ids if run_id in self.row_of]
        scored = ~np.isnan(self.correct[rows])
        picked, image = np.nonzero(scored)
        return pd.DataFrame(
            {
                "run_id": self.run_ids[np.asarray(rows, dtype=int)[picked]],
                "file": self.files[image],
                "class": self.classes[image],
                "predicted": self.predicted[np.asarray(rows, dtype=int)[picked], image],
                "correct": self.correct[np.asarray(rows, dtype=int)[picked], image].astype(int),
            }
        )


def _errors_by_image(
    runs: pd.DataFrame, outcomes: Outcomes | None, balanced: bool = False
) -> pd.DataFrame | None:
    """(seed x test image) 0/1 errors of these runs (a seed's first run) on the images every
    one of them scored, or None when a run logged no outcomes. `balanced`: each image's error
    weighed by (images / (classes x its class's images)), so that a row's mean is the balanced
    error rate."""
    if outcomes is None or runs.empty:
        return None
    rows = np.array([outcomes.row_of.get(run_id, -1) for run_id in runs["run_id"]])
    if (rows < 0).any():
        return None
    seeds = runs["seed"].to_numpy()
    first = ~pd.Index(seeds).duplicated()
    order = np.argsort(seeds[first], kind="stable")
    errors = 1 - outcomes.correct[rows[first][order]]
    scored = ~np.isnan(errors).any(axis=0)
    errors = errors[:, scored]
    if balanced:
        classes = outcomes.classes[scored]
        names, index, counts = np.unique(classes, return_inverse=True, return_counts=True)
        errors = errors * (len(classes) / (len(names) * counts[index]))[None, :]
    return pd.DataFrame(
        errors,
        index=pd.Index(seeds[first][order], name="seed"),
        columns=outcomes.files[scored],
    )


def activation_table(
    runs: pd.DataFrame, split: str, paper: Paper, outcomes: Outcomes | None = None
) -> pd.DataFrame:
    """Table 6: error rate (percent) on `split` per activation over seeds, each activation
    compared with ELU (`compare`: paired over seeds, sign-flip permutation test, Holm over every
    activation but elu). `runs` must differ only in activation and seed; the paper's figures
    stand beside ours."""
    published = {row["activation"]: row for row in paper.activations}
    groups = dict(list(runs.groupby(param(runs, "activation"), sort=False)))
    found = [name for name in groups if name not in ACTIVATIONS]
    names = [*ACTIVATIONS, *sorted(found)]
    reference = groups.get(REFERENCE_ACTIVATION, runs.iloc[:0])
    # The family: every activation against elu, the paper's ones too when they have no runs.
    others = {n: groups.get(n, runs.iloc[:0]) for n in names if n != REFERENCE_ACTIVATION}
    compared = compare(others, reference, split, outcomes)
    rows = []
    for name in names:
        group = groups.get(name, runs.iloc[:0])
        spread = error_spread(group, split, outcomes)
        row = {
            "activation": name,
            "n": spread.n,
            "seeds": _seed_list(group),
            "error_pct_mean": 100 * spread.mean,
            "error_pct_std": 100 * spread.std,
            "error_pct_ci_low": 100 * spread.ci_low,
            "error_pct_ci_high": 100 * spread.ci_high,
        }
        if name in compared.index:
            row |= compared.loc[name].to_dict()
        row |= {
            "paper_method": published.get(name, {}).get("method"),
            "paper_error_pct": published.get(name, {}).get("error_rate", math.nan),
        }
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=ACTIVATION_COLUMNS)


def knob_table(
    runs: pd.DataFrame,
    knobs: list[str],
    objective: str,
    split: str,
    adjusted: dict[str, dict[str, tuple[float, float]]] | None = None,
    metric_name: str = "error_rate",
) -> pd.DataFrame:
    """Each value of each knob: `objective` and the error rate (percent) on `split`, mean and
    std over every run with that value, whatever the other knobs were; and where `adjusted`
    has it (`knob_tests.knob_tests`: knob -> `level_key(value)` -> (mean, standard error)), the
    question metric's mean predicted by the seed-blocked additive model with the knob at that
    value, which a search that sampled some values only beside others cannot confound."""
    adjusted = adjusted or {}
    kept = ["configuration", f"metrics.{objective}", f"metrics.{split}_error_rate"]
    values_of = {knob: param(runs, knob) for knob in knobs}
    runs = runs[[name for name in kept if name in runs.columns]]
    rows = []
    for knob in knobs:
        values = values_of[knob]
        for value in sorted(values.dropna().unique(), key=value_order):
            group = runs[values == value]
            score = stats.spread(metric(group, objective))
            error = stats.spread(100 * metric(group, f"{split}_error_rate"))
            mean, se = adjusted.get(knob, {}).get(level_key(value), (math.nan, math.nan))
            rows.append(
                {
                    "knob": knob,
                    "value": value,
                    "n": len(group),
                    "configurations": group["configuration"].nunique(),
                    "objective": objective,
                    "objective_mean": score.mean,
                    "objective_std": score.std,
                    "error_split": split,
                    "error_pct_mean": error.mean,
                    "error_pct_std": error.std,
                    "adjusted_metric": metric_column(split, metric_name),
                    "adjusted_mean": mean,
                    "adjusted_se": se,
                }
            )
    columns = ["knob", "value", "n", "configurations", "objective", "objective_mean"]
    columns += ["objective_std", "error_split", "error_pct_mean", "error_pct_std"]
    columns += ["adjusted_metric", "adjusted_mean", "adjusted_se"]
    return pd.DataFrame(rows, columns=columns)


def report_knobs(runs: pd.DataFrame, swept: list[str]) -> list[str]:
    """The settings the sweep varied, the paper's knobs first, leaving out those of a phase
    that no run trained (`frozen.*` or `fine_tune.*` with 0 epochs everywhere)."""

    def phase_ran(key: str) -> bool:
        if key in PHASE_KNOBS:  # named after the phase that ran
            return True
        stage = KNOBS.get(key, key).partition(".")[0]
        if stage not in STAGES:
            return True
        epochs = pd.to_numeric(param(runs, f"{stage}.epochs"), errors="coerce")
        return bool((epochs > 0).any())

    ordered = [*(knob for knob in KNOBS if knob in swept), *(k for k in swept if k not in KNOBS)]
    return [key for key in ordered if phase_ran(key)]


def comparable(runs: pd.DataFrame, swept: list[str], best: pd.Series, vary: str) -> pd.DataFrame:
    """The runs that match the best configuration in every swept setting except `vary`."""
    fixed = {key: best[f"params.{key}"] for key in swept if key != vary}
    return matching(runs, fixed)


def _seed_list(runs: pd.DataFrame) -> str:
    return " ".join(str(seed) for seed in sorted(runs["seed"].dropna()))
