"""Every private API of Keras Tuner and MLflow the study relies on, exercised the way the study
uses it. pyproject.toml caps both libraries at the versions tested here; an upgrade that breaks
one of these fails here, with a message naming the API and the version it was tested with."""

import json
import os
from pathlib import Path

import pytest

from study import config as study_config
from study.tracking.store import create_sqlite_store
from study.tuning import tuner, workers

from .conftest import REPO

KERAS_TUNER = "keras-tuner 1.4.8"
MLFLOW = "mlflow 3.17.2"
SMOKE = str(REPO / "search_spaces" / "smoke.yaml")


def broken(api: str, tested: str, what: str) -> str:
    return f"{api}: {what} (the study was tested with {tested}; see tests/test_private_apis.py)"


def oracle_in(folder: Path, oracle: str = "random"):
    config = study_config.load(SMOKE, [f"tuner.oracle={oracle}", "tuner.max_configs=2"])
    made = tuner.make_oracle(config)
    made._set_project_dir(str(folder), "project")
    return made


def test_keras_tuner_src_modules():
    from keras_tuner.src.engine import trial as trial_module
    from keras_tuner.src.tuners.gridsearch import LinkedList

    for status in ("RUNNING", "STOPPED", "IDLE", "COMPLETED", "FAILED", "INVALID"):
        assert getattr(trial_module.TrialStatus, status, None) == status, broken(
            f"keras_tuner.src.engine.trial.TrialStatus.{status}", KERAS_TUNER, "missing"
        )
    linked = LinkedList()
    linked.insert("0")
    linked.insert("2", "0")
    linked.insert("1", "0")
    assert (linked.next("0"), linked.next("1")) == ("1", "2"), broken(
        "keras_tuner.src.tuners.gridsearch.LinkedList.insert(data, data_pre)/next",
        KERAS_TUNER,
        "does not insert after the given item",
    )


def test_oracle_state_files_and_the_retry_queue(tmp_path):
    oracle = oracle_in(tmp_path)
    assert oracle._get_oracle_fname() == str(tmp_path / "project" / "oracle.json"), broken(
        "Oracle._get_oracle_fname()", KERAS_TUNER, "no longer the project's oracle.json"
    )
    assert isinstance(oracle._max_collisions, int) and oracle._max_collisions > 0, broken(
        "Oracle._max_collisions", KERAS_TUNER, "not a positive int"
    )
    trial = oracle.create_trial("worker1")
    trial_file = Path(oracle._get_trial_dir(trial.trial_id)) / "trial.json"
    assert json.loads(trial_file.read_text())["trial_id"] == trial.trial_id, broken(
        "Oracle._get_trial_dir()/_save_trial()",
        KERAS_TUNER,
        "create_trial no longer saves the trial through _save_trial into _get_trial_dir",
    )
    assert oracle.ongoing_trials == {"worker1": trial}, broken(
        "Oracle.ongoing_trials", KERAS_TUNER, "not keyed by the tuner id"
    )
    assert oracle.tuner_ids == {"worker1"}, broken(
        "Oracle.tuner_ids", KERAS_TUNER, "does not record the asking tuner's id"
    )
    reloaded = oracle_in(tmp_path)
    reloaded.reload()
    assert reloaded._retry_queue == [trial.trial_id], broken(
        "Oracle._retry_queue", KERAS_TUNER, "reload no longer queues the ongoing trials again"
    )
    assert reloaded.create_trial("worker2").trial_id == trial.trial_id, broken(
        "Oracle._retry_queue", KERAS_TUNER, "create_trial does not hand out the queued trial"
    )


def test_grid_oracle_walk(tmp_path):
    oracle = oracle_in(tmp_path, "grid")
    first = oracle.create_trial("worker1")
    values = first.hyperparameters.values
    following = oracle._get_next_combination(values)
    assert following is not None and following != values, broken(
        "GridSearchOracle._get_next_combination()", KERAS_TUNER, "no next combination"
    )
    assert oracle._compare(values, following) < 0, broken(
        "GridSearchOracle._compare()", KERAS_TUNER, "does not order combinations"
    )
    second = oracle.create_trial("worker2")  # the study's grid oracle: no waiting
    assert second.hyperparameters.values == following, broken(
        "GridSearchOracle.populate_space() IDLE / _ordered_ids", KERAS_TUNER, "changed"
    )
    assert oracle._ordered_ids.next(first.trial_id) == second.trial_id, broken(
        "GridSearchOracle._ordered_ids", KERAS_TUNER, "not the LinkedList of the grid walk"
    )
    first.status = "COMPLETED"
    oracle.update_trial(first.trial_id, {"val_accuracy": 0.5})
    oracle.end_trial(first)
    reloaded = oracle_in(tmp_path, "grid")
    reloaded.reload()
    assert reloaded._populate_next == [first.trial_id], broken(
        "GridSearchOracle._populate_next", KERAS_TUNER, "not rebuilt from the ended trials"
    )
    assert reloaded.create_trial("worker2").trial_id == second.trial_id  # the retry queue
    third = reloaded.create_trial("worker1").hyperparameters.values
    assert third not in (values, following), broken(
        "GridSearchOracle._populate_next", KERAS_TUNER, "the reloaded walk repeats a trial"
    )


def test_chief_ends_when_a_dead_workers_trial_is_abandoned(tmp_path):
    from keras_tuner.src.distribute.oracle_chief import exit_chief

    oracle = oracle_in(tmp_path)
    trial = oracle.create_trial("worker1")
    assert not exit_chief(oracle)
    abandoned = workers.abandon(oracle, "worker1", "died", give_up=True)
    assert abandoned is trial and trial.status == "FAILED", broken(
        "keras_tuner.synchronized on a function / Oracle.end_trial", KERAS_TUNER, "changed"
    )
    assert oracle.end_order == [trial.trial_id] and exit_chief(oracle), broken(
        "keras_tuner.src.distribute.oracle_chief.exit_chief (ongoing_trials, tuner_ids)",
        KERAS_TUNER,
        "the chief would keep waiting on a dead worker",
    )


def test_tuner_worker_check_and_state_file(tmp_path, monkeypatch):
    from keras_tuner.src.distribute import utils as dist_utils

    config = study_config.load(SMOKE, [])
    study_tuner = tuner.StudyTuner(
        tuner.make_oracle(config),
        run=lambda trial: {},
        on_end=lambda trial: None,
        directory=str(tmp_path),
        project_name="project",
    )
    assert study_tuner._is_worker() is False, broken(
        "BaseTuner._is_worker()", KERAS_TUNER, "changed"
    )
    assert study_tuner._get_tuner_fname().startswith(str(tmp_path)), broken(
        "BaseTuner._get_tuner_fname()", KERAS_TUNER, "not in the project"
    )
    for name, value in (("KERASTUNER_ORACLE_IP", "127.0.0.1"), ("KERASTUNER_ORACLE_PORT", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker1")
    assert dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle(), broken(
        "KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT",
        KERAS_TUNER,
        "Keras Tuner no longer reads its distribution settings from these variables",
    )


def test_mlflow_initialize_tables(tmp_path):
    from mlflow.tracking import MlflowClient

    database = tmp_path / "mlflow.db"
    try:
        create_sqlite_store(database)
    except ImportError as error:
        pytest.fail(broken("mlflow.store.db.utils._initialize_tables", MLFLOW, str(error)))
    client = MlflowClient(f"sqlite:///{database}")
    assert client.create_experiment("x", artifact_location=(tmp_path / "a").as_uri()), broken(
        "mlflow.store.db.utils._initialize_tables", MLFLOW, "the store it made is not usable"
    )
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]


def test_a_proposing_oracle_fed_configurations_from_outside():
    """`tuner.SeedRepeats` hands Keras Tuner's oracles one point per configuration: trials it
    builds itself, the hashes of tried values, and the random fallback."""
    import keras_tuner as kt
    from keras_tuner.src.engine import trial as trial_module

    space = kt.HyperParameters()
    space.Choice("x", [1, 2, 3])
    proposer = kt.oracles.BayesianOptimizationOracle(
        objective=kt.Objective("val_accuracy", "max"),
        hyperparameters=space,
        seed=1,
        num_initial_points=1,
    )
    proposer._tried_so_far.add(proposer._compute_values_hash({"x": 1}))
    assert proposer._duplicate({"x": 1}) and not proposer._duplicate({"x": 2}), broken(
        "Oracle._tried_so_far / _compute_values_hash / _duplicate", KERAS_TUNER, "changed"
    )
    point = trial_module.Trial(space.copy(), trial_id="0", status="COMPLETED")
    point.hyperparameters.values["x"] = 1
    point.score = 0.5
    proposer.trials["0"] = point
    response = proposer.populate_space("next")
    assert response["status"] == "RUNNING" and response["values"]["x"] in (1, 2, 3), broken(
        "BayesianOptimizationOracle.populate_space over Oracle.trials", KERAS_TUNER, "changed"
    )
    proposer._max_collisions = 50
    values = proposer._random_values()
    assert values is not None and not proposer._duplicate(values), broken(
        "Oracle._random_values / _max_collisions", KERAS_TUNER, "returns a tried value"
    )
    proposer._tried_so_far.update(proposer._compute_values_hash({"x": v}) for v in (2, 3))
    assert proposer._random_values() is None, broken(
        "Oracle._random_values", KERAS_TUNER, "no longer gives up when every value was tried"
    )
