"""Kill a `study sweep` process at chosen moments, resume it, and audit what it leaves behind.

Shared by the kill test of the default suite (tests/test_sweep.py) and the longer
benchmarks/kill_resume.py; `worker_dies_on` makes a distributed sweep's worker kill itself on
a given trial, and `runs_held_until` holds runs open until the test lets them go
(tests/test_distributed.py). The sweep runs in its own process group and is
killed with SIGKILL, so nothing in it gets to clean up. While it runs, this side watches it
without writing anything: the MLflow store (a SQLite file through a read-only connection, or
a PostgreSQL database), and the feature cache's lock (held while the cache is read or built).

Moments:
- `cache`: while the feature cache is being built (its lock held, no .npz yet);
- `store`: while the MLflow store and the sweep's parent run are being created and logged;
- `trial`: while a trial's child run is RUNNING, at a random point of it;
- `logging`: while a child run logs its results (metrics logged, artifacts on their way);
- `between`: just after a child run turned FINISHED (the tuner saves its state, starts the
  next trial).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from study.processes import alive
from study.tracking.backends import sqlalchemy_uri, sqlite_path
from study.tracking.run_tables import database_connection

MOMENTS = ("cache", "store", "trial", "logging", "between")
POLL_S = 0.1
FAST_POLL_S = 0.02  # for moments that last a fraction of a second
FAULTS = Path(__file__).resolve().parent / "faults"  # its sitecustomize.py reads KILL_TRIAL
KILL_TRIAL = "STUDY_TEST_KILL_TRIAL"
HOLD_RUNS = "STUDY_TEST_HOLD_RUNS"


def _with_faults() -> str:
    """A PYTHONPATH that makes Python load tests/faults/sitecustomize.py at start-up."""
    return os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))


def worker_dies_on(trial_id: str) -> dict[str, str]:
    """Environment for a `study sweep --workers N` whose local worker processes SIGKILL
    themselves when handed trial `trial_id`, before its MLflow run exists: Python loads
    tests/faults/sitecustomize.py in every process started with it."""
    return {"PYTHONPATH": _with_faults(), KILL_TRIAL: trial_id}


def runs_held_until(gate: Path) -> dict[str, str]:
    """Environment for `study` processes (and their local workers) that hold every run they
    start open, RUNNING, until the file `gate` exists; each names the run it holds in
    `<gate>.held`."""
    return {"PYTHONPATH": _with_faults(), HOLD_RUNS: str(gate)}


@dataclass
class Observation:
    """What the sweep's store and state folder show at one instant."""

    store_exists: bool = False
    store_partial: bool = False  # the store's temporary file, while MLflow creates its tables
    cache_started: bool = False  # its lock file exists
    cache_building: bool = False  # its lock is held and there is no .npz yet
    cache_complete: bool = False
    sweeps: dict[str, str] = field(default_factory=dict)  # run id -> status
    children: dict[str, dict] = field(default_factory=dict)  # run id -> status, trial, metrics

    def running(self) -> list[str]:
        return [r for r, c in self.children.items() if c["status"] == "RUNNING"]

    def finished(self) -> int:
        return sum(c["status"] == "FINISHED" for c in self.children.values())

    def describe(self) -> str:
        if not self.cache_complete:
            return "feature cache being built (no .npz yet)" if self.cache_started else "start-up"
        if not self.store_exists:
            if self.store_partial:
                return "MLflow store being created (its tables in a temporary file)"
            return "feature cache done, store not created yet"
        if not self.sweeps:
            return "store created, no parent run yet"
        if not self.children:
            return "parent run created, no trial yet"
        running = [
            f"trial {self.children[r]['trial']} RUNNING "
            f"({'results being logged' if self.children[r]['metrics'] else 'training'})"
            for r in self.running()
        ]
        return ", ".join(running) or f"no trial running ({self.finished()} finished)"


@dataclass
class Kill:
    moment: str  # the moment asked for
    after_s: float  # seconds after the process started
    seen: str  # what the store and state folder showed right after the kill
    running_runs: list[str]  # child runs RUNNING at the kill


class SweepUnderTest:
    """One sweep command, started again and again in `cwd`, killed at chosen moments."""

    def __init__(self, args: list[str], cwd: Path, store_uri: str, state_dir: Path, log: Path):
        self.args, self.cwd, self.store_uri = list(args), Path(cwd), store_uri
        self.database = sqlite_path(store_uri)  # None: PostgreSQL, read through SQLAlchemy
        self.state_dir, self.log = Path(state_dir), Path(log)
        self.kills: list[Kill] = []
        self.exit_codes: list[int] = []  # of the launches that ended on their own
        self.problems: list[str] = []

    def start(self) -> subprocess.Popen:
        with open(self.log, "ab") as output:
            output.write(f"\n=== start at {time.strftime('%X')} ===\n".encode())
            output.flush()
            return subprocess.Popen(
                [sys.executable, "-m", "study.cli", *self.args],
                cwd=self.cwd,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
            )

    def run_to_end(self, timeout_s: float = 900) -> int:
        process = self.start()
        try:
            self.exit_codes.append(process.wait(timeout=timeout_s))
            return self.exit_codes[-1]
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def kill_at(self, moment: str, rng: random.Random, timeout_s: float = 600) -> Kill | None:
        """Start the sweep and SIGKILL it at `moment`; None if it ended before that came."""
        assert moment in MOMENTS, moment
        before = self.observe()
        stale = set(before.running())  # left RUNNING by an earlier kill, closed on resume
        process = self.start()
        started = time.monotonic()
        try:
            while process.poll() is None and time.monotonic() - started < timeout_s:
                seen = self.observe()
                for run_id in stale:
                    seen.children.pop(run_id, None)
                delay = self._trigger(moment, seen, before.finished(), rng)
                if delay is not None:
                    time.sleep(delay)
                    if process.poll() is not None:
                        break
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    after = self.observe()
                    for run_id in stale:
                        after.children.pop(run_id, None)
                    kill = Kill(
                        moment, time.monotonic() - started, after.describe(), after.running()
                    )
                    self.kills.append(kill)
                    return kill
                time.sleep(FAST_POLL_S if moment in ("logging", "between") else POLL_S)
        finally:
            if process.poll() is None and time.monotonic() - started >= timeout_s:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.exit_codes.append(process.returncode)
        return None

    def _trigger(
        self, moment: str, seen: Observation, baseline: int, rng: random.Random
    ) -> float | None:
        """Seconds to wait before the kill, or None while the moment has not come."""
        if moment == "cache" and seen.cache_building:
            return rng.uniform(0.0, 1.0)
        if moment == "store" and seen.cache_complete and (seen.store_exists or seen.store_partial):
            return rng.uniform(0.0, 3.0) if not seen.sweeps else 0.0
        if moment == "trial" and seen.running():
            return rng.uniform(0.0, 1.0)
        if moment == "logging" and any(seen.children[r]["metrics"] for r in seen.running()):
            return 0.0
        if moment == "between" and seen.finished() > baseline:
            return 0.0
        return None

    def kill_processes(
        self, targets: list[str], rng: random.Random, timeout_s: float = 1800
    ) -> list[Kill]:
        """A distributed sweep (`--workers N`): while a trial runs, SIGKILL the worker running
        it ("worker"; the chief starts it again) or the chief alone ("chief"; it is started
        again, and its workers must stop by themselves), once per target in order; then let
        the sweep run to its end. A worker that outlives its chief is a problem."""
        process = self.start()
        stale = set(self.observe().running())  # RUNNING runs of earlier launches
        started = time.monotonic()
        try:
            for target in targets:
                running: list[str] = []
                while not running:  # a trial of this launch RUNNING, still so after a delay
                    if process.poll() is not None:
                        self.exit_codes.append(process.returncode)
                        return self.kills  # the sweep ended before every kill came
                    if time.monotonic() - started > timeout_s:
                        return self.kills
                    time.sleep(POLL_S)
                    if [r for r in self.observe().running() if r not in stale]:
                        time.sleep(rng.uniform(0.0, 2.0))
                        seen = self.observe()
                        running = [r for r in seen.running() if r not in stale]
                run_id = rng.choice(running)
                if target == "worker":
                    os.kill(int(seen.children[run_id]["pid"]), signal.SIGKILL)
                    hit = [run_id]
                else:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
                    hit = running
                    workers = {int(seen.children[r]["pid"]) for r in hit}
                    time.sleep(40.0)  # the workers notice within a second, stop within 30 s
                    outlived = [pid for pid in workers if alive(pid)]
                    with contextlib.suppress(ProcessLookupError):  # its tracking server
                        os.killpg(process.pid, signal.SIGKILL)
                    if outlived:
                        self.problems.append(f"workers {outlived} outlived their chief")
                    process = self.start()
                stale |= set(hit)
                after = self.observe()
                self.kills.append(Kill(target, time.monotonic() - started, after.describe(), hit))
            self.exit_codes.append(
                process.wait(timeout=max(timeout_s - (time.monotonic() - started), 1))
            )
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return self.kills

    # -- watching without writing -------------------------------------------------------------

    def observe(self) -> Observation:
        seen = Observation()
        features = self.state_dir / "features"
        for lock in features.glob("*.lock") if features.is_dir() else []:
            built = lock.with_suffix(".npz").exists()
            seen.cache_started = True
            seen.cache_complete = seen.cache_complete or built
            seen.cache_building = seen.cache_building or (not built and _held(lock))
        if self.database is not None:
            seen.store_exists = self.database.is_file()
            partials = self.database.parent.glob(f".{self.database.name}.*.partial")
            seen.store_partial = self.database.parent.is_dir() and any(True for _ in partials)
            if not seen.store_exists:
                return seen
        rows = self._runs_and_tags()
        if rows is None:  # being created or written: look again at the next poll
            return seen
        seen.store_exists = True
        tags: dict[str, dict] = {}
        for run_id, status, key, value, metrics in rows:
            tags.setdefault(run_id, {"status": status, "metrics": metrics})[key] = value
        for run_id, info in tags.items():
            if info.get("run_type") == "sweep":
                seen.sweeps[run_id] = info["status"]
            elif info.get("run_type") == "trial":
                seen.children[run_id] = {
                    "status": info["status"],
                    "trial": info.get("trial_id"),
                    "pid": info.get("pid"),
                    "metrics": info["metrics"],
                }
        return seen

    def _runs_and_tags(self) -> list[tuple] | None:
        """(run id, status, tag key, tag value, metric count) of the store's runs, read-only;
        None while the store cannot be read."""
        import sqlalchemy

        query = (
            "SELECT r.run_uuid, r.status, t.key, t.value, "
            "(SELECT count(*) FROM latest_metrics m WHERE m.run_uuid = r.run_uuid) "
            "FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE t.key IN ('run_type', 'trial_id', 'pid')"
        )
        try:
            if self.database is not None:
                with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=2) as db:
                    return db.execute(query).fetchall()
            with database_connection(self.store_uri) as connection:
                return [tuple(row) for row in connection.execute(sqlalchemy.text(query))]
        except (sqlite3.Error, sqlalchemy.exc.SQLAlchemyError):
            return None


def _held(lock: Path) -> bool:
    """Whether another process holds this lock file (the cache is being read or built)."""
    try:
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


# -- the audit -------------------------------------------------------------------------------


@dataclass
class Audit:
    planned: int
    finished: int = 0
    duplicates: int = 0  # FINISHED runs beyond one per trial or per configuration
    lost: int = 0  # planned trials without a FINISHED run
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"FINISHED child runs: {self.finished}/{self.planned}, duplicate runs: "
            f"{self.duplicates}, lost trials: {self.lost}, problems: {len(self.problems)}"
        )


def audit(config, uri: str, state_dir: Path, killed_runs: list[str] = ()) -> Audit:
    """Check a sweep that ran to its end after kills: MLflow, the Keras Tuner state and the
    feature cache must tell one story, with every trial logged once."""
    from mlflow.tracking import MlflowClient

    from study.tuning import keras_tuner_adapter, tuner

    state_dir = Path(state_dir)
    planned = tuner.planned_trials(config)
    result = Audit(planned)
    problem = result.problems.append
    client = MlflowClient(sqlalchemy_uri(uri))
    experiment = client.get_experiment_by_name(config.name)
    if experiment is None:
        problem(f"no experiment {config.name}")
        return result
    everything = client.search_runs([experiment.experiment_id], max_results=5000)
    sweeps = [r for r in everything if r.data.tags.get("run_type") == "sweep"]
    trials = [r for r in everything if r.data.tags.get("run_type") == "trial"]

    # the parent run named in sweep.json, finished; any other parent was closed
    project = state_dir / "tuner" / re.sub(r"[^\w.-]+", "_", config.name)
    parent_id = json.loads((project / "sweep.json").read_text())["parent_run_id"]
    for run in sweeps:
        expected = "FINISHED" if run.info.run_id == parent_id else "KILLED"
        if run.info.status != expected:
            problem(f"sweep run {run.info.run_id} is {run.info.status}, expected {expected}")
    if parent_id not in {r.info.run_id for r in sweeps}:
        problem(f"the parent run {parent_id} of sweep.json is not in the store")

    # child runs: one FINISHED per trial and per configuration, none RUNNING
    swept = [key for key in config.hyperparameters if key != tuner.SEED]
    finished: dict[str, object] = {}
    configurations: dict[tuple, str] = {}
    for run in trials:
        status, tags = run.info.status, run.data.tags
        if tags.get("mlflow.parentRunId") != parent_id:
            problem(
                f"child run {run.info.run_id} belongs to parent {tags.get('mlflow.parentRunId')}"
            )
        if status == "RUNNING":
            problem(f"child run {run.info.run_id} (trial {tags.get('trial_id')}) is still RUNNING")
        if status not in ("FINISHED", "KILLED", "FAILED"):
            problem(f"child run {run.info.run_id} ended {status}")
        if status != "FINISHED":
            continue
        result.finished += 1
        trial_id = tags.get("trial_id")
        configuration = (*(run.data.params.get(k) for k in swept), tags.get("seed"))
        if trial_id in finished or configuration in configurations:
            result.duplicates += 1
            problem(f"trial {trial_id} {configuration} has more than one FINISHED run")
        finished[trial_id] = run
        configurations[configuration] = trial_id
    for run_id in killed_runs:
        status = client.get_run(run_id).info.status
        if status not in ("KILLED", "FAILED"):
            problem(f"run {run_id}, RUNNING when its process was killed, is now {status}")

    # the Keras Tuner state, reloaded as a resumed sweep would see it, agrees with MLflow
    oracle = tuner.make_oracle(config)
    keras_tuner_adapter.open_project(oracle, str(state_dir / "tuner"), project.name)
    oracle.reload()
    states = {t.trial_id: t for t in oracle.trials.values()}
    retries = keras_tuner_adapter.queued_retries(oracle)
    if retries:
        problem(f"Keras Tuner still has trials to retry: {retries}")
    if sorted(oracle.end_order) != sorted(states) or len(set(oracle.end_order)) != len(states):
        problem(f"Keras Tuner end order {oracle.end_order} does not list each trial once")
    objective = config.tuner.objective
    for trial_id in sorted(set(states) | set(finished)):
        trial, run = states.get(trial_id), finished.get(trial_id)
        if trial is None or run is None:
            where = "MLflow" if run is None else "the Keras Tuner state"
            problem(f"trial {trial_id} is missing in {where}")
            continue
        on_disk = json.loads((project / f"trial_{trial_id}" / "trial.json").read_text())
        if trial.status != "COMPLETED" or on_disk["status"] != "COMPLETED":
            problem(f"trial {trial_id} is {trial.status} in Keras Tuner, FINISHED in MLflow")
        values = trial.hyperparameters.values
        expected = (*(str(values[k]) for k in swept), str(values[tuner.SEED]))
        got = (*(run.data.params.get(k) for k in swept), run.data.tags.get("seed"))
        if expected != got:
            problem(f"trial {trial_id}: Keras Tuner values {expected}, MLflow params {got}")
        logged = run.data.metrics.get(objective)
        if trial.score is None or logged is None or not math.isclose(trial.score, logged):
            problem(f"trial {trial_id}: Keras Tuner score {trial.score}, MLflow {logged}")
    result.lost = max(planned - len(finished), 0)
    if len(states) != planned:
        problem(f"Keras Tuner holds {len(states)} trials, {planned} planned")
    if result.finished != planned:
        problem(f"{result.finished} FINISHED child runs, {planned} planned")

    # the feature cache: one complete file that the sweep reads as valid
    problem_with_cache = check_feature_cache(config, state_dir)
    if problem_with_cache:
        problem(problem_with_cache)
    return result


def check_feature_cache(config, state_dir: Path) -> str | None:
    from study.caches import features
    from study.caches.inputs import CacheInputs
    from study.data import dataset as data
    from study.model.nasnet import resolve_weights

    dataset = data.load(config.data.root, config.data.image_size)
    init_seed = config.model.backbone_init_seed(config.sweep_seeds[0])
    weights = resolve_weights(config.model.weights, init_seed)
    inputs = CacheInputs.for_features(config)
    key = inputs.key(dataset, weights)
    folder = Path(state_dir) / "features"
    files = sorted(p.name for p in folder.iterdir())
    if files != [f"{key}.lock", f"{key}.npz"]:
        return f"the feature cache folder holds {files}, expected one lock and one .npz"
    if features._read(folder / f"{key}.npz", key, len(dataset), inputs.views) is None:
        return "the feature cache file is not complete and valid"
    return None
