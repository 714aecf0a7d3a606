"""Dodge et al.'s expected maximum against brute force, its limits, and the per-activation table
and figure on a hand-built `mlflow.search_runs` frame."""

from __future__ import annotations

import collections
import itertools

import numpy as np
import pandas as pd
import pytest

from study import config
from study.report.expected_max import expected_max, expected_max_figure, expected_max_table

from .conftest import REPO

SAMPLE = [0.91, 0.87, 0.95, 0.87, 0.80]  # a tie at 0.87


def brute_force(values: list[float], n: int) -> tuple[float, float]:
    """Mean and variance of the maximum over every n-tuple of the values, each equally likely:
    exactly n draws with replacement from their empirical distribution."""
    maxima = np.array([max(draw) for draw in itertools.product(values, repeat=n)])
    return maxima.mean(), maxima.var()


@pytest.mark.parametrize("values", [SAMPLE, [0.3, 0.1, 0.4, 0.15, 0.9]])
def test_matches_brute_force(values):
    found = expected_max(values, np.arange(1, 4))
    exact = np.array([brute_force(values, n) for n in (1, 2, 3)])
    np.testing.assert_allclose(found.mean, exact[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(found.variance, exact[:, 1], rtol=0, atol=1e-12)


def test_one_draw_is_the_mean_and_the_population_variance():
    found = expected_max(SAMPLE, np.array([1]))
    assert found.mean[0] == pytest.approx(np.mean(SAMPLE), abs=1e-12)
    assert found.variance[0] == pytest.approx(np.var(SAMPLE), abs=1e-12)


def test_non_decreasing_in_the_budget_towards_the_sample_best():
    values = np.random.default_rng(0).beta(20, 2, size=40)
    found = expected_max(values, np.arange(1, 201))
    assert (np.diff(found.mean) >= -1e-15).all()
    assert found.mean[-1] <= values.max()
    far = expected_max(values, np.array([100_000]))
    assert far.mean[0] == pytest.approx(values.max(), abs=1e-12)
    assert far.variance[0] == pytest.approx(0.0, abs=1e-12)


def test_ties_share_one_step_of_the_cdf():
    # Two of three scores are 1: the best of n is 1 with chance (2/3)^n, else 2.
    n = np.arange(1, 6)
    low = (2 / 3) ** n
    found = expected_max([1.0, 2.0, 1.0], n)
    np.testing.assert_allclose(found.mean, low + 2 * (1 - low), atol=1e-12)
    np.testing.assert_allclose(found.variance, low * (1 - low), atol=1e-12)
    same = expected_max([0.9] * 4, n)
    np.testing.assert_allclose(same.mean, 0.9, atol=1e-15)
    np.testing.assert_allclose(same.variance, 0.0, atol=1e-15)


def test_variance_keeps_its_digits_near_one():
    # Scores a hair apart near 1: E[max^2] - E[max]^2 would lose them to cancellation.
    values = 0.999 + 1e-9 * np.array([0.0, 1.0, 2.0, 3.0])
    found = expected_max(values, np.array([1, 2]))
    exact = np.array([brute_force(list(values), n)[1] for n in (1, 2)])
    np.testing.assert_allclose(found.variance, exact, rtol=1e-6)


@pytest.mark.parametrize(
    "values, budgets",
    [([], [1]), ([0.5, np.nan], [1]), ([0.5], [0]), ([0.5], [1.5]), ([[0.5]], [1])],
)
def test_rejects_what_it_cannot_estimate(values, budgets):
    with pytest.raises(ValueError):
        expected_max(values, np.asarray(budgets))


def runs_frame(rows: list[tuple[str, str, int, float]], objective: str = "val_accuracy"):
    """Counted runs: (activation, configuration, seed, objective) each."""
    return pd.DataFrame(
        {
            "run_id": [f"run-{i}" for i in range(len(rows))],
            "params.activation": [row[0] for row in rows],
            "configuration": [row[1] for row in rows],
            "seed": [row[2] for row in rows],
            f"metrics.{objective}": [row[3] for row in rows],
        }
    )


def test_table_per_activation_with_leader():
    # elu: steady, relu: one lucky configuration among poor ones; relu's missing score drops.
    runs = runs_frame(
        [
            ("elu", "a", 0, 0.89),
            ("elu", "b", 0, 0.90),
            ("elu", "c", 0, 0.91),
            ("relu", "d", 0, 0.80),
            ("relu", "e", 0, 0.81),
            ("relu", "f", 0, 0.99),
            ("relu", "g", 0, np.nan),
            ("tanh", "h", 0, 0.85),
            ("tanh", "i", 0, 0.86),
            ("tanh", "j", 0, 0.87),
            ("tanh", "k", 0, 0.88),
        ]
    )
    table = expected_max_table(runs, "val_accuracy")
    assert list(table["group"].unique()) == ["elu", "relu", "tanh"]
    assert table.groupby("group")["budget"].max().to_dict() == {"elu": 3, "relu": 3, "tanh": 4}
    assert (table["draws"] == table["group"].map({"elu": 3, "relu": 3, "tanh": 4})).all()
    assert (table["draw"] == "run").all()
    assert (table["knob"] == "activation").all()
    relu = table[table["group"] == "relu"]
    found = expected_max([0.80, 0.81, 0.99], np.arange(1, 4))
    np.testing.assert_allclose(relu["expected_max"], found.mean)
    np.testing.assert_allclose(relu["variance"], found.variance)
    np.testing.assert_allclose(relu["std"], np.sqrt(found.variance))
    # One trial: elu's mean 0.90 beats relu's 0.867; from two, relu's lucky one wins.
    leaders = table.drop_duplicates("budget").set_index("budget")["leader"]
    assert leaders.loc[1] == "elu"
    assert leaders.loc[2] == leaders.loc[3] == "relu"
    assert pd.isna(leaders.loc[4])  # only tanh has four draws


def test_table_draws_are_configuration_means_over_seeds():
    runs = runs_frame(
        [
            ("elu", "a", 0, 0.90),
            ("elu", "a", 1, 0.94),
            ("elu", "b", 0, 0.80),
            ("elu", "b", 1, 0.84),
            ("relu", "c", 0, 0.70),
            ("relu", "c", 1, 0.72),
            ("relu", "d", 0, 0.60),
        ]
    )
    table = expected_max_table(runs, "val_accuracy")
    elu = table[table["group"] == "elu"]
    np.testing.assert_allclose(elu["expected_max"], expected_max([0.92, 0.82], [1, 2]).mean)
    assert (elu["draws"] == 2).all()
    assert set(table["draw"]) == {"mean of 2 seeds", "mean of 1-2 seeds"}


def test_table_for_an_objective_to_minimise_expects_the_lowest():
    runs = runs_frame(
        [("elu", "a", 0, 0.3), ("elu", "b", 0, 0.1), ("relu", "c", 0, 0.15)], "val_loss"
    )
    table = expected_max_table(runs, "val_loss")
    elu = table[table["group"] == "elu"]
    minimum = -expected_max([-0.3, -0.1], [1, 2]).mean
    np.testing.assert_allclose(elu["expected_max"], minimum)
    assert elu["expected_max"].iloc[1] < elu["expected_max"].iloc[0]
    assert table.set_index(["group", "budget"]).loc[("elu", 1), "leader"] == "relu"


def test_table_and_figure_without_scores():
    runs = runs_frame([("elu", "a", 0, np.nan)])
    table = expected_max_table(runs, "val_accuracy")
    assert table.empty
    assert expected_max_figure(table, "val_accuracy").startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="unknown objective"):
        expected_max_table(runs, "accuracy")


def test_figure_is_the_same_png_every_time():
    runs = runs_frame([("elu", "a", 0, 0.9), ("elu", "b", 0, 0.8), ("relu", "c", 0, 0.85)])
    table = expected_max_table(runs, "val_accuracy")
    first = expected_max_figure(table, "val_accuracy")
    assert first.startswith(b"\x89PNG")
    assert first == expected_max_figure(table, "val_accuracy")
    assert b"Software" not in first and b"matplotlib" not in first.lower()


def test_random_search_gives_every_activation_enough_draws(tmp_path):
    """The draws search_spaces/random_search.yaml's comments quote: the random oracle's
    proposals do not depend on scores, so its seed fixes them."""
    from study.tuning import keras_tuner_adapter, tuner

    study = config.load(REPO / "search_spaces" / "random_search.yaml")
    oracle = tuner.make_oracle(study)
    keras_tuner_adapter.open_project(oracle, str(tmp_path), "project")
    drawn = collections.Counter()
    while (trial := oracle.create_trial("tuner0")).status == "RUNNING":
        drawn[trial.hyperparameters.values["model.activation"]] += 1
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert drawn == {"elu": 28, "relu": 25, "tanh": 37, "sigmoid": 30}


def test_a_random_search_report_shows_the_curve_and_a_bayesian_one_does_not():
    from study.report import document, paper
    from study.report.analysis import analyse
    from study.report.render import markdown

    from .test_report_tables import frame, run

    rng = np.random.default_rng(2)
    specs = [
        run(0, name, **{"model.dropout": float(dropout)})
        for name in ("elu", "relu", "tanh", "sigmoid")
        for dropout in rng.choice(np.arange(0.0, 0.6, 0.05), 5, replace=False).round(2)
    ]
    runs = frame(specs)
    parent = runs["run_id"] == "sweep-1"
    runs.loc[parent, "params.tuner.oracle"] = "random"
    reference = paper.load()
    analysis = analyse("t", runs, reference)
    table = analysis.tables["expected_max"]
    assert set(table["group"]) == {"elu", "relu", "tanh", "sigmoid"}
    report = document.compose(analysis, document.BestRunDetails({}, None, 0), reference)
    text = markdown(report.blocks)
    assert "## Expected best score against the search budget" in text
    assert "Expected to lead:" in text and "expected_max.png" in report.figures
    runs.loc[parent, "params.tuner.oracle"] = "bayesian"  # proposals are not i.i.d. draws
    assert "expected_max" not in analyse("t", runs, reference).tables
