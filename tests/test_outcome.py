"""The study's outcome rules (`study.tracking.outcome`) on hand-built `mlflow.search_runs`
frames, and the sweep's summary and the report naming the same winner when two configurations
tie on the mean objective."""

from __future__ import annotations

from types import SimpleNamespace

import keras_tuner as kt
import pandas as pd
import pytest

from study import config
from study.report import paper
from study.report.analysis import analyse
from study.tracking import outcome
from study.tracking.store import Store
from study.tuning.sweep import Sweep
from tests.test_report_build import populate
from tests.test_report_tables import frame, run


def scored(values: dict[tuple[str, int], float | None]) -> list[dict]:
    """One trial run per (activation, seed) with the given validation accuracy (None: the run
    did not log it)."""
    specs = []
    for (activation, seed), value in values.items():
        spec = run(seed, activation)
        spec["metrics"].pop("val_accuracy")
        if value is not None:
            spec["metrics"]["val_accuracy"] = value
        specs.append(spec)
    return specs


def counted(specs: list[dict]) -> pd.DataFrame:
    return outcome.counted_runs(frame(specs), "sweep-1").runs


def pairs(runs: pd.DataFrame) -> list[tuple[str, int]]:
    return sorted(zip(runs["params.activation"], runs["seed"], strict=True))


# Which runs count


def test_only_the_finished_runs_of_the_sweep_count():
    specs = [run(0, "elu"), run(1, "elu"), run(0, "relu")]
    specs += [run(1, "relu", status="FAILED"), run(2, status="KILLED"), run(3, status="RUNNING")]
    specs += [run(0, parent=None, run_type="train"), run(4, parent="older-sweep")]
    found = outcome.counted_runs(frame(specs), "sweep-1")
    assert pairs(found.runs) == [("elu", 0), ("elu", 1), ("relu", 0)]
    assert len(found.scope) == 6 and found.outside == 2
    assert found.swept == ["activation"] and found.budget is None
    assert set(found.runs["configuration"]) == {"activation=elu", "activation=relu"}


def test_of_a_repeated_configuration_and_seed_the_latest_run_counts():
    first, repeat = run(0), run(0)
    repeat["metrics"]["val_accuracy"] = 0.5
    found = counted([first, run(1), repeat])
    assert pairs(found) == [("elu", 0), ("elu", 1)]
    assert found.loc[found["seed"] == 0, "metrics.val_accuracy"].item() == 0.5
    assert set(found["configuration"]) == {outcome.ONE_CONFIGURATION}


def test_without_a_sweep_every_finished_trial_and_train_run_counts():
    specs = [run(0, "elu", parent=None, run_type="train"), run(0, "relu", parent=None)]
    specs += [run(1, "relu", parent=None, status="FAILED")]
    found = outcome.counted_runs(frame(specs, parent=None), None)
    assert pairs(found.runs) == [("elu", 0), ("relu", 0)] and found.outside == 0


# Hyperband's final budget


def test_hyperband_compares_the_runs_of_its_final_budget_only():
    specs = [run(0, "elu", **{"frozen.epochs": 2}), run(0, "relu", **{"frozen.epochs": 6})]
    specs += [run(0, "tanh", status="FAILED", **{"frozen.epochs": 18})]
    table = frame(specs)
    grid = outcome.counted_runs(table, "sweep-1")
    assert grid.budget is None and pairs(grid.runs) == [("elu", 0), ("relu", 0)]
    table.loc[table["run_id"] == "sweep-1", "params.tuner.oracle"] = "hyperband"
    hyperband = outcome.counted_runs(table, "sweep-1")
    assert hyperband.budget == 6  # the failed run's larger budget is no final budget
    assert pairs(hyperband.runs) == [("relu", 0)]
    assert list(outcome.at_budget(hyperband.scope, 6)) == [False, True, False]


def test_other_oracles_have_no_final_budget():
    runs = frame([run(0, **{"frozen.epochs": 2}), run(1, **{"frozen.epochs": 6})])
    assert outcome.final_budget(runs, "random") is None
    assert outcome.final_budget(runs, None) is None
    assert outcome.final_budget(runs, "hyperband") == 6
    assert outcome.at_budget(runs, None).all()


# The best configuration


def test_configurations_rank_on_the_seeds_they_all_finished():
    # elu is better over its own three seeds, relu over the two seeds both finished.
    runs = counted(
        scored(
            {
                ("elu", 0): 0.9,
                ("elu", 1): 0.9,
                ("elu", 2): 0.99,
                ("relu", 0): 0.92,
                ("relu", 1): 0.92,
            }
        )
    )
    ranked = outcome.ranking(runs, "val_accuracy")
    assert list(ranked["configuration"]) == ["activation=relu", "activation=elu"]
    assert list(ranked["ranked_on_seeds"]) == ["0 1", "0 1"]
    assert list(ranked["n"]) == [2, 3]
    assert ranked["objective_mean"].tolist() == pytest.approx([0.92, 0.9])
    assert outcome.best_configuration(runs, "val_accuracy") == "activation=relu"


def test_a_tie_goes_to_more_seeds_then_to_the_first_label_in_any_run_order():
    more_seeds = {("elu", 0): 0.9, ("elu", 1): 0.92, ("relu", 0): 0.92, ("relu", 1): 0.9}
    same_seeds = dict(more_seeds)
    more_seeds[("relu", 2)] = 0.5  # not a seed elu finished: it does not move relu's mean
    assert outcome.best_configuration(counted(scored(more_seeds)), "val_accuracy") == (
        "activation=relu"
    )
    for order in (same_seeds, dict(reversed(same_seeds.items()))):
        assert outcome.best_configuration(counted(scored(order)), "val_accuracy") == (
            "activation=elu"
        )


def test_a_configuration_without_the_objective_ranks_last_and_is_never_best():
    runs = counted(scored({("elu", 0): None, ("relu", 0): 0.5}))
    ranked = outcome.ranking(runs, "val_accuracy")
    assert list(ranked["configuration"]) == ["activation=relu", "activation=elu"]
    assert outcome.best_configuration(counted(scored({("elu", 0): None})), "val_accuracy") is None
    assert outcome.best_configuration(counted([]), "val_accuracy") is None


def test_a_minimised_objective_ranks_lowest_first():
    runs = counted(scored({("elu", 0): 0.9, ("relu", 0): 0.8}))
    runs["metrics.val_loss"] = 1 - runs["metrics.val_accuracy"]
    assert outcome.best_configuration(runs, "val_loss") == "activation=elu"
    runs["metrics.val_loss"] = runs["metrics.val_accuracy"]
    assert outcome.best_configuration(runs, "val_loss") == "activation=relu"


# The median-seed run


@pytest.mark.parametrize(
    ("scores", "median_seed"),
    [
        ({0: 0.9, 1: 0.95, 2: 0.8}, 0),
        ({0: 0.9, 1: 0.95, 2: 0.8, 3: 0.85}, 0),  # even count: the lower median, best first
        ({0: 0.95, 1: 0.9, 2: 0.8, 3: 0.9}, 1),  # a tie: the lowest seed
        ({0: 0.9, 1: None, 2: 0.8}, 0),  # a run without the objective is no median
    ],
)
def test_the_median_run_is_the_lower_median_best_first(scores, median_seed):
    runs = counted(scored({("elu", seed): value for seed, value in scores.items()}))
    assert outcome.median_run(runs, "val_accuracy")["seed"] == median_seed


def test_the_median_run_of_a_minimised_objective_counts_from_the_lowest():
    runs = counted(scored({("elu", seed): 0.1 * (seed + 1) for seed in range(4)}))
    runs["metrics.val_loss"] = runs["metrics.val_accuracy"]
    assert outcome.median_run(runs, "val_loss")["seed"] == 1  # 0.1, [0.2], 0.3, 0.4
    assert outcome.median_run(runs, "val_accuracy")["seed"] == 2  # 0.4, [0.3], 0.2, 0.1


# The sweep's summary and the report agree


def test_the_sweep_summary_and_the_report_name_the_same_winner_on_a_tie(tmp_path):
    """elu and relu tie at 0.91 over seeds 0 and 1; relu also finished seed 2. The sweep's
    summary (from the logged runs and its oracle's trials) and the report (from the same
    store) must both name relu, with the same mean."""
    scores = {("elu", 0): 0.9, ("elu", 1): 0.92, ("relu", 0): 0.92, ("relu", 1): 0.9}
    scores[("relu", 2)] = 0.91
    specs = scored(scores)
    trials = {}
    for number, ((activation, seed), value) in enumerate(scores.items()):
        specs[number]["tags"]["trial_id"] = str(number)
        space = kt.HyperParameters()
        space.Fixed("model.activation", activation)
        space.Fixed("seed", seed)
        trial = kt.engine.trial.Trial(space, trial_id=str(number), status="COMPLETED")
        trial.score = value
        trials[trial.trial_id] = trial
    store = Store(f"sqlite:///{tmp_path}/m.db")
    parent = populate(store, "tie", specs)
    study = config.validate(
        {
            "name": "tie",
            "hyperparameters": {"model.activation": {"type": "choice", "values": ["elu", "relu"]}},
            "seeds": [0, 1, 2],
        }
    )
    sweep = Sweep(study, store, tmp_path / "state", say=lambda _: None)
    sweep.project.mkdir(parents=True)
    sweep.parent_run_id, sweep.experiment_id = parent, store.experiment("tie")
    summary = sweep._summarise(SimpleNamespace(trials=trials))

    runs = store.runs(sweep.experiment_id)
    report = analyse("tie", runs, paper.load())
    assert summary.best_values == {"model.activation": "relu"}
    assert report.configuration == "activation=relu"
    ranking = report.tables["configurations"]
    assert summary.best_score == pytest.approx(ranking["objective_mean"].iloc[0])
    assert report.best["run_id"] == ranking["median_run_id"].iloc[0]
    assert config.load(summary.best_config_path).model.activation == "relu"
