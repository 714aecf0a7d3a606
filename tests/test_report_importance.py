"""Which knob matters: a runs table where only dropout moves the objective must rank dropout
first with the other knobs near zero, in the tables, the report and the MLflow metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm

from study import config
from study.report import document, importance, paper, tables
from study.report.analysis import TABLE_FILES, analyse
from study.report.build import build_report, say_importance, sweep_importance
from study.report.render import markdown
from study.report.selection import select
from study.tracking.store import Store
from study.tuning.summary import SweepSummary
from tests.test_report_build import populate
from tests.test_report_tables import frame, run

PAPER = paper.load()
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    """Two activations x three dropouts x two head widths x three seeds; the validation
    accuracy depends on dropout, plus a small wobble per seed shared by every configuration."""
    specs = [
        run(seed, activation, **{"model.dropout": dropout, "model.head_width": width})
        for activation, dropout, width, seed in itertools.product(
            ("elu", "relu"), (0.1, 0.3, 0.5), (32, 128), SEEDS
        )
    ]
    table = frame(specs)
    trials = table["tags.run_type"] == "trial"
    dropout = pd.to_numeric(table.loc[trials, "params.dropout"])
    seed = pd.to_numeric(table.loc[trials, "params.seed"])
    table.loc[trials, "metrics.val_accuracy"] = 0.95 - 0.3 * dropout + 0.004 * (seed - 1)
    return table


@pytest.fixture(scope="module")
def analysis(runs):
    return analyse("t", runs, PAPER)


def test_only_the_knob_that_moves_the_objective_matters(runs, analysis):
    table = analysis.tables["importance"]
    assert list(table["knob"])[0] == "dropout"
    assert set(table["knob"]) == {"activation", "dropout", "head_width"}
    ranked = table.set_index("knob")
    assert ranked.loc["dropout", "importance"] > 0.8
    for knob in ("activation", "head_width"):
        assert ranked.loc[knob, "importance"] < 0.05
    assert set(table["seeds"]) == {len(SEEDS)}
    assert not {"p_permutation", "share_of_runs"} & set(table.columns)  # described, not tested
    # A balanced design: the configurations' and the seeds' sums of squares about the mean.
    trials = runs[runs["tags.run_type"] == "trial"]
    score = pd.to_numeric(trials["metrics.val_accuracy"])
    grand = score.mean()
    configuration = trials[["params.activation", "params.dropout", "params.head_width"]].agg(
        " ".join, axis=1
    )
    by_configuration = score.groupby(configuration).mean()
    by_seed = score.groupby(trials["params.seed"]).mean()
    total = ((score - grand) ** 2).sum()
    configurations_share = len(SEEDS) * ((by_configuration - grand) ** 2).sum() / total
    seed_share = len(by_configuration) * ((by_seed - grand) ** 2).sum() / total
    assert table["configurations_share"].to_numpy() == pytest.approx([configurations_share] * 3)
    assert table["seed_share"].to_numpy() == pytest.approx([seed_share] * 3)
    interactions = analysis.tables["interactions"]
    assert len(interactions) == 3  # every pair of three knobs
    assert (interactions["interaction_share"] < 0.05).all()
    dependence = analysis.tables["partial_dependence"]
    curve = dependence[dependence["knob"] == "dropout"].sort_values("value")["objective"]
    assert curve.is_monotonic_decreasing and curve.iloc[0] - curve.iloc[-1] > 0.08


def test_report_shows_the_section_and_rebuilds_identically(runs, analysis):
    details = document.BestRunDetails({}, None, 0)
    report = document.compose(analysis, details, PAPER)
    again = document.compose(analyse("t", runs, PAPER), details, PAPER)
    text = markdown(report.blocks)
    assert "## Which knob matters" in text
    assert "fANOVA" in text and "Friedman's H" in text
    assert "Described, not tested (secondary)" in text
    assert "of the run-to-run variance of the objective" in text
    assert "type-II F test" in text  # each knob's test comes first
    for name in ("importance", "interactions", "partial_dependence"):
        assert report.csv[TABLE_FILES[name]].equals(again.csv[TABLE_FILES[name]])
    expected = {f"importance_{k}.png" for k in ("activation", "dropout", "head_width")}
    assert expected | {"importance_pair.png"} <= set(report.figures)
    assert all(report.figures[name] == again.figures[name] for name in expected)


def test_metrics_for_the_parent_run(analysis):
    found = importance.importance_metrics(analysis.tables["importance"])
    assert set(found) == {f"importance.{knob}" for knob in ("activation", "dropout", "head_width")}
    assert found["importance.dropout"] > found["importance.head_width"]


def test_no_section_when_fewer_than_two_knobs_varied():
    specs = [run(seed, "elu", **{"model.dropout": d}) for d in (0.1, 0.5) for seed in SEEDS]
    analysis = analyse("t", frame(specs), PAPER)
    assert "importance" not in analysis.tables
    report = document.compose(analysis, document.BestRunDetails({}, None, 0), PAPER)
    assert "Which knob matters" not in markdown(report.blocks)


def test_phase_knobs_follow_the_phase_that_ran():
    frozen_only = config.validate({"name": "t", "fine_tune": {"epochs": 0}})
    assert frozen_only.knob_keys()["optimizer"] == "frozen.optimizer"
    assert frozen_only.knob_keys()["decay_rate"] == "frozen.decay_rate"
    both = config.validate({"name": "t", "fine_tune": {"epochs": 2}})
    assert both.knob_keys()["optimizer"] == "fine_tune.optimizer"
    specs = [
        run(seed, "elu", stages=("frozen",), **{"frozen.optimizer": o, "frozen.decay_rate": d})
        for o, d, seed in itertools.product(("adam", "adamax"), (0.0, 0.05), SEEDS)
    ]
    selection = select(frame(specs))
    assert selection.swept == ["optimizer", "decay_rate"]  # frozen.* named once, short
    assert tables.report_knobs(selection.runs, selection.swept) == ["optimizer", "decay_rate"]
    logged = selection.runs
    assert (logged["params.optimizer"] == logged["params.frozen.optimizer"]).all()


def dropout_sweep(tmp_path) -> tuple[Store, str]:
    """A logged sweep of activation x dropout x 2 seeds in which only dropout matters; the store
    and the sweep's parent run."""
    store = Store(f"sqlite:///{tmp_path}/m.db")
    specs = [
        run(seed, activation, **{"model.dropout": dropout})
        for activation, dropout, seed in itertools.product(("elu", "relu"), (0.1, 0.5), (0, 1))
    ]
    for spec in specs:
        spec["metrics"]["val_accuracy"] = 0.95 - 0.3 * spec["params"]["model.dropout"]
    parent = populate(store, "knobs", specs)
    return store, parent


def test_report_and_sweep_log_importance_on_the_parent_run(tmp_path):
    store, parent = dropout_sweep(tmp_path)
    build_report("knobs", store, tmp_path / "reports")
    logged = store.get_run(parent).metrics
    table = sweep_importance(store, store.runs(store.experiment("knobs")), parent, "val_accuracy")
    expected = importance.importance_metrics(table)
    assert set(expected) == {k for k in logged if k.startswith("importance.")}
    assert logged == pytest.approx(logged | expected)
    assert (tmp_path / "reports" / "knobs" / TABLE_FILES["importance"]).is_file()


def test_the_sweep_command_logs_and_says_the_importance_after_the_sweep(tmp_path):
    store, parent = dropout_sweep(tmp_path)
    said = []
    experiment = store.experiment("knobs")
    summary = SweepSummary(parent, experiment, store.runs(experiment))
    say_importance(store, summary, "val_accuracy", said.append)
    logged = store.get_run(parent).metrics
    table = sweep_importance(store, summary.runs, parent, "val_accuracy")
    assert {k for k in logged if k.startswith("importance.")} == set(
        importance.importance_metrics(table)
    )
    assert said == [
        "importance of each knob (fANOVA share of a forest's variance; the knob tests are the "
        "report's): " + ", ".join(f"{row.knob} {row.importance:.3f}" for row in table.itertuples())
    ]


def test_importance_does_not_move_when_the_store_returns_the_runs_in_another_order(runs, analysis):
    shuffled = runs.sample(frac=1.0, random_state=5).reset_index(drop=True)
    again = analyse("t", shuffled, PAPER)
    for name in ("importance", "interactions", "partial_dependence"):
        pd.testing.assert_frame_equal(again.tables[name], analysis.tables[name])


def test_a_hundred_configurations_find_the_knob_and_rebuild_identically_in_any_order():
    """300 runs (100 configurations of five knobs x three seeds, like search_spaces/study.yaml)
    where dropout moves the objective most and head width a little: a fit of unbounded trees took
    14 s on as many runs, and trees fitted to 100 configurations all reach the depth bound."""
    rng = np.random.default_rng(0)
    configurations = 100
    knobs = {
        "activation": rng.choice(["elu", "relu", "tanh", "sigmoid"], configurations),
        "dropout": rng.integers(0, 13, configurations) * 0.05,
        "head_width": 2 * np.round(np.exp(rng.uniform(np.log(8), np.log(512), configurations))),
        "optimizer": rng.choice(["adam", "adamax"], configurations),
        "decay_rate": rng.integers(0, 21, configurations) * 0.01,
    }
    effect = 0.95 - 0.3 * knobs["dropout"] + 0.01 * np.log2(knobs["head_width"])
    runs = pd.DataFrame(
        [
            {
                "seed": seed,
                "configuration": f"c{index}",
                **{f"params.{knob}": str(values[index]) for knob, values in knobs.items()},
                "metrics.val_accuracy": effect[index] + 0.004 * (seed - 1) + rng.normal(0, 0.01),
            }
            for index in range(configurations)
            for seed in SEEDS
        ]
    )
    found = importance.start_importance(runs, list(knobs), "val_accuracy")()
    table = found["importance"].set_index("knob")
    assert list(table.index[:2]) == ["dropout", "head_width"]
    assert table.loc["dropout", "importance"] > 0.5
    for knob in ("activation", "optimizer", "decay_rate"):
        assert table.loc[knob, "importance"] < 0.05
    assert set(table["runs"]) == {3 * configurations}
    shuffled = runs.sample(frac=1.0, random_state=5).reset_index(drop=True)
    again = importance.start_importance(shuffled, list(knobs), "val_accuracy")()
    for name in ("importance", "interactions", "partial_dependence"):
        pd.testing.assert_frame_equal(again[name], found[name])


def test_variance_shares_are_the_type_ii_anova_when_seeds_are_missing():
    """Configurations and seeds explain the same shares as statsmodels' type II ANOVA of the
    additive model, also when some configurations lack a seed (an unbalanced design)."""
    rng = np.random.default_rng(1)
    runs = pd.DataFrame(
        [
            {"configuration": f"c{c}", "seed": seed, "y": 0.01 * c + 0.02 * seed}
            for c in range(8)
            for seed in SEEDS
        ]
    ).drop(index=[1, 5, 14])
    runs["y"] += rng.normal(0, 0.01, len(runs))
    found = importance.variance_shares(runs, runs["y"].to_numpy())
    frame = runs.assign(seed=runs["seed"].astype(str))
    table = anova_lm(smf.ols("y ~ C(configuration) + C(seed)", frame).fit(), typ=2)
    total = ((runs["y"] - runs["y"].mean()) ** 2).sum()
    assert found["configurations"] == pytest.approx(table.loc["C(configuration)", "sum_sq"] / total)
    assert found["seed"] == pytest.approx(table.loc["C(seed)", "sum_sq"] / total)
