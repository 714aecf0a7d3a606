"""The grid oracle as the workers of one sweep see it: asking at once, ending in any order."""

import random

import pytest

from study import config as study_config
from study import tuner

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
    oracle._set_project_dir(str(tmp_path), "grid")
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
