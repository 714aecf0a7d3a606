"""Every private API of Keras Tuner and MLflow the study relies on, one test per member, named
after it, exercised the way the study uses it. The Keras Tuner ones are all reached through
study/tuning/keras_tuner_adapter.py. pyproject.toml caps both libraries at the versions tested
here; an upgrade that breaks one fails its test, with a message naming the member and the
version it was tested with."""

import json
import os
from pathlib import Path

import pytest

from study import config as study_config
from study.tracking.backends import create_sqlite_store
from study.tracking.run_tables import histories_from_database, runs_from_database
from study.tuning import keras_tuner_adapter as adapter
from study.tuning import tuner

from . import postgres
from .conftest import REPO

KERAS_TUNER = "keras-tuner 1.4.8"
MLFLOW = "mlflow 3.17.2"
SMOKE = str(REPO / "search_spaces" / "smoke.yaml")


def broken(api: str, tested: str, what: str) -> str:
    return f"{api}: {what} (the study was tested with {tested}; see tests/test_private_apis.py)"


def oracle_in(folder: Path, oracle: str = "random"):
    config = study_config.load(SMOKE, [f"tuner.oracle={oracle}", "tuner.max_configs=2"])
    made = tuner.make_oracle(config)
    adapter.open_project(made, str(folder), "project")
    return made


def completed(oracle, trial, score: float = 0.5) -> None:
    oracle.update_trial(trial.trial_id, {"val_accuracy": score})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def study_tuner_in(folder: Path) -> tuner.StudyTuner:
    config = study_config.load(SMOKE, [])
    return tuner.StudyTuner(
        tuner.make_oracle(config),
        run=lambda trial: {},
        on_end=lambda trial: None,
        directory=str(folder),
        project_name="project",
    )


# -- Oracle ------------------------------------------------------------------------------------


def test_oracle_set_project_dir(tmp_path):
    """`open_project`: an oracle without a tuner writes and reloads the project's state."""
    oracle = oracle_in(tmp_path)
    trial = oracle.create_trial("tuner0")
    assert (tmp_path / "project" / f"trial_{trial.trial_id}" / "trial.json").is_file(), broken(
        "Oracle._set_project_dir(directory, project_name)",
        KERAS_TUNER,
        "the oracle no longer writes its trials into directory/project_name",
    )
    reloaded = oracle_in(tmp_path)
    reloaded.reload()
    assert list(reloaded.trials) == [trial.trial_id], broken(
        "Oracle._set_project_dir(directory, project_name)",
        KERAS_TUNER,
        "reload() no longer reads the trials of directory/project_name",
    )


def test_oracle_get_oracle_fname(tmp_path, monkeypatch):
    """`DurableStates.save` writes the oracle's state where Keras Tuner reloads it from."""
    written = []
    monkeypatch.setattr(adapter, "atomic_write_text", lambda path, text: written.append(str(path)))
    oracle_in(tmp_path).save()
    assert written == [str(tmp_path / "project" / "oracle.json")], broken(
        "Oracle._get_oracle_fname()", KERAS_TUNER, "no longer the project's oracle.json"
    )


def test_oracle_save_trial_and_get_trial_dir(tmp_path, monkeypatch):
    """`DurableStates._save_trial`: every write of a trial's file goes through it (atomic)."""
    oracle = oracle_in(tmp_path)
    written = []
    real_write = adapter.atomic_write_text

    def recording(path, text):
        written.append(str(path))
        real_write(path, text)

    monkeypatch.setattr(adapter, "atomic_write_text", recording)
    trial = oracle.create_trial("tuner0")
    completed(oracle, trial)
    trial_file = tmp_path / "project" / f"trial_{trial.trial_id}" / "trial.json"
    assert written.count(str(trial_file)) >= 3, broken(
        "Oracle._save_trial(trial) / Oracle._get_trial_dir(trial_id)",
        KERAS_TUNER,
        "create_trial, update_trial and end_trial no longer write trial.json through "
        "_save_trial into _get_trial_dir",
    )
    assert json.loads(trial_file.read_text())["status"] == "COMPLETED"


def test_oracle_retry_queue(tmp_path):
    """`queued_retries`, `queue_retries` and `DurableStates.reload`: reload queues the
    trials that were running, an ended one excepted, and create_trial hands queued trials out
    first, in the order they were queued."""
    oracle = oracle_in(tmp_path)
    running = oracle.create_trial("worker1")
    ended = oracle.create_trial("worker2")
    completed(oracle, ended)  # its file still lists it as ongoing: Keras Tuner saves first
    reloaded = oracle_in(tmp_path)
    reloaded.reload()
    assert adapter.queued_retries(reloaded) == [running.trial_id], broken(
        "Oracle._retry_queue",
        KERAS_TUNER,
        "reload() no longer queues the ongoing trials as a list the study can filter",
    )
    assert reloaded.create_trial("worker3").trial_id == running.trial_id, broken(
        "Oracle._retry_queue", KERAS_TUNER, "create_trial does not hand out the queued trial"
    )
    completed(reloaded, reloaded.trials[running.trial_id])
    adapter.queue_retries(reloaded, [running.trial_id, ended.trial_id])
    handed_out = [reloaded.create_trial(f"worker{n}").trial_id for n in (4, 5)]
    assert handed_out == [running.trial_id, ended.trial_id], broken(
        "Oracle._retry_queue", KERAS_TUNER, "queued trials are not handed out in their order"
    )


# -- BaseTuner --------------------------------------------------------------------------------


def test_base_tuner_is_worker(tmp_path, monkeypatch):
    """`SharedStateTuner.is_worker` follows Keras Tuner's distribution variables."""
    study_tuner = study_tuner_in(tmp_path)
    assert study_tuner.is_worker is False, broken(
        "BaseTuner._is_worker()", KERAS_TUNER, "a tuner without a chief is a worker"
    )
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert study_tuner.is_worker is False, broken(
        "BaseTuner._is_worker()", KERAS_TUNER, "the chief counts as a worker"
    )
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker1")
    assert study_tuner.is_worker is True, broken(
        "BaseTuner._is_worker() / KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, _PORT",
        KERAS_TUNER,
        "a tuner with a chief's address and a worker id is no worker",
    )


def test_base_tuner_get_tuner_fname(tmp_path):
    """`SharedStateTuner`: a new tuner in the project resumes the state saved in tuner0.json."""
    first = study_tuner_in(tmp_path)
    trial = first.oracle.create_trial("tuner0")
    first.save()
    assert (tmp_path / "project" / "tuner0.json").is_file()
    second = study_tuner_in(tmp_path)
    assert list(second.oracle.trials) == [trial.trial_id], broken(
        "BaseTuner._get_tuner_fname()",
        KERAS_TUNER,
        "a tuner no longer reloads the project from the file _get_tuner_fname() names",
    )


# -- distributed tuning -----------------------------------------------------------------------


def test_synchronized_function_and_exit_chief(tmp_path):
    """`abandon`: ending a dead worker's trial lets the chief end."""
    from keras_tuner.src.distribute.oracle_chief import exit_chief

    oracle = oracle_in(tmp_path)
    trial = oracle.create_trial("worker1")
    assert not exit_chief(oracle)
    abandoned = adapter.abandon(oracle, "worker1", "died", give_up=True)
    assert abandoned is trial and trial.status == "FAILED", broken(
        "keras_tuner.synchronized on a function / Oracle.end_trial", KERAS_TUNER, "changed"
    )
    assert oracle.end_order == [trial.trial_id] and exit_chief(oracle), broken(
        "keras_tuner.src.distribute.oracle_chief.exit_chief (ongoing_trials, tuner_ids)",
        KERAS_TUNER,
        "the chief would keep waiting on a dead worker",
    )


def test_oracle_chief_servicer_protos_and_exit_chief(tmp_path, monkeypatch):
    """`serve_oracle`: the chief serves two workers over gRPC, keeps serving when the first is
    told to stop while the other still runs its last trial, and returns within a second of
    telling the last one to stop (Keras Tuner's own chief waited up to 20 s more)."""
    import threading
    import time

    from keras_tuner.src.distribute.oracle_client import OracleClient

    from study.tracking.server import free_port

    oracle = oracle_in(tmp_path)  # 4 trials: 2 configurations x 2 seeds
    port = str(free_port())
    chief = threading.Thread(target=adapter.serve_oracle, args=(oracle, "127.0.0.1", port))
    chief.start()
    chief.join(timeout=1)  # a chief that cannot serve ends at once (the clients would wait)
    assert chief.is_alive(), broken(
        "keras_tuner.src.protos.get_service_grpc() / oracle_chief.OracleServicer",
        KERAS_TUNER,
        "the chief could not serve its oracle",
    )
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", port)
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker1")
    client = OracleClient(oracle)
    try:
        running = {}
        for number in range(4):
            worker = f"worker{number % 2 + 1}"
            if worker in running:
                completed(client, running.pop(worker))
            running[worker] = client.create_trial(worker)
        completed(client, running.pop("worker1"))
        assert client.create_trial("worker1").status == "STOPPED"
        time.sleep(3 * adapter.CHIEF_POLL_S)
        assert chief.is_alive(), broken(
            "keras_tuner.src.distribute.oracle_chief.exit_chief",
            KERAS_TUNER,
            "the chief stopped serving while a worker still ran a trial",
        )
        completed(client, running.pop("worker2"))
        told = time.monotonic()
        assert client.create_trial("worker2").status == "STOPPED"
        chief.join(timeout=10)
        took = time.monotonic() - told
    finally:
        if chief.is_alive():  # let it end: no worker is left, nothing ongoing
            oracle.ongoing_trials.clear()
            oracle.tuner_ids.clear()
            chief.join(timeout=10)
    assert not chief.is_alive() and took < 1 + 2 * adapter.CHIEF_POLL_S, broken(
        "keras_tuner.src.distribute.oracle_chief.OracleServicer.stop_triggered / exit_chief",
        KERAS_TUNER,
        f"the chief did not end after its last worker was told to stop ({took:.1f} s)",
    )
    assert len(oracle.end_order) == 4, broken(
        "keras_tuner.src.protos.get_service_grpc()",
        KERAS_TUNER,
        "the trials ended through gRPC did not reach the chief's oracle",
    )


# -- MLflow -----------------------------------------------------------------------------------


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


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_mlflow_tables_read_as_search_runs(tmp_path, request, database):
    """MLflow's tables (runs, params, tags, latest_metrics) read by `runs_from_database` give
    the frame `mlflow.search_runs` gives: runs of other experiments and deleted runs left out,
    a missing param or tag None, a NaN metric NaN, a metric's latest step, a run that has not
    ended, ties in start time ordered by run id, and an experiment without runs. Its table
    metrics read by `histories_from_database` give `get_metric_history`'s points by step."""
    import math

    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    if database == "sqlite":
        uri = f"sqlite:///{tmp_path}/mlflow.db"
        create_sqlite_store(tmp_path / "mlflow.db")
    else:
        uri = postgres.fresh_database(request.getfixturevalue("postgres_uri"), "private_apis")
    client = MlflowClient(uri)
    shown, other, empty = (client.create_experiment(name) for name in ("shown", "other", "empty"))
    first = client.create_run(shown, start_time=1_000, tags={"kind": "trial"}).info.run_id
    client.log_batch(
        first,
        metrics=[
            Metric("loss", 0.5, 1, 0),
            Metric("loss", 0.25, 2, 1),
            Metric("loss", 0.125, 0, 2),
            Metric("loss", 0.0625, 4, 1),
            Metric("odd", math.nan, 3, 0),
        ],
        params=[Param("width", "64"), Param("dropout", "0.2")],
    )
    client.set_terminated(first, "FINISHED", end_time=5_000)
    tied = client.create_run(shown, start_time=1_000).info.run_id
    client.log_batch(tied, params=[Param("width", "128")], tags=[RunTag("kind", "trial")])
    client.set_terminated(tied, "FAILED", end_time=6_000)
    running = client.create_run(shown, start_time=9_000).info.run_id
    client.log_metric(running, "accuracy", 0.75, timestamp=9_100, step=0)
    deleted = client.create_run(shown, start_time=2_000).info.run_id
    client.delete_run(deleted)
    client.create_run(other, start_time=3_000)

    mlflow.set_tracking_uri(uri)
    for experiment_id in (shown, empty):
        expected = mlflow.search_runs(experiment_ids=[experiment_id])
        found = runs_from_database(uri, experiment_id)
        try:
            pd.testing.assert_frame_equal(
                found[sorted(found.columns)], expected[sorted(expected.columns)]
            )
        except AssertionError as error:
            pytest.fail(
                broken("MLflow's tables runs, params, tags, latest_metrics", MLFLOW, str(error))
            )
    assert len(expected) == 0 and len(found.columns) == 6
    assert runs_from_database(uri, shown)["run_id"].tolist() == [running, *sorted([first, tied])]

    histories = histories_from_database(uri, first, ["loss", "odd", "never"])
    for key in ("loss", "odd"):
        points = sorted(client.get_metric_history(first, key), key=lambda m: m.step)
        assert np.array_equal(histories[key], [m.value for m in points], equal_nan=True), broken(
            "MLflow's table metrics", MLFLOW, f"{key}: {histories[key]} != {points}"
        )
    assert sorted(histories) == ["loss", "odd"] and len(histories["loss"]) == 4
