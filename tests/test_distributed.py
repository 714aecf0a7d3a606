"""Keras Tuner chief and workers on localhost, logging to a real MLflow tracking server, a
SQLite file or a PostgreSQL database."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from study.errors import WorkerIdError
from study.report import selection
from study.tracking import server
from study.tracking.backends import sqlalchemy_uri
from study.tracking.store import Store
from study.tuning import workers

from . import postgres
from .conftest import REPO, run_study
from .kill_harness import runs_held_until, worker_dies_on

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")
ONE_SEED = ["--set", "data.image_size=32", "--set", "seeds=[0]"]  # 2 trials: elu, relu


@pytest.fixture(params=["sqlite", "postgresql"])
def store_uri(request, tmp_path) -> str:
    """The sweep's store: a SQLite file (the sweep puts a tracking server in front of it) or a
    fresh PostgreSQL database that every process writes directly."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/m.db"
    cluster = request.getfixturevalue("postgres_uri")
    return postgres.fresh_database(cluster, f"t_{uuid.uuid4().hex[:12]}")


def trial_runs(uri: str):
    mlflow.set_tracking_uri(sqlalchemy_uri(uri))
    found = mlflow.search_runs(experiment_names=["smoke"])
    return found[found["tags.run_type"] == "trial"], found[found["tags.run_type"] == "sweep"]


def start_study(args: list[str], cwd: Path, log: Path, env: dict | None = None):
    """A `study` process in its own process group, its output in `log`."""
    cwd.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "study.cli", *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until(found, processes: list[subprocess.Popen], what: str, wait_s: float = 600):
    """Poll `found()` until it returns something true; fail when a process ended first."""
    deadline = time.monotonic() + wait_s
    while not (result := found()):
        ended = [" ".join(p.args[3:9]) for p in processes if p.poll() is not None]
        assert not ended and time.monotonic() < deadline, f"waiting for {what}; ended: {ended}"
        time.sleep(0.2)
    return result


def read_if_there(path: Path) -> str:
    return path.read_text() if path.exists() else ""


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


@pytest.mark.parametrize(
    "store_uri",
    # suite time: SQLite's run is left to `-m slow`; the default suite kills and resumes a
    # 2-worker sweep over SQLite in tests/test_sweep_default_workers.py
    [pytest.param("sqlite", marks=pytest.mark.slow), "postgresql"],
    indirect=True,
)
def test_a_worker_killed_mid_trial_is_replaced_and_its_trial_runs_again(store_uri, tmp_path):
    # Each local worker holds its first trial's run open until the gate exists; the one that
    # names its run last is killed in the middle of that trial, then the gate opens.
    gate = tmp_path / "gate"
    sweep = start_study(
        ["sweep", SMOKE, "--workers", "2", "--tracking-uri", store_uri, *ONE_SEED],
        tmp_path / "sweep",
        tmp_path / "sweep.log",
        runs_held_until(gate),
    )
    try:
        held = Path(f"{gate}.held")
        run_id = wait_until(lambda: read_if_there(held), [sweep], "a run held open")
        client = MlflowClient(sqlalchemy_uri(store_uri))
        killed = client.get_run(run_id)
        os.kill(int(killed.data.tags["pid"]), signal.SIGKILL)
        gate.touch()
        assert sweep.wait(timeout=600) == 0, (tmp_path / "sweep.log").read_text()
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    output = (tmp_path / "sweep.log").read_text()
    assert f"{killed.data.tags['worker']} died" in output

    trials, _ = trial_runs(store_uri)
    finished = trials[trials["status"] == "FINISHED"]
    assert len(finished) == 2 and finished["tags.trial_id"].is_unique
    assert client.get_run(run_id).info.status == "KILLED"
    assert killed.data.tags["trial_id"] in set(finished["tags.trial_id"])
    assert "RUNNING" not in set(trials["status"])
    # both workers logged the same data sets (one seed): each run has its three inputs
    for finished_run in finished["run_id"]:
        inputs = client.get_run(finished_run).inputs.dataset_inputs
        assert len({item.dataset.digest for item in inputs}) == 3


@pytest.mark.parametrize(
    "store_uri",
    # four worker restarts, each importing TensorFlow: SQLite's run is left to `-m slow`
    [pytest.param("sqlite", marks=pytest.mark.slow), "postgresql"],
    indirect=True,
)
def test_a_trial_that_kills_its_worker_every_time_fails_and_the_sweep_ends(store_uri, tmp_path):
    # Trial 1's worker SIGKILLs itself as soon as it gets the trial, before its MLflow run
    # exists: the sweep must end (a hang fails on the timeout), with that trial FAILED.
    sweep = ["sweep", SMOKE, "--tracking-uri", store_uri, *ONE_SEED]
    done = run_study(*sweep, "--workers", "2", cwd=tmp_path, env=worker_dies_on("1"), timeout=900)
    assert done.returncode == 0, done.stderr
    reason = f"died {workers.MAX_RESTARTS + 1} times running this trial"
    assert "trial 1 FAILED: worker" in done.stderr and reason in done.stderr
    assert "1 trials completed, 1 failed" in done.stdout

    trials, parents = trial_runs(store_uri)
    assert trials["tags.trial_id"].is_unique  # one run per trial handed out
    status = dict(zip(trials["tags.trial_id"], trials["status"], strict=True))
    assert status == {"0": "FINISHED", "1": "FAILED"}
    failed = trials[trials["tags.trial_id"] == "1"].iloc[0]
    assert reason in failed["tags.error"]

    # the parent's counts, planned_trials and the report's selection tell one story
    parent = parents.iloc[0]
    assert parent["status"] == "FINISHED"
    completed, failed_count = parent["metrics.trials_completed"], parent["metrics.trials_failed"]
    assert (completed, failed_count) == (1, 1)
    assert int(parent["params.planned_trials"]) == completed + failed_count
    chosen = selection.select(mlflow.search_runs(experiment_names=["smoke"]))
    assert len(chosen.runs) == completed
    assert chosen.excluded == {"failed": failed_count}

    # --retry-failed runs the failed trial once more; its FAILED run stays, tagged as retried
    again = run_study(*sweep, "--retry-failed", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "retrying 1 failed trials: 1" in again.stdout
    assert "2 trials completed, 0 failed" in again.stdout
    trials, parents = trial_runs(store_uri)
    of_trial_1 = trials[trials["tags.trial_id"] == "1"]
    assert len(trials) == 3 and sorted(of_trial_1["status"]) == ["FAILED", "FINISHED"]
    old = of_trial_1[of_trial_1["run_id"] == failed["run_id"]].iloc[0]
    assert old["status"] == "FAILED" and old["tags.retried"] == "true"
    parent = parents.iloc[0]
    assert (parent["metrics.trials_completed"], parent["metrics.trials_failed"]) == (2, 0)
    chosen = selection.select(mlflow.search_runs(experiment_names=["smoke"]))
    assert len(chosen.runs) == 2  # the retried run is listed, as retried
    assert chosen.excluded == {"failed, then run again by --retry-failed": 1}
    assert failed["run_id"] not in set(chosen.runs["run_id"])


def test_a_chief_started_again_waits_for_the_trial_of_a_live_remote_worker(
    tracking_server, tmp_path
):
    # A chief and two remote workers, each holding its trial's run open. The chief is killed,
    # and remote2 with it, while remote1 is in the middle of its trial; the same chief command
    # starts again. It keeps remote1's trial for remote1 and hands remote2's out again; remote1,
    # let go, ends its trial with the new chief, then runs the other: one FINISHED run each.
    # SQLite behind a tracking server only: the store plays no part here (the worker tests above
    # run over PostgreSQL too), and the default suite has little time to spare.
    port, _ = tracking_server
    uri = f"http://127.0.0.1:{port}"
    oracle = f"127.0.0.1:{server.free_port()}"
    chief = ["sweep", SMOKE, "--serve-oracle", oracle, "--tracking-uri", uri, *ONE_SEED]
    logs = {name: tmp_path / f"{name}.log" for name in ("chief1", "chief2", "remote1", "remote2")}
    gates = {"remote1": tmp_path / "gate1", "remote2": tmp_path / "gate2"}  # gate2 stays shut
    first = start_study(chief, tmp_path / "chief", logs["chief1"])
    remotes = {
        worker_id: start_study(
            ["sweep", SMOKE, "--worker", worker_id, "--oracle", oracle, "--tracking-uri", uri]
            + ONE_SEED,
            tmp_path / "workers",  # one --state-dir: the feature cache is built once
            logs[worker_id],
            runs_held_until(gate),
        )
        for worker_id, gate in gates.items()
    }
    started = [first, *remotes.values()]
    try:
        held = {
            worker_id: wait_until(
                lambda gate=gate: read_if_there(Path(f"{gate}.held")), started, worker_id
            )
            for worker_id, gate in gates.items()
        }
        for process in (first, remotes["remote2"]):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        second = start_study(chief, tmp_path / "chief", logs["chief2"])
        started.append(second)
        wait_until(
            lambda: "stays with remote1" in read_if_there(logs["chief2"]),
            [second, remotes["remote1"]],
            "the new chief to keep remote1's trial",
        )
        gates["remote1"].touch()
        assert second.wait(timeout=600) == 0, logs["chief2"].read_text()
        assert remotes["remote1"].wait(timeout=120) == 0, logs["remote1"].read_text()
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)

    assert "runs again: remote2 is gone" in logs["chief2"].read_text()
    oracle_state = tmp_path / "chief" / "mlruns" / "tuner" / "smoke" / "oracle.json"
    assert sorted(json.loads(oracle_state.read_text())["end_order"]) == ["0", "1"]  # once each
    trials, parents = trial_runs(uri)
    finished = trials[trials["status"] == "FINISHED"]
    assert sorted(finished["tags.trial_id"]) == ["0", "1"]  # none lost, none run twice
    assert held["remote1"] in set(finished["run_id"])  # remote1 finished its own run
    assert set(finished["tags.worker"]) == {"remote1"}
    killed = trials[trials["status"] != "FINISHED"]  # remote2's run, closed; its trial ran again
    assert list(killed["run_id"]) == [held["remote2"]] and list(killed["status"]) == ["KILLED"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"


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
