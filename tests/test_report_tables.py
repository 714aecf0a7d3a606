"""The report's tables as pure functions of a hand-built `mlflow.search_runs` frame; every
expected number is computed here from the frame's own values with numpy and scipy."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from study import config
from study.report import (
    document,
    hyperparameters,
    inference,
    knob_tests,
    paper,
    phase_scores,
    question,
    stats,
    tables,
)
from study.report.analysis import analyse
from study.report.render import markdown
from study.report.selection import ReportError, select
from study.tracking.outcome import ONE_CONFIGURATION
from study.training.evaluation import SPLIT_METRICS

PAPER = paper.load()
SPLITS = ("train", "val", "test")
# Test error rate by activation before the seed's wobble: distinct enough to rank.
BASE_ERROR = {"elu": 0.03, "relu": 0.05, "tanh": 0.08, "sigmoid": 0.12}


def run(
    seed: int,
    activation: str = "elu",
    status: str = "FINISHED",
    parent: str | None = "sweep-1",
    stages: tuple[str, ...] = ("frozen", "fine_tune"),
    test: bool = True,
    run_type: str = "trial",
    **settings,
) -> dict:
    """One run as the contract logs it: params, final and per-stage metrics, tags."""
    phases = {"fine_tune.epochs": 110} if "fine_tune" in stages else {}
    study = config.validate({"name": "t"}).with_values(
        {"seed": seed, "model.activation": activation, **phases, **settings}
    )
    params = {**study.flat(), **study.knob_values()}
    params |= {
        "dataset.root": "/data/neu",
        "dataset.images": 1800,
        "dataset.classes": "crazing,inclusion,patches,pitted_surface,rolled-in_scale,scratches",
        "dataset.train_images": 1080,
        "dataset.val_images": 360,
        "dataset.test_images": 360 if test else 0,
    }
    # A wobble per seed and setting that differs between settings, so pairs are informative.
    wobble = ((seed * 7 + len(activation) * 3 + int(100 * study.model.dropout)) % 11 - 5) / 1000
    error = BASE_ERROR.get(activation, 0.2) + wobble
    metrics: dict[str, float] = {}
    for stage_index, stage in enumerate(stages):
        stage_error = error + 0.01 * (len(stages) - 1 - stage_index)
        for split_index, split in enumerate(SPLITS if test else SPLITS[:2]):
            split_error = stage_error * (0.2 if split == "train" else 1 + 0.1 * split_index)
            for name_index, name in enumerate(SPLIT_METRICS):
                value = {
                    "accuracy": 1 - split_error,
                    "error_rate": split_error,
                    "loss": 3 * split_error,
                }.get(name, 1 - split_error / (2 + name_index))
                metrics[f"{stage}_{split}_{name}"] = value
                if stage == stages[-1]:
                    metrics[f"{split}_{name}"] = value
        metrics[f"{stage}_epochs_run"] = 5 + seed
        metrics[f"{stage}_best_epoch"] = 2
    metrics |= {"parameters_total": 4_376_022, "parameters_trainable_frozen": 106_306}
    if "fine_tune" in stages:
        metrics["parameters_trainable_fine_tune"] = 4_376_022
    tags = {
        "run_type": run_type,
        "seed": str(seed),
        "data_fingerprint": "f" * 64,
        "weights": "imagenet (md5 1ed9)",
        "weights_source": "imagenet",
        "split": "train 1080 / val 360 / test 360" if test else "train 1440 / val 360 / test 0",
        "study_version": "0.1.0",
    }
    if not test:
        tags["test_split"] = "none: model selection and reporting share the validation split"
    if parent:
        tags["mlflow.parentRunId"] = parent
    if status == "FAILED":
        tags["error"] = "TrainingFailed: loss became nan"
    return {"status": status, "params": params, "metrics": metrics, "tags": tags}


def frame(runs: list[dict], parent: str | None = "sweep-1") -> pd.DataFrame:
    """The runs (and a sweep parent run) as `mlflow.search_runs` returns them."""
    rows = []
    if parent:
        rows.append(
            {
                "run_id": parent,
                "status": "FINISHED",
                "tags.run_type": "sweep",
                "tags.mlflow.runName": "t-sweep",
            }
        )
    for number, spec in enumerate(runs):
        row = {"run_id": f"run-{number:03d}", "status": spec["status"]}
        row |= {f"params.{k}": str(v) for k, v in spec["params"].items()}
        row |= {f"metrics.{k}": float(v) for k, v in spec["metrics"].items()}
        row |= {f"tags.{k}": v for k, v in spec["tags"].items()}
        row["tags.mlflow.runName"] = f"t-{number}"
        rows.append(row)
    table = pd.DataFrame(rows)
    table["start_time"] = pd.date_range("2025-01-01", periods=len(table), freq="min", tz="UTC")
    return table.iloc[::-1].reset_index(drop=True)  # newest first, as MLflow orders them


def activation_sweep(seeds=(0, 1, 2, 3), **settings) -> list[dict]:
    return [run(seed, name, **settings) for name in BASE_ERROR for seed in seeds]


def outcome_frame(files, flags) -> pd.DataFrame:
    """One run's test images as `predictions.csv` gives them: the class is the file's folder."""
    classes = [name.split("/")[0] for name in files]
    return pd.DataFrame(
        {
            "file": files,
            "class": classes,
            "predicted": [c if ok else "other" for c, ok in zip(classes, flags, strict=True)],
            "correct": np.asarray(flags, dtype=int),
        }
    )


def values(runs: pd.DataFrame, key: str) -> np.ndarray:
    return runs[f"metrics.{key}"].to_numpy(dtype=float)


# Statistics


def test_spread_is_mean_sample_std_and_t_interval():
    data = np.array([0.031, 0.027, 0.035, 0.030, 0.029])
    found = stats.spread(data)
    sem = data.std(ddof=1) / math.sqrt(len(data))
    low, high = scipy_stats.t.interval(0.95, len(data) - 1, loc=data.mean(), scale=sem)
    assert found.n == 5
    assert found.mean == pytest.approx(data.mean())
    assert found.std == pytest.approx(data.std(ddof=1))
    assert (found.ci_low, found.ci_high) == pytest.approx((low, high))


def test_spread_of_one_value_has_no_std_and_none_of_no_values():
    one = stats.spread([0.5, math.nan])
    assert (one.n, one.mean) == (1, 0.5)
    assert math.isnan(one.std) and math.isnan(one.ci_low)
    assert stats.spread([]).n == 0 and math.isnan(stats.spread([]).mean)


# Selection


def test_failed_killed_unfinished_and_outside_runs_are_excluded_and_counted():
    specs = activation_sweep(seeds=(0, 1))
    specs += [run(2, status="FAILED"), run(3, status="KILLED"), run(4, status="RUNNING")]
    specs += [run(0, parent=None, run_type="train"), run(5, parent="older-sweep")]
    selection = select(frame(specs))
    assert selection.parent_run_id == "sweep-1"
    assert len(selection.runs) == 8
    assert set(selection.runs["status"]) == {"FINISHED"}
    assert selection.excluded == {"failed": 1, "killed": 1, "unfinished (RUNNING)": 1}
    assert selection.outside == 2
    assert selection.swept == ["activation"]
    failed = selection.ledger[selection.ledger["status"] == "FAILED"].iloc[0]
    assert failed["error"].startswith("TrainingFailed") and not failed["included"]


def test_a_failed_run_that_was_retried_says_so():
    failed = run(0, status="FAILED")
    failed["tags"]["retried"] = "true"
    selection = select(frame([failed, run(0)]))
    assert len(selection.runs) == 1
    assert selection.excluded == {"failed, then run again by --retry-failed": 1}


def test_a_repeated_configuration_and_seed_keeps_the_latest_run():
    first, repeat = run(0), run(0)
    repeat["metrics"]["val_accuracy"] = 0.5
    selection = select(frame([first, run(1), repeat]))
    assert len(selection.runs) == 2
    kept = selection.runs[selection.runs["seed"] == 0].iloc[0]
    assert kept["metrics.val_accuracy"] == 0.5
    assert selection.excluded == {"repeat of a configuration and seed: the latest run is kept": 1}
    assert selection.swept == []
    assert set(selection.runs["configuration"]) == {ONE_CONFIGURATION}


def test_split_sizes_that_vary_with_the_seed_do_not_split_a_configuration():
    # NEU's duplicate pair makes a seed's split 1079/361 or 1080/360: still one configuration.
    specs = [run(0), run(1), run(2)]
    specs[1]["params"] |= {"dataset.train_images": 1079, "dataset.val_images": 361}
    specs[2]["params"]["dataset.root"] = "/elsewhere/neu"
    selection = select(frame(specs))
    assert selection.swept == []
    assert len(selection.runs) == 3 and set(selection.runs["configuration"]) == {ONE_CONFIGURATION}


def test_without_a_sweep_run_the_train_runs_are_used():
    specs = [run(seed, parent=None, run_type="train") for seed in (0, 1)]
    selection = select(frame(specs, parent=None))
    assert selection.parent_run_id is None and len(selection.runs) == 2


def test_an_unknown_sweep_run_is_refused():
    with pytest.raises(ReportError, match="no sweep run nope"):
        select(frame([run(0)]), sweep_run_id="nope")


# Tables


def test_configurations_rank_on_validation_and_report_test_error():
    runs = select(frame(activation_sweep())).runs
    ranking = tables.configurations(runs, ["activation"], "val_accuracy", "test")
    means = {
        label: values(group, "val_accuracy").mean()
        for label, group in runs.groupby("configuration")
    }
    assert list(ranking["configuration"]) == sorted(means, key=means.get, reverse=True)
    top = ranking.iloc[0]
    chosen = runs[runs["configuration"] == top["configuration"]]
    errors = values(chosen, "test_error_rate")
    assert top["n"] == 4 and top["seeds"] == "0 1 2 3"
    assert top["objective_mean"] == pytest.approx(values(chosen, "val_accuracy").mean())
    assert top["error_rate_mean"] == pytest.approx(errors.mean())
    assert top["error_rate_std"] == pytest.approx(errors.std(ddof=1))
    median = chosen.sort_values("metrics.val_accuracy", ascending=False).iloc[1]
    assert top["median_run_id"] == median["run_id"]  # of 4 seeds: the second best
    assert 0 <= top["error_rate_ci_low"] < top["error_rate_mean"] < top["error_rate_ci_high"]
    assert math.isnan(top["p_permutation"])
    others = ranking.iloc[1:]
    assert (others["pairs"] == 4).all() and (others["family"] == 3).all()
    assert others["p_holm"].to_numpy() == pytest.approx(stats.holm(others["p_permutation"]))
    second = runs[runs["configuration"] == others["configuration"].iloc[0]]
    difference = 100 * (values(second, "test_error_rate") - errors)  # seeds in the same order
    assert others["difference_pct"].iloc[0] == pytest.approx(difference.mean())
    expected = stats.paired_comparison(100 * values(second, "test_error_rate"), 100 * errors)
    assert others["p_permutation"].iloc[0] == pytest.approx(expected.p_value)
    assert others["difference_ci_low"].iloc[0] == pytest.approx(expected.ci_low)


def test_configurations_rank_on_the_seeds_they_share_and_mark_missing_ones():
    specs = activation_sweep(seeds=(0, 1, 2))
    specs = [
        s for s in specs if not (s["params"]["activation"] == "sigmoid" and s["params"]["seed"] > 0)
    ]
    runs = select(frame(specs)).runs
    ranking = tables.configurations(runs, ["activation"], "val_accuracy", "test").set_index(
        "configuration"
    )
    assert ranking.loc["activation=sigmoid", "missing_seeds"] == "1 2"
    assert ranking.loc["activation=elu", "missing_seeds"] == ""
    elu = runs[(runs["params.activation"] == "elu") & (runs["seed"] == 0)]
    assert ranking.loc["activation=elu", "ranked_on_seeds"] == "0"
    assert ranking.loc["activation=elu", "objective_mean"] == pytest.approx(
        values(elu, "val_accuracy").mean()
    )


def test_hyperband_runs_below_the_final_budget_are_left_out():
    specs = [run(0, "elu", **{"frozen.epochs": 2}), run(0, "relu", **{"frozen.epochs": 2})]
    specs += [run(0, "relu", **{"frozen.epochs": 6})]
    table = frame(specs)
    table.loc[table["run_id"] == "sweep-1", "params.tuner.oracle"] = "hyperband"
    selection = select(table)
    assert list(selection.runs["params.activation"]) == ["relu"]
    assert selection.excluded == {"a lower Hyperband budget (final: 6 epochs)": 2}


def test_minimised_objective_ranks_lowest_first():
    runs = select(frame(activation_sweep())).runs
    ranking = tables.configurations(runs, ["activation"], "val_loss", "test")
    assert ranking["objective_mean"].is_monotonic_increasing


def test_scores_table_is_mean_std_and_interval_beside_the_paper():
    runs = select(frame([run(seed) for seed in range(3)])).runs
    table = phase_scores.scores_table(runs, "fine_tune", PAPER)
    assert len(table) == len(phase_scores.SCORES) * 3
    row = table[(table["metric"] == "precision_keras") & (table["split"] == "val")].iloc[0]
    data = values(runs, "fine_tune_val_precision_keras")
    assert (row["n"], row["mean"], row["std"]) == (
        3,
        pytest.approx(data.mean()),
        pytest.approx(data.std(ddof=1)),
    )
    wilson_interval = stats.rate_spread(data, [360] * 3)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        (wilson_interval.ci_low, wilson_interval.ci_high)
    )
    assert 0 <= row["ci_low"] < row["ci_high"] <= 1
    loss_values = values(runs, "fine_tune_val_loss")
    low, high = scipy_stats.t.interval(
        0.95, 2, loc=loss_values.mean(), scale=loss_values.std(ddof=1) / math.sqrt(3)
    )
    val_loss = table[(table["metric"] == "loss") & (table["split"] == "val")].iloc[0]
    assert (val_loss["ci_low"], val_loss["ci_high"]) == pytest.approx((low, high))
    assert row["paper"] == pytest.approx(PAPER.scores["fine_tune"]["val"]["precision"] / 100)
    loss = table[(table["metric"] == "loss") & (table["split"] == "train")].iloc[0]
    assert loss["paper"] == PAPER.scores["fine_tune"]["train"]["loss"]
    test = table[(table["metric"] == "accuracy") & (table["split"] == "test")].iloc[0]
    assert math.isnan(test["paper"])


def test_a_missing_phase_gives_an_empty_scores_table():
    runs = select(
        frame([run(seed, stages=("frozen",), **{"fine_tune.epochs": 0}) for seed in (0, 1)])
    ).runs
    assert phase_scores.scores_table(runs, "fine_tune", PAPER).empty
    assert not phase_scores.scores_table(runs, "frozen", PAPER).empty
    hyper = hyperparameters.hyperparameter_table(runs, PAPER).set_index("hyperparameter")
    assert hyper.loc["optimizer", "ours_after"] == "phase off"
    assert hyper.loc["epochs", "ours_after"] == "0 (phase off)"
    assert hyper.loc["optimizer", "ours_before"] == "adam"


def test_hyperparameter_table_lists_what_the_runs_used():
    specs = [
        run(0, **{"fine_tune.epochs": 30, "fine_tune.optimizer": name})
        for name in ("adam", "adamax")
    ]
    runs = select(frame(specs)).runs
    table = hyperparameters.hyperparameter_table(runs, PAPER).set_index("hyperparameter")
    assert list(table.index) == [key.replace("_", " ") for key in PAPER.hyperparameters]
    assert table.loc["optimizer", "ours_after"] == "varies: adam, adamax"
    assert table.loc["optimizer", "paper_after"] == "Adamax"
    assert table.loc["steps per epoch", "ours_before"] == str(math.ceil(1080 / 32))
    assert table.loc["trainable parameters", "ours_before"] == "106,306"
    assert table.loc["learning rate mode", "ours_after"] == "exponential decay"
    assert table.loc["epochs", "ours_after"] == "30 (ran 5)"


def test_hyperparameter_table_shows_settings_it_has_no_rule_for_by_their_dotted_path():
    specs = [
        run(
            0, **{"frozen.augment": augment, "model.normalize_features": True, "model.init_seed": 0}
        )
        for augment in (False, True)
    ]
    runs = select(frame(specs)).runs
    unknown = {"source": "a later paper", "frozen": "0", "fine_tune": "0"}
    extended = dataclasses.replace(
        PAPER, hyperparameters={**PAPER.hyperparameters, "model.init_seed": unknown}
    )
    table = hyperparameters.hyperparameter_table(runs, extended).set_index("hyperparameter")
    added = ["model.init_seed", "model.normalize_features", "frozen.augment"]
    assert list(table.index) == [key.replace("_", " ") for key in PAPER.hyperparameters] + added
    assert table.loc["model.init_seed", ["ours_before", "ours_after"]].tolist() == ["0", "0"]
    assert table.loc["model.normalize_features", "ours_after"] == "True"
    augment = table.loc["frozen.augment"]
    assert augment["paper_source"] == "not in the paper"
    assert [augment["ours_before"], augment["ours_after"]] == ["varies: False, True", ""]


def test_two_settings_pair_by_seed_once_each_where_both_have_a_value():
    nan = math.nan
    runs = pd.DataFrame(
        {
            "seed": pd.array([3, 1, 2, 1, 4], dtype="Int64"),
            "metrics.test_error_rate": [0.10, 0.20, nan, 0.25, 0.30],
        },
        index=[10, 11, 12, 13, 14],
    )
    reference = pd.DataFrame(
        {
            "seed": pd.array([1, 2, 3, 3], dtype="Int64"),
            "metrics.test_error_rate": [0.05, 0.07, nan, 0.04],
        },
        index=[20, 21, 22, 23],
    )
    pairs = tables.pair_by_seed(runs, reference, "test")
    # seed 2 has no value of its own, seed 1's second run is a repeat, seed 4 has no reference;
    # the reference's seed 3 is its first run with a value
    assert list(pairs.index) == [10, 11] and pairs["seed"].tolist() == [3, 1]
    assert pairs["value_pct"].tolist() == pytest.approx([10, 20])
    assert pairs["reference_pct"].tolist() == pytest.approx([4, 5])
    assert pairs["difference_pct"].tolist() == pytest.approx([6, 15])
    assert tables.pair_by_seed(runs, reference.iloc[:0], "test").empty

    # The comparison table and the question's per-seed differences pair the same way.
    row = tables.pair_row(runs, reference, "test", None)
    test = stats.paired_comparison([20, 10], [5, 4])  # in seed order
    assert row["pairs"] == 2 and row["difference_pct"] == pytest.approx(test.mean_difference)
    assert row["p_permutation"] == test.p_value
    each_against_b = question.Compared(
        config.Question(), False, {"b": reference, "a": runs}, "b", "test"
    )
    paired = question.paired_differences(each_against_b)
    assert paired["seed"].tolist() == [3, 1]
    assert paired["difference_pct"].tolist() == pytest.approx([6, 15])


def test_activation_table_pairs_each_activation_with_elu_by_seed():
    specs = activation_sweep(seeds=(0, 1, 2, 3))
    specs = [
        s for s in specs if not (s["params"]["activation"] == "relu" and s["params"]["seed"] == 3)
    ]
    runs = select(frame(specs)).runs
    table = tables.activation_table(runs, "test", PAPER).set_index("activation")
    assert list(table.index) == ["elu", "relu", "tanh", "sigmoid"]

    def errors(name):
        chosen = runs[runs["params.activation"] == name]
        return pd.Series(100 * values(chosen, "test_error_rate"), index=chosen["seed"]).sort_index()

    elu, relu = errors("elu"), errors("relu")
    assert table.loc["elu", "error_pct_mean"] == pytest.approx(elu.mean())
    assert table.loc["elu", "error_pct_std"] == pytest.approx(elu.std(ddof=1))
    interval = stats.rate_spread(elu / 100, [360] * 4)
    assert table.loc["elu", ["error_pct_ci_low", "error_pct_ci_high"]].tolist() == pytest.approx(
        [100 * interval.ci_low, 100 * interval.ci_high]
    )
    assert math.isnan(table.loc["elu", "p_permutation"])
    common = relu.index
    differences = (relu - elu[common]).to_numpy()
    exact = scipy_stats.permutation_test(
        (differences,), np.mean, permutation_type="samples", n_resamples=np.inf
    )
    interval = scipy_stats.ttest_1samp(differences, 0).confidence_interval(0.95)
    assert table.loc["relu", "pairs"] == 3 and table.loc["relu", "n"] == 3
    assert table.loc["relu", "p_permutation"] == pytest.approx(exact.pvalue)
    assert table.loc["relu", "permutation_exact"]
    assert table.loc["relu", ["difference_ci_low", "difference_ci_high"]].tolist() == (
        pytest.approx([interval.low, interval.high])
    )
    assert table.loc["relu", "difference_pct"] == pytest.approx(differences.mean())
    others = table.loc[["relu", "tanh", "sigmoid"]]
    assert others["p_holm"].to_numpy() == pytest.approx(stats.holm(others["p_permutation"]))
    assert table["new_images_ci_low"].isna().all()  # no per-image outcomes given
    assert table.loc["elu", "paper_error_pct"] == 0.029
    assert table.loc["sigmoid", "paper_method"] == "CNNs (sigmoid)"


def test_activation_table_with_one_seed_has_no_spread_and_no_test():
    runs = select(frame(activation_sweep(seeds=(0,)))).runs
    table = tables.activation_table(runs, "test", PAPER)
    assert (table["n"] == 1).all()
    assert table[["error_pct_std", "p_permutation", "p_holm"]].isna().all().all()
    assert (table["error_pct_ci_low"] >= 0).all() and (table["error_pct_ci_high"] > 0).all()
    assert table.set_index("activation").loc["relu", "pairs"] == 1


def test_comparable_runs_hold_the_other_swept_settings_at_the_best():
    specs = activation_sweep(seeds=(0, 1)) + activation_sweep(
        seeds=(0, 1), **{"model.dropout": 0.5}
    )
    selection = select(frame(specs))
    assert selection.swept == ["activation", "dropout"]
    best = selection.runs[selection.runs["params.dropout"] == "0.5"].iloc[0]
    chosen = tables.comparable(selection.runs, selection.swept, best, vary="activation")
    assert len(chosen) == 8 and set(chosen["params.dropout"]) == {"0.5"}


def test_knob_table_is_marginal_over_the_other_settings():
    specs = activation_sweep(seeds=(0, 1)) + activation_sweep(
        seeds=(0, 1), **{"model.dropout": 0.5}
    )
    selection = select(frame(specs))
    table = tables.knob_table(
        selection.runs,
        tables.report_knobs(selection.runs, selection.swept),
        "val_accuracy",
        "test",
    )
    dropout = table[table["knob"] == "dropout"].set_index("value")
    assert list(dropout.index) == ["0.2", "0.5"]
    chosen = selection.runs[selection.runs["params.dropout"] == "0.5"]
    assert dropout.loc["0.5", "n"] == 8 and dropout.loc["0.5", "configurations"] == 4
    assert dropout.loc["0.5", "error_pct_mean"] == pytest.approx(
        100 * values(chosen, "test_error_rate").mean()
    )
    assert dropout.loc["0.5", "objective_std"] == pytest.approx(
        values(chosen, "val_accuracy").std(ddof=1)
    )
    assert set(table["knob"]) == {"activation", "dropout"}  # only what varied


def test_knob_effects_of_a_sampled_sweep_are_adjusted_for_the_other_knobs_and_the_seed():
    # elu tried mostly at dropout 0.2 and relu mostly at 0.5, as a Bayesian search might
    sampled = [("elu", 0.2, seed) for seed in (0, 1, 2)] + [("elu", 0.5, 0)]
    sampled += [("relu", 0.5, seed) for seed in (0, 1, 2)] + [("relu", 0.2, 0)]
    effect = {"elu": 0.03, "relu": 0.05}  # relu 2 points worse, dropout 0.5 4 points worse
    specs = []
    for activation, dropout, seed in sampled:
        spec = run(seed, activation, **{"model.dropout": dropout})
        error = effect[activation] + 0.04 * (dropout == 0.5) + 0.003 * seed
        spec["metrics"]["test_error_rate"] = error
        specs.append(spec)
    selection = select(frame(specs))
    table = knob_table(selection.runs, {"activation": "factor", "dropout": "linear"})
    activation = table[table["knob"] == "activation"].set_index("value")
    raw = activation.loc["relu", "error_pct_mean"] - activation.loc["elu", "error_pct_mean"]
    adjusted = activation.loc["relu", "adjusted_mean"] - activation.loc["elu", "adjusted_mean"]
    assert raw == pytest.approx(2.0 + 4.0 * (3 - 1) / 4)  # the dropout mix leaks into raw means
    assert adjusted == pytest.approx(2.0)


def test_knob_adjusted_means_of_a_full_grid_are_the_raw_means():
    specs = activation_sweep(seeds=(0, 1)) + activation_sweep(
        seeds=(0, 1), **{"model.dropout": 0.5}
    )
    selection = select(frame(specs))
    table = knob_table(selection.runs, {"activation": "factor", "dropout": "factor"})
    assert table["adjusted_mean"].to_numpy() == pytest.approx(table["error_pct_mean"].to_numpy())
    assert (table["adjusted_se"] > 0).all()


def knob_table(runs: pd.DataFrame, scales: dict[str, str]) -> pd.DataFrame:
    """The knobs table with the adjusted means of the knob tests on the test error rate."""
    errors = tables.metric_pct(runs, "test")
    _, adjusted = knob_tests.knob_tests(runs, errors, scales)
    return tables.knob_table(runs, list(scales), "val_accuracy", "test", adjusted)


def test_knobs_of_a_phase_that_never_ran_are_not_listed():
    specs = [
        run(seed, stages=("frozen",), **{"fine_tune.epochs": 0, "fine_tune.optimizer": name})
        for name in ("adam", "adamax")
        for seed in (0, 1)
    ]
    selection = select(frame(specs))
    # With fine-tuning off, the short name optimizer is the frozen phase's, which did not vary.
    assert selection.swept == ["fine_tune.optimizer"]
    assert tables.report_knobs(selection.runs, selection.swept) == []
    nothing = tables.knob_table(selection.runs, [], "val_accuracy", "test")
    assert nothing.empty and {"knob", "value", "objective_mean"} <= set(nothing.columns)


def test_inference_table_puts_our_timings_beside_the_paper():
    runs = select(frame([run(seed) for seed in (0, 1)])).runs
    bench = pd.DataFrame(
        [
            {
                "run_id": f"bench-{number}",
                "status": "FINISHED",
                "start_time": pd.Timestamp("2025-01-02", tz="UTC") - pd.Timedelta(hours=number),
                "tags.run_type": "bench",
                "tags.machine": "Test CPU, 2 cores, no GPU",
                "params.image_size": "224",
                "metrics.batch32_ms_per_step": 640.0 + number,
                "metrics.batch32_ms_per_image": 20.0,
                "metrics.batch1_ms_per_step": 45.0,
            }
            for number in range(3)  # newest first, as MLflow lists them
        ]
    )
    table = inference.inference_table(runs, inference.benchmarks(bench), "test", "elu", PAPER)
    assert list(table["source"]) == [PAPER.short] * 4 + ["ours"]
    assert table["bench_run_id"].iloc[4] == "bench-0"  # the latest of one machine and size
    nasnet = table.iloc[3]
    assert nasnet["batch32_ms_per_image"] == pytest.approx(27.5 / 32)
    assert math.isnan(table.iloc[0]["batch32_ms_per_image"])
    ours = table.iloc[4]
    assert ours["accuracy"] == pytest.approx(values(runs, "test_accuracy").mean())
    assert ours["parameters"] == 4_376_022 and ours["data_size"] == 1800
    assert (ours["batch32_ms_per_step"], ours["batch1_ms_per_step"]) == (640.0, 45.0)
    assert ours["machine"] == "Test CPU, 2 cores, no GPU"
    without = inference.inference_table(
        runs, inference.benchmarks(bench.iloc[0:0]), "test", "elu", PAPER
    )
    assert math.isnan(without.iloc[4].get("batch32_ms_per_step", math.nan))


# The whole analysis: edge cases


def test_no_finished_runs_gives_only_the_ledger():
    analysis = analyse("t", frame([run(0, status="FAILED"), run(1, status="KILLED")]), PAPER)
    assert analysis.best is None
    assert set(analysis.tables) == {"runs"}
    assert analysis.selection.excluded == {"failed": 1, "killed": 1}
    empty = analyse("t", pd.DataFrame(columns=["run_id", "status", "start_time"]), PAPER)
    assert empty.best is None and empty.selection.ledger.empty


def test_without_a_test_split_errors_are_reported_on_validation():
    analysis = analyse("t", frame([run(seed, test=False) for seed in (0, 1)]), PAPER)
    assert analysis.split == "val"
    assert analysis.tables["configurations"]["error_split"].iloc[0] == "val"


def test_the_objective_is_checked_and_read_from_the_sweep_run():
    runs = frame(activation_sweep(seeds=(0, 1)))
    with pytest.raises(ReportError, match="objective 'test_accuracy'"):
        analyse("t", runs, PAPER, objective="test_accuracy")
    runs.loc[runs["run_id"] == "sweep-1", "params.tuner.objective"] = "val_loss"
    assert analyse("t", runs, PAPER).objective == "val_loss"


def test_per_image_outcomes_give_the_pooled_interval_and_the_new_images_interval():
    runs = select(frame(activation_sweep(seeds=(0, 1, 2)))).runs
    rng = np.random.default_rng(3)
    files = [f"class/{n}.jpg" for n in range(360)]
    correct = {}
    for row in runs.itertuples():
        rate = float(runs.loc[row.Index, "metrics.test_error_rate"])
        correct[row.run_id] = (rng.random(360) >= rate).astype(int)
    outcomes = tables.Outcomes.from_runs(
        {run_id: outcome_frame(files, flags) for run_id, flags in correct.items()}
    )
    table = tables.activation_table(runs, "test", PAPER, outcomes).set_index("activation")

    def matrix(name):
        chosen = runs[runs["params.activation"] == name].sort_values("seed")
        return np.array([correct[run_id] for run_id in chosen["run_id"]])

    pooled = stats.pooled_rate_spread(1 - matrix("elu"))
    assert table.loc["elu", "error_pct_ci_low"] == pytest.approx(100 * pooled.ci_low)
    assert table.loc["elu", "error_pct_ci_high"] == pytest.approx(100 * pooled.ci_high)
    differences = 100 * ((1 - matrix("sigmoid")) - (1 - matrix("elu")))
    crossed = stats.crossed_interval(differences)
    sigmoid = table.loc["sigmoid"]
    assert sigmoid["new_images_ci_low"] == pytest.approx(crossed.ci_low)
    assert sigmoid["new_images_ci_high"] == pytest.approx(crossed.ci_high)
    assert sigmoid["new_images_df"] == pytest.approx(crossed.df)


def test_the_final_models_test_accuracy_has_one_interval_in_every_table():
    specs = activation_sweep(seeds=(0, 1, 2))
    rng = np.random.default_rng(8)
    files = [f"class/{n}.jpg" for n in range(360)]
    table = frame(specs)
    trials = table[table["tags.run_type"] == "trial"]
    outcomes = tables.Outcomes.from_runs(
        {
            run_id: outcome_frame(files, rng.random(360) >= rate)
            for run_id, rate in zip(
                trials["run_id"], trials["metrics.test_error_rate"], strict=True
            )
        }
    )
    analysis = analyse("t", table, PAPER, outcomes=outcomes)
    best = analysis.tables["configurations"].iloc[0]
    scores = analysis.tables["fine_tune"]  # the final model of every run here
    accuracy = scores[(scores["metric"] == "accuracy") & (scores["split"] == "test")].iloc[0]
    assert (accuracy["ci_low"], accuracy["ci_high"]) == pytest.approx(
        (1 - best["error_rate_ci_high"], 1 - best["error_rate_ci_low"])
    )
    row = (
        analysis.tables["activations"]
        .set_index("activation")
        .loc[analysis.best["params.activation"]]
    )
    assert 100 * (1 - accuracy["ci_high"]) == pytest.approx(row["error_pct_ci_low"])
    frozen = analysis.tables["frozen"]  # not the final model: its own per-seed interval
    earlier = frozen[(frozen["metric"] == "accuracy") & (frozen["split"] == "test")].iloc[0]
    own = stats.rate_spread(values(analysis.best_runs, "frozen_test_accuracy"), [360] * 3)
    assert (earlier["ci_low"], earlier["ci_high"]) == pytest.approx((own.ci_low, own.ci_high))


def test_inference_table_has_a_row_per_runtime_with_the_runtime_named():
    runs = select(frame([run(seed) for seed in (0, 1)])).runs
    bench = pd.DataFrame(
        [
            {
                "run_id": f"bench-{runtime}",
                "status": "FINISHED",
                "start_time": pd.Timestamp("2025-01-02", tz="UTC") + pd.Timedelta(hours=ms),
                "tags.run_type": "bench",
                "tags.machine": "Test CPU, 2 cores, no GPU",
                "tags.runtime": runtime,
                "params.image_size": "224",
                "metrics.batch1_ms_per_step": ms,
            }
            for runtime, ms in (("onnxruntime", 15.0), (None, 36.0), ("openvino", 14.0))
        ]
    )
    ours = inference.inference_table(runs, inference.benchmarks(bench), "test", "elu", PAPER).iloc[
        4:
    ]
    assert list(ours["runtime"]) == ["openvino", "onnxruntime", "tensorflow"]  # oldest first
    assert list(ours["batch1_ms_per_step"]) == [14.0, 15.0, 36.0]
    assert all(
        method.endswith(f", {r}") for method, r in zip(ours["method"], ours["runtime"], strict=True)
    )


def test_a_float_steps_rounding_error_in_logged_params_is_dropped():
    runs = [run(seed, "elu", **{"model.dropout": 0.15000000000000002}) for seed in (0, 1)]
    runs += [run(seed, "elu", **{"model.dropout": 0.3}) for seed in (0, 1)]
    chosen = select(frame(runs))
    assert set(chosen.runs["params.model.dropout"]) == {"0.15", "0.3"}
    assert set(chosen.runs["configuration"]) == {"dropout=0.15", "dropout=0.3"}


def test_a_fine_tuning_cut_is_named_in_the_summary_and_table_4():
    cut = {"fine_tune.trainable": {"from": "normal_9"}, "fine_tune.batch_norm": "frozen"}
    for settings, named in (({}, False), (cut, True)):
        analysis = analyse("t", frame(activation_sweep(**settings)), paper.load())
        report = document.compose(analysis, document.BestRunDetails({}, None, 0), paper.load())
        text = markdown(report.blocks)
        phrase = "the cells from normal_9 up and the head trained on cached activations"
        assert (f"Fine-tuning: phase 2 (fine-tuning: {phrase}" in text) is named
        assert ("batch norms frozen" in text) is named
        assert ("fine-tuning: everything trained" in text) is not named


def test_a_difference_that_is_the_same_in_every_seed_is_shown_without_a_test():
    specs = activation_sweep(seeds=(0, 1, 2))
    elu = {
        spec["tags"]["seed"]: spec for spec in specs if spec["params"]["model.activation"] == "elu"
    }
    for spec in specs:
        if spec["params"]["model.activation"] == "relu":
            same_seed = elu[spec["tags"]["seed"]]["metrics"]["test_error_rate"]
            spec["metrics"]["test_error_rate"] = same_seed + 0.02
    analysis = analyse("t", frame(specs), paper.load())
    relu = analysis.tables["configurations"].set_index("configuration").loc["activation=relu"]
    assert relu["difference_pct"] == pytest.approx(2.0)
    assert math.isnan(relu["difference_ci_low"])
    assert relu["p_permutation"] == pytest.approx(2 / 2**3)  # the sign-flip test still runs
    text = markdown(document.compose(analysis, document.BestRunDetails({}, None, 0), PAPER).blocks)
    assert "+2.00 (the same in all 3 shared seeds: no interval)" in text
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)


def test_fine_tuning_gain_pairs_each_run_with_its_own_frozen_phase():
    shifts = {0: 0.01, 1: 0.02, 2: -0.005, 3: 0.0}  # test accuracy gained by fine-tuning
    specs = activation_sweep()
    for spec in specs:
        scores = spec["metrics"]
        seed = int(spec["tags"]["seed"])
        scores["fine_tune_test_accuracy"] = scores["frozen_test_accuracy"] + shifts[seed]
    runs = select(frame(specs)).runs
    elu = runs[runs["params.model.activation"] == "elu"]
    gain = phase_scores.fine_tuning_gain(elu, "test").set_index("split")

    differences = 100 * np.array([shifts[seed] for seed in elu["seed"]])
    exact = scipy_stats.permutation_test(
        (differences,), np.mean, permutation_type="samples", n_resamples=np.inf
    )
    interval = scipy_stats.ttest_1samp(differences, 0).confidence_interval(0.95)
    test = gain.loc["test"]
    assert (test["pairs"], test["higher"], test["level"], test["lower"]) == (4, 2, 1, 1)
    assert test["difference_pct"] == pytest.approx(differences.mean())
    assert test["p_permutation"] == pytest.approx(exact.pvalue)
    assert (test["difference_ci_low"], test["difference_ci_high"]) == pytest.approx(
        (interval.low, interval.high)
    )
    assert test["frozen_mean"] == pytest.approx(100 * values(elu, "frozen_test_accuracy").mean())
    val = gain.loc["val"]  # fine-tuning gains the same in every seed here, and val is not tested
    assert (val["higher"], val["lower"]) == (4, 0) and math.isnan(val["p_permutation"])
    assert phase_scores.fine_tuning_gain(
        select(frame(activation_sweep(stages=("frozen",)))).runs, "test"
    ).empty

    analysis = analyse("t", frame(specs), paper.load())
    text = markdown(document.compose(analysis, document.BestRunDetails({}, None, 0), PAPER).blocks)
    assert "Did fine-tuning help?" in text and "`table4_fine_tuning_gain.csv`" in text


# Before a winner: the omnibus test, the confidence set for the best, power


def report_text(specs: list[dict]) -> tuple[str, object]:
    analysis = analyse("t", frame(specs), PAPER)
    blocks = document.compose(analysis, document.BestRunDetails({}, None, 0), PAPER).blocks
    return markdown(blocks), analysis


def without_effect(seeds=(0, 1, 2, 3, 4, 5)) -> list[dict]:
    """Every activation's test error drawn from one distribution: no configuration effect."""
    rng = np.random.default_rng(11)
    specs = activation_sweep(seeds=seeds)
    for spec in specs:
        spec["metrics"]["test_error_rate"] = 0.05 + rng.normal(0, 0.01)
    return specs


def test_a_sweep_without_an_effect_reads_no_detectable_difference_and_names_the_best():
    text, analysis = report_text(without_effect())
    gate = analysis.tables["omnibus"].set_index("role").loc["primary"]
    errors = 100 * analysis.selection.runs.pivot_table(
        index="seed", columns="configuration", values="metrics.test_error_rate"
    )
    assert gate["quantity"] == "test_error_pct"
    assert gate["f_statistic"] == pytest.approx(stats.omnibus(errors.to_numpy()).f_statistic)
    assert not gate["rejects"] and gate["p_permutation"] >= 0.05
    family = analysis.tables["family"]
    assert (family["grade"] != "detectable").all()
    widest = family[["difference_ci_low", "difference_ci_high"]].abs().to_numpy().max()
    verdict = text[text.index("## Verdict") : text.index("## Summary")]
    assert "**No detectable difference** among the 4 configurations in test error rate" in verdict
    assert f"within ±{widest:.2f} points" in verdict
    assert "not beaten: all 4" in verdict
    assert "verdict.png" in verdict  # the per-seed differences open the report
    summary = text[text.index("## Summary") : text.index("## How the numbers")]
    best = analysis.tables["configurations"]["configuration"].iloc[0]
    assert summary.index("No detectable difference") < summary.index("Best (registered)")
    assert f"Best (registered): **{best}**" in summary
    assert "The configurations differ" not in text


def test_a_sweep_with_a_real_effect_names_who_is_worse_and_the_not_beaten_set():
    text, analysis = report_text(activation_sweep(seeds=tuple(range(8))))
    gate = analysis.tables["omnibus"].set_index("role").loc["primary"]
    assert gate["rejects"] and gate["p_permutation"] < 0.001
    found = analysis.tables["not_beaten"]
    assert list(found["setting"][found["not_beaten"]]) == ["activation=elu"]
    # every seed of the others is worse than elu: the two-sided sign-flip p is 2 / 2^8
    family = analysis.tables["family"]
    assert family["p_permutation"].to_numpy() == pytest.approx([2 / 256] * 3)
    verdict = text[text.index("## Verdict") : text.index("## Summary")]
    assert "**The configurations differ** in test error rate" in verdict
    assert "activation=tanh is worse than activation=elu by +" in verdict
    assert "not beaten: 1 of 4 (activation=elu)" in verdict
    assert "No detectable difference" not in text
    assert "## The question and its answer" in text and "`comparisons.csv`" in text


def test_three_seeds_cannot_detect_anything():
    text, analysis = report_text(activation_sweep(seeds=(0, 1, 2)))
    # 2 / 2^3 is above 0.05 whatever the data: nothing is detectable, nothing beaten
    assert analysis.tables["not_beaten"]["not_beaten"].all()
    assert (analysis.tables["family"]["grade"] == "none").all()
    assert math.isinf(analysis.tables["power"]["minimum_detectable_pct"].iloc[0])
    assert "with 3 seeds no difference is detectable" in text


def test_power_is_for_the_declared_test_and_stated():
    text, analysis = report_text(without_effect(seeds=tuple(range(8))))
    family = analysis.tables["family"]
    power = analysis.tables["power"].iloc[0]
    std = math.sqrt((family["difference_std"] ** 2).mean())
    level = 0.05 / len(family)
    assert power["difference_std"] == pytest.approx(std)
    assert power["pairs"] == 8 and power["test_alpha"] == pytest.approx(level)
    assert power["minimum_detectable_pct"] == pytest.approx(
        stats.minimum_detectable_difference(std, 8, level)
    )
    assert power["seeds_for_target"] == stats.seeds_needed(0.5, std, level)
    summary = text[text.index("## Summary") : text.index("## How the numbers")]
    assert (
        f"detects over these 8 seeds with 80% power is "
        f"{power['minimum_detectable_pct']:.2f} points" in summary
    )
    assert f"0.5 points would need {int(power['seeds_for_target'])} seeds" in summary
