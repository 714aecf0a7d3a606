"""The oracles: the grid the config names, as the workers of one sweep see it (asking at once,
ending in any order), and the random and Bayesian oracles repeating each configuration over
the seeds until the space is used up."""

import random
import re
from types import SimpleNamespace

import keras_tuner as kt
import pytest
import threadpoolctl

from study import config as study_config
from study.errors import ConfigError
from study.tuning import keras_tuner_adapter, tuner

from .conftest import REPO

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")
GRID = (
    "hyperparameters={model.activation: {type: choice, values: [elu, relu, tanh]}, "
    "model.dropout: {type: choice, values: [0.1, 0.3]}}"
)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_asking_worker_gets_a_trial_and_each_combination_runs_once(tmp_path, workers):
    config = study_config.load(SMOKE, [GRID, "seeds=[0, 1]"])
    planned = tuner.planned_trials(config)
    oracle = tuner.make_oracle(config)
    keras_tuner_adapter.open_project(oracle, str(tmp_path), "grid")
    rng = random.Random(workers)
    running, handed_out = {}, []
    while True:
        for worker in (f"worker{n}" for n in range(workers)):
            if worker in running:
                continue
            trial = oracle.create_trial(worker)
            if len(handed_out) < planned:  # work is left: nobody waits
                assert trial.status == tuner.RUNNING, (worker, len(handed_out))
            if trial.status == tuner.RUNNING:
                running[worker] = trial
                handed_out.append(tuple(sorted(tuner.trial_values(trial).items())))
        if not running:
            break
        trial = running.pop(rng.choice(sorted(running)))  # trials end in any order
        oracle.update_trial(trial.trial_id, {"val_accuracy": rng.random()})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert planned == 12
    assert len(handed_out) == planned and len(set(handed_out)) == planned
    assert oracle.create_trial("late").status == tuner.STOPPED


def bayesian(dropout: str, configs: int, seeds: str):
    """The smoke study searching `model.dropout` alone, Bayesian, the first 2 configurations
    at random."""
    return study_config.load(
        SMOKE,
        [
            f"hyperparameters={{model.dropout: {dropout}}}",
            "tuner.oracle=bayesian",
            f"tuner.max_configs={configs}",
            "tuner.num_initial_points=2",
            f"seeds={seeds}",
        ],
    )


def test_bayesian_oracle_models_configurations_not_seeds(tmp_path):
    """Past its random phase the Gaussian process sees one point per configuration, scored by
    the mean over its seeds, and never the seed; a finite space ends when it is used up, with
    the reason said, and no configuration runs twice."""
    config = bayesian("{type: choice, values: [0.0, 0.1, 0.2, 0.3, 0.4]}", 8, "[0, 1, 2]")
    oracle = tuner.make_oracle(config)
    seen = []

    class Watched(oracle.proposer):
        def populate_space(self, trial_id):
            names = [hp.name for hp in self.hyperparameters.space]
            scores = sorted(t.score for t in self.trials.values())
            seen.append((names, scores))
            return super().populate_space(trial_id)

    oracle.proposer = Watched
    keras_tuner_adapter.open_project(oracle, str(tmp_path), "bayes")
    oracle.verbose = 0
    handed_out, scores = [], {}
    while (trial := oracle.create_trial("tuner0")).status == tuner.RUNNING:
        values = tuner.trial_values(trial)
        handed_out.append(values)
        score = 1 - (values["model.dropout"] - 0.2) ** 2 + 0.01 * values[tuner.SEED]
        scores.setdefault(values["model.dropout"], []).append(score)
        oracle.update_trial(trial.trial_id, {"val_accuracy": score})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)

    assert len(handed_out) == 15  # all 5 configurations x 3 seeds, then the space is used up
    for start in range(0, 15, 3):
        group = handed_out[start : start + 3]
        assert [v[tuner.SEED] for v in group] == [0, 1, 2]
        assert len({v["model.dropout"] for v in group}) == 1
    assert sorted(scores) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert all(tuner.SEED not in names for names, _ in seen)
    means = sorted(sum(found) / 3 for found in scores.values())
    assert seen[-1][1] == pytest.approx(means)  # one point per configuration: its mean
    assert len(seen) == 6 and len(seen[2][1]) == 2  # the third proposal is the first modelled
    assert "used up" in oracle.stop_reason


def test_the_bayesian_proposer_computes_on_one_blas_thread(tmp_path):
    """The chief proposes while its workers keep every core busy."""
    config = bayesian("{type: float, min: 0.0, max: 0.5}", 4, "[0]")
    oracle = tuner.make_oracle(config)
    threads = []

    class Watched(oracle.proposer):
        def populate_space(self, trial_id):
            threads.append({pool["num_threads"] for pool in threadpoolctl.threadpool_info()})
            return super().populate_space(trial_id)

    oracle.proposer = Watched
    keras_tuner_adapter.open_project(oracle, str(tmp_path), "bayes")
    oracle.verbose = 0
    while (trial := oracle.create_trial("tuner0")).status == tuner.RUNNING:
        oracle.update_trial(
            trial.trial_id, {"val_accuracy": random.Random(trial.trial_id).random()}
        )
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert len(threads) == 4 and all(found == {1} for found in threads)
    assert max(pool["num_threads"] for pool in threadpoolctl.threadpool_info()) > 1


@pytest.mark.parametrize("oracle_name", ["bayesian", "random"])
def test_a_float_steps_rounding_error_does_not_make_a_tried_configuration_new(
    tmp_path, oracle_name
):
    """Keras Tuner's proposers give 0.15000000000000002 for the 0.15 step: every one of the 13
    steps runs once, however the proposer arrives at it, and then the space is used up."""
    config = study_config.load(
        SMOKE,
        [
            "hyperparameters={model.dropout: {type: float, min: 0.0, max: 0.6, step: 0.05}}",
            f"tuner.oracle={oracle_name}",
            "tuner.max_configs=20",
            "tuner.num_initial_points=2",
            "seeds=[0]",
        ],
    )
    oracle = tuner.make_oracle(config)
    keras_tuner_adapter.open_project(oracle, str(tmp_path), oracle_name)
    oracle.verbose = 0
    handed_out = []
    while (trial := oracle.create_trial("tuner0")).status == tuner.RUNNING:
        dropout = tuner.trial_values(trial)["model.dropout"]
        handed_out.append(dropout)
        oracle.update_trial(trial.trial_id, {"val_accuracy": 1 - (dropout - 0.3) ** 2})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert sorted(handed_out) == [round(0.05 * step, 2) for step in range(13)]
    assert "used up" in oracle.stop_reason


def test_trial_values_drop_a_float_steps_rounding_error():
    space = kt.HyperParameters()
    space.Float("model.dropout", 0.0, 0.6, step=0.05)
    for index in range(13):
        space.values["model.dropout"] = 0.05 * index  # 0.15000000000000002, as steps sum up
        values = tuner.trial_values(SimpleNamespace(hyperparameters=space))
        assert repr(values["model.dropout"]) == repr(round(0.05 * index, 2))


def test_the_grid_is_the_configs_values_with_the_seed_varying_fastest():
    """The grid follows from the config: a choice's values, a range's steps as Keras Tuner's
    own hyperparameters enumerate them, every configuration once per seed in a row."""
    config = study_config.load(
        SMOKE,
        [
            "hyperparameters={model.activation: {type: choice, values: [elu, relu]}, "
            "model.dropout: {type: float, min: 0.0, max: 0.6, step: 0.05}, "
            "model.head_width: {type: int, min: 16, max: 256, step: 2, sampling: log}, "
            "fine_tune.decay_rate: {type: float, min: 0.01, max: 0.1, step: 2, "
            "sampling: reverse_log}, fine_tune.epochs: {type: fixed, value: 0}}",
            "seeds=[0, 1]",
        ],
    )
    ranges = {hp.name: hp for hp in tuner.search_space(config).space if hp.name != tuner.SEED}
    for key, spec in config.hyperparameters.items():
        if spec.type in ("int", "float"):
            steps = tuner.rounded({str(n): v for n, v in enumerate(ranges[key].values)})
            assert tuner.grid_values(key, spec) == list(steps.values()), key
    assert tuner.grid_values("model.dropout", config.hyperparameters["model.dropout"]) == [
        round(0.05 * step, 2) for step in range(13)
    ]
    points = tuner.grid(config)
    assert len(points) == tuner.planned_trials(config) == 2 * 13 * 5 * 4 * 2
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)
    assert [p[tuner.SEED] for p in points[:4]] == [0, 1, 0, 1]
    assert points[0] == {**points[1], tuner.SEED: 0}
    assert {p["model.activation"] for p in points[: len(points) // 2]} == {"elu"}


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("{type: float, min: 0.0, max: 0.6}", "grid search needs a step for a float range"),
        (
            "{type: float, min: 0.01, max: 0.1, step: 0.5, sampling: log}",
            "log sampling multiplies by its step, so the step must be above 1 (got 0.5)",
        ),
    ],
)
def test_a_grid_it_cannot_enumerate_is_refused_naming_the_key(spec, problem):
    config = study_config.load(SMOKE, [f"hyperparameters={{model.dropout: {spec}}}"])
    with pytest.raises(
        ConfigError, match="^" + re.escape(f"hyperparameters.model.dropout: {problem}")
    ):
        tuner.planned_trials(config)
