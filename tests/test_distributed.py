"""Keras Tuner chief and workers on localhost, logging to a real MLflow tracking server."""

import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from study.errors import WorkerIdError
from study.report import selection
from study.tracking.store import Store
from study.tuning import workers

from .conftest import REPO, run_study
from .kill_harness import worker_dies_on

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")


def trial_runs(uri: str):
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["smoke"])
    return found[found["tags.run_type"] == "trial"], found[found["tags.run_type"] == "sweep"]


def test_tracking_server_chief_and_two_workers_run_each_trial_once(tracking_server, tmp_path):
    port, _ = tracking_server
    uri = f"http://127.0.0.1:{port}"
    done = run_study(
        "sweep",
        SMOKE,
        "--workers",
        "2",
        "--tracking-uri",
        uri,
        "--set",
        "data.image_size=32",
        "--set",
        "seeds=[0, 1, 2]",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "with 2 workers" in done.stdout
    trials, parents = trial_runs(uri)
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    assert len(trials) == 6 and set(trials["status"]) == {"FINISHED"}
    assert trials["tags.trial_id"].is_unique
    assert set(trials["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
    assert set(trials["tags.worker"]) == {"worker1", "worker2"}
    # the artifacts went to the server's store
    artifacts = MlflowClient(uri).list_artifacts(trials.iloc[0]["run_id"])
    assert "split.csv" in {a.path for a in artifacts}


def test_a_worker_killed_mid_trial_is_replaced_and_its_trial_runs_again(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    sweep = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "study.cli",
            "sweep",
            SMOKE,
            "--workers",
            "2",
            "-q",
            "--tracking-uri",
            uri,
            "--set",
            "data.image_size=32",
            "--set",
            "frozen.epochs=60",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    client = MlflowClient(uri)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.5)
        try:
            experiment = client.get_experiment_by_name("smoke")
            running = (
                client.search_runs(
                    [experiment.experiment_id],
                    "tags.run_type = 'trial' and attributes.status = 'RUNNING'",
                )
                if experiment
                else []
            )
        except Exception:  # the store is still being created
            continue
        if running:
            killed = running[0]
            os.kill(int(killed.data.tags["pid"]), signal.SIGKILL)
    assert killed is not None, "no trial was seen running"
    output = sweep.communicate(timeout=600)[0]
    assert sweep.returncode == 0, output
    assert f"{killed.data.tags['worker']} died" in output

    trials, _ = trial_runs(uri)
    finished = trials[trials["status"] == "FINISHED"]
    assert len(finished) == 4 and finished["tags.trial_id"].is_unique
    assert client.get_run(killed.info.run_id).info.status == "KILLED"
    assert killed.data.tags["trial_id"] in set(finished["tags.trial_id"])
    assert "RUNNING" not in set(trials["status"])


@pytest.mark.slow  # four worker restarts, each importing TensorFlow
def test_a_trial_that_kills_its_worker_every_time_fails_and_the_sweep_ends(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    # Trial 1's worker SIGKILLs itself as soon as it gets the trial, before its MLflow run
    # exists: the sweep must end (a hang fails on the timeout), with that trial FAILED.
    done = run_study(
        "sweep",
        SMOKE,
        "--workers",
        "2",
        "--tracking-uri",
        uri,
        "--set",
        "data.image_size=32",
        cwd=tmp_path,
        env=worker_dies_on("1"),
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    reason = f"died {workers.MAX_RESTARTS + 1} times running this trial"
    assert "trial 1 FAILED: worker" in done.stderr and reason in done.stderr
    assert "3 trials completed, 1 failed" in done.stdout

    trials, parents = trial_runs(uri)
    assert trials["tags.trial_id"].is_unique  # one run per trial handed out
    status = dict(zip(trials["tags.trial_id"], trials["status"], strict=True))
    assert status == {"0": "FINISHED", "1": "FAILED", "2": "FINISHED", "3": "FINISHED"}
    failed = trials[trials["tags.trial_id"] == "1"].iloc[0]
    assert reason in failed["tags.error"]

    # the parent's counts, planned_trials and the report's selection tell one story
    parent = parents.iloc[0]
    assert parent["status"] == "FINISHED"
    completed, failed_count = parent["metrics.trials_completed"], parent["metrics.trials_failed"]
    assert (completed, failed_count) == (3, 1)
    assert int(parent["params.planned_trials"]) == completed + failed_count
    chosen = selection.select(mlflow.search_runs(experiment_names=["smoke"]))
    assert len(chosen.runs) == completed
    assert chosen.excluded == {"failed": failed_count}

    # --retry-failed runs the failed trial once more; its FAILED run stays, tagged as retried
    again = run_study(
        "sweep",
        SMOKE,
        "--retry-failed",
        "--tracking-uri",
        uri,
        "--set",
        "data.image_size=32",
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert "retrying 1 failed trials: 1" in again.stdout
    assert "4 trials completed, 0 failed" in again.stdout
    trials, parents = trial_runs(uri)
    of_trial_1 = trials[trials["tags.trial_id"] == "1"]
    assert len(trials) == 5 and sorted(of_trial_1["status"]) == ["FAILED", "FINISHED"]
    old = of_trial_1[of_trial_1["run_id"] == failed["run_id"]].iloc[0]
    assert old["status"] == "FAILED" and old["tags.retried"] == "true"
    parent = parents.iloc[0]
    assert (parent["metrics.trials_completed"], parent["metrics.trials_failed"]) == (4, 0)
    chosen = selection.select(mlflow.search_runs(experiment_names=["smoke"]))
    assert len(chosen.runs) == 4  # the retried run is listed, as retried
    assert chosen.excluded == {"failed, then run again by --retry-failed": 1}
    assert failed["run_id"] not in set(chosen.runs["run_id"])


def test_a_worker_id_held_by_a_live_worker_is_refused(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/m.db")
    parent = store.create_run(store.experiment("leases"), "sweep", {"run_type": "sweep"})
    held = workers.Lease(store, parent, "worker1")
    held.acquire()
    with pytest.raises(WorkerIdError, match=r"^worker id worker1 is held by a live worker \(pid"):
        workers.Lease(store, parent, "worker1").acquire()
    other = workers.Lease(store, parent, "worker2")
    other.acquire()  # another id is free
    other.release()
    held.release()
    again = workers.Lease(store, parent, "worker1")
    again.acquire()  # a released id can be taken
    again.release()
    # a worker on another machine: alive while its heartbeat is recent
    remote = {"host": "elsewhere", "pid": 1, "released": False}
    assert workers.alive({**remote, "beat": time.time() - 5})
    assert not workers.alive({**remote, "beat": time.time() - workers.LEASE_EXPIRES_S - 1})
