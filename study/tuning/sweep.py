"""A sweep: Keras Tuner searches a study's space; every trial is one MLflow child run of the
sweep's parent run.

The Keras Tuner project (oracle and trial states) lives in `<state-dir>/tuner/<study>/` beside a
`sweep.json` naming the parent run, so running the same command again resumes the sweep. MLflow
is checked before a trial runs: a trial that already has a finished run is not run again, and
a run left RUNNING by a killed process is closed as KILLED before the trial runs anew.

Distributed, this process is Keras Tuner's chief: it owns the oracle and serves it over gRPC,
while worker processes (started here, see `workers`, or on other machines) ask it for trials and
log them to a shared MLflow tracking server.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras_tuner as kt
import numpy as np
import pandas as pd
import yaml

from study import processes
from study.config import StudyConfig
from study.errors import ConfigError, SweepStateError, TrainingFailed, WorkersLost
from study.files import atomic_write_text
from study.runs import session, tracked
from study.tracking import outcome, server
from study.tracking.store import CONFIGURATIONS, NOTE_TAG, REPORT_NOTE, LoggedRun, Store
from study.tuning import keras_tuner_adapter, tuner
from study.tuning.keras_tuner_adapter import ORACLE_IP, ORACLE_PORT, TUNER_ID
from study.tuning.workers import Lease, WorkerPool

STATE_FILE = "sweep.json"
STATE_TAG = "sweep_state"  # host:folder of the sweep's state, on its parent run
RETRIED_TAG = "retried"  # on a trial's FAILED run that --retry-failed ran again
DEFAULT_WORKERS = 2  # local worker processes when `default_workers` runs trials two at a time
MIN_TRIAL_IMAGE_EPOCHS = 20_000  # frozen.epochs x images of a trial worth a worker process


@dataclass
class SweepSummary:
    parent_run_id: str
    experiment_id: str
    statuses: dict[str, str] = field(default_factory=dict)  # trial id -> Keras Tuner status
    best_values: dict | None = None  # the best configuration, chosen on the mean objective
    best_score: float | None = None
    best_config_path: Path | None = None
    stop_reason: str | None = None  # why the oracle stopped before the planned trials

    @property
    def completed(self) -> int:
        return sum(status == "COMPLETED" for status in self.statuses.values())

    @property
    def failed(self) -> int:
        return sum(status == "FAILED" for status in self.statuses.values())


class Sweep:
    """One study's search, resumable, tracked as a parent run with a child run per trial."""

    def __init__(
        self,
        config: StudyConfig,
        store: Store,
        state_dir: Path,
        say: Callable[[str], None] = print,
        progress: bool = True,
    ):
        self.config, self.store, self.say, self.progress = config, store, say, progress
        self.state_dir = Path(state_dir)
        self.project_name = re.sub(r"[^\w.-]+", "_", config.name)
        self.project = self.state_dir / "tuner" / self.project_name
        self.planned = tuner.planned_trials(config)
        self._started: dict[str, float] = {}
        self._scores: dict[str, dict[str, float]] = {}  # trial id -> what run_trial returned
        self._durations: list[float] = []

    def run(
        self,
        fresh: bool = False,
        workers: int | None = 0,
        oracle_address: str | None = None,
        retry_failed: bool = False,
    ) -> SweepSummary:
        """Run or resume the sweep: in this process, or as the chief of `workers` local
        worker processes (None: as many as `default_workers` chooses, none with an
        `oracle_address`) and of any remote workers that reach `oracle_address` (host:port).
        With `retry_failed`, the trials that failed run once more."""
        oracle = tuner.make_oracle(self.config)  # checks the search space before any work
        if workers is None and oracle_address is not None:
            workers = 0  # the chief of remote workers starts local ones only when asked
        self.tracking: server.TrackingServer | None = None
        try:
            self.prepared = session.prepare(
                self.config,
                self.store,
                self.state_dir,
                self.progress,
                cache=workers != 0 or oracle_address is None,
                loaded=lambda dataset: self._launch_tracking_server(workers, len(dataset)),
            )
            for notice in self.prepared.dataset.notices:
                self.say(f"note: {notice}")
            if fresh:
                self._abandon()
            self.experiment_id = self.store.experiment(self.config.name, self.config.description)
            self.parent_run_id = self._parent_run(self._identity(self.prepared))
            if workers is None:
                workers = self._default_workers(retry_failed)
        except BaseException:
            if self.tracking:
                self.tracking.stop()
            raise
        if self.tracking and not workers:  # a resumed sweep with one trial left
            self.tracking.stop()
            self.tracking = None
        distributed = workers > 0 or oracle_address is not None
        pool = None
        if distributed:
            host, _, port = (oracle_address or f"127.0.0.1:{server.free_port()}").rpartition(":")
            os.environ.update({ORACLE_IP: host, ORACLE_PORT: port, TUNER_ID: "chief"})
            pool = WorkerPool(
                self, workers, server.reachable(host), port, run_worker, self.tracking
            )
        self.serves_remote_workers = oracle_address is not None
        study_tuner = self._tuner(oracle)
        if retry_failed:
            self._retry_failed(study_tuner.oracle)
        self._ended = len(study_tuner.oracle.end_order)
        self.sweep_started = time.monotonic()
        try:
            if pool:
                pool.start(study_tuner.oracle)
            study_tuner.search(verbose=0)
        except (KeyboardInterrupt, SystemExit):
            if pool and pool.failure:
                self.store.end_run(self.parent_run_id, "FAILED", pool.failure)
                raise WorkersLost(pool.failure) from None
            self.store.end_run(self.parent_run_id, "KILLED", "interrupted; run again to resume")
            raise
        finally:
            if pool:
                pool.stop()
            for name in (ORACLE_IP, ORACLE_PORT, TUNER_ID):
                os.environ.pop(name, None)
        summary = self._summarise(study_tuner.oracle)
        summary.stop_reason = getattr(study_tuner.oracle, "stop_reason", None)
        status = "FAILED" if summary.statuses and not summary.completed else "FINISHED"
        self.store.end_run(self.parent_run_id, status)
        return summary

    def work(self, oracle_address: str, worker_id: str) -> None:
        """Run trials handed out by the chief at `oracle_address` until the sweep is done."""
        oracle = tuner.make_oracle(self.config)
        host, _, port = oracle_address.rpartition(":")
        os.environ.update({ORACLE_IP: host, ORACLE_PORT: port, TUNER_ID: worker_id})
        self.prepared = session.prepare(self.config, self.store, self.state_dir, self.progress)
        self.experiment_id = self.store.experiment(self.config.name)
        self.parent_run_id = self._find_parent(self._identity(self.prepared))
        lease = Lease(self.store, self.parent_run_id, worker_id)
        lease.acquire()
        study_tuner = self._tuner(oracle)
        # A worker sees only its own trials: it counts them, the sweep's total is the chief's.
        self._ended, self.sweep_started, self.planned = 0, time.monotonic(), None
        try:
            study_tuner.search(verbose=0)
        finally:
            lease.release()

    def _launch_tracking_server(self, workers: int | None, images: int) -> None:
        """Start the tracking server that local workers of a SQLite store log through, if the
        sweep will likely start some (`default_workers`, not knowing yet how many trials are
        left), so that it starts up while the feature cache is built."""
        if workers is None:
            workers, _ = default_workers(self.config, images, None, processes.usable_cores())
        if workers and self.store.uri.startswith("sqlite:"):
            self.tracking = server.TrackingServer(self.store, self.project / "tracking-server.log")

    def _default_workers(self, retry_failed: bool) -> int:
        """The local workers `default_workers` chooses for what is left of this sweep, said."""
        count, reason = default_workers(
            self.config,
            len(self.prepared.dataset),
            self._trials_left(retry_failed),
            processes.usable_cores(),
        )
        if count:
            self.say(f"{count} local workers by default ({reason}; --workers 0: in this process)")
        else:
            self.say(f"trials in this process by default ({reason}; --workers N: N processes)")
        return count

    def _trials_left(self, retry_failed: bool) -> int | None:
        """Planned trials without a FINISHED run (or a FAILED one, unless it is retried)."""
        if self.planned is None:
            return None
        ended = {
            run.tags.get("trial_id")
            for run in self.store.child_runs(
                self.experiment_id, self.parent_run_id, run_type="trial"
            )
            if run.status == "FINISHED" or (run.status == "FAILED" and not retry_failed)
        }
        return max(self.planned - len(ended), 0)

    def _retry_failed(self, oracle) -> None:
        """Queue the failed trials to run again, each once; their FAILED runs stay, tagged as
        retried, and the trial's new run is the one that counts."""
        failed = [t for t in oracle.end_order if oracle.trials[t].status == "FAILED"]
        for trial_id in failed:
            for run in self.child_runs(trial_id):
                if run.status == "FAILED":
                    self.store.log(run.run_id, tags={RETRIED_TAG: "true"})
        oracle.end_order = [t for t in oracle.end_order if t not in failed]
        keras_tuner_adapter.queue_retries(oracle, failed)
        oracle.save()
        self.say(f"retrying {len(failed)} failed trials: {', '.join(failed) or 'none'}")

    def _tuner(self, oracle) -> tuner.StudyTuner:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras Tuner prints "Reloading..."
            return tuner.StudyTuner(
                oracle,
                run=self._run_trial,
                on_end=self._report_trial,
                directory=str(self.state_dir / "tuner"),
                project_name=self.project_name,
                overwrite=False,
            )

    # -- the parent run and the state beside the Keras Tuner project ------------------------

    def _identity(self, prepared: session.Prepared) -> str:
        """What must not change while a sweep resumes: the config, the data, the weights."""
        body = self.config.model_dump()
        body["data"]["root"] = prepared.dataset.fingerprint
        body["model"]["weights"] = prepared.weights.identity
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def _parent_run(self, identity: str) -> str:
        state_path = self.project / STATE_FILE
        if state_path.is_file():
            state = json.loads(state_path.read_text())
            if state["identity"] != identity or state["tracking_uri"] != self.store.display_uri:
                raise SweepStateError(
                    f"the sweep state in {self.project} belongs to another config, data set or "
                    f"store ({state['tracking_uri']}); run with --fresh to start a new sweep, "
                    "or use another --state-dir"
                )
            run_id = state["parent_run_id"]
            if self.store.get_run(run_id).deleted:
                raise SweepStateError(f"the sweep's parent run {run_id} was deleted; use --fresh")
            self.store.reopen_run(run_id)
            self.say(f"resuming sweep {self.config.name} (parent run {run_id})")
            return run_id
        if self.project.exists():  # a Keras Tuner project without a parent run: start over
            shutil.rmtree(self.project)
        orphans = self._orphan_parents()
        run_id = self.store.create_run(
            self.experiment_id,
            f"{self.config.name} · {self.config.tuner.oracle} sweep",
            {"run_type": "sweep", "sweep_identity": identity, STATE_TAG: self._state_label()},
        )
        for orphan in orphans:
            self.store.end_run(
                orphan,
                "KILLED",
                f"the sweep was stopped before its state was saved; run {run_id} replaces it",
            )
        space = {key: spec.model_dump() for key, spec in self.config.hyperparameters.items()}
        self.store.log(
            run_id,
            params={
                **self.config.flat(),
                **{f"tuner.{k}": v for k, v in self.config.tuner.model_dump().items()},
                **self._declared_question(),
                "seeds": self.config.sweep_seeds,
                "hyperparameters": json.dumps(space, sort_keys=True),
                "planned_trials": self.planned,
            },
            tags={**tracked.describe(self.prepared), NOTE_TAG: self._sweep_note()},
        )
        self.store.log_text(run_id, self.config.to_yaml(), "search_space.yaml")
        self.project.mkdir(parents=True, exist_ok=True)
        state = {
            "identity": identity,
            "tracking_uri": self.store.display_uri,
            "experiment_id": self.experiment_id,
            "parent_run_id": run_id,
        }
        atomic_write_text(state_path, json.dumps(state, indent=2))
        self.say(f"new sweep {self.config.name} (parent run {run_id})")
        return run_id

    def _declared_question(self) -> dict[str, object]:
        """The study's question as `question.*` params, when its YAML declared one: a sweep
        that declared none logs none, and its report says it answers the default."""
        if "question" not in self.config.model_fields_set:
            return {}
        return {f"question.{k}": v for k, v in self.config.question.model_dump().items()}

    def _sweep_note(self) -> str:
        space = "; ".join(
            f"{key}: {spec.model_dump(exclude={'type'})}"
            for key, spec in self.config.hyperparameters.items()
        )
        planned = f"{self.planned} trials" if self.planned else "trials"
        return (
            f"{self.config.description}\n\n{self.config.tuner.oracle.capitalize()} search over "
            f"{space or 'nothing'}; each configuration once per seed {self.config.sweep_seeds}; "
            f"{planned}, chosen on {self.config.tuner.objective}."
        ).strip()

    def _state_label(self) -> str:
        return f"{socket.gethostname()}:{self.project.resolve()}"

    def _orphan_parents(self) -> list[str]:
        """Parent runs of this state folder that a kill stopped between creating the run and
        saving sweep.json: still RUNNING, never resumable, and without trials."""
        return self.store.orphaned_runs(
            self.experiment_id, "sweep", {STATE_TAG: self._state_label()}
        )

    def _find_parent(self, identity: str, wait_s: float = 600.0) -> str:
        """The running parent run of this sweep, created by its chief."""
        deadline = time.monotonic() + wait_s
        while True:
            found = self.store.latest_running_run(
                self.experiment_id, run_type="sweep", sweep_identity=identity
            )
            if found:
                return found
            if time.monotonic() > deadline:
                raise SweepStateError(
                    f"no running sweep of this config in {self.store.display_uri} after "
                    f"{wait_s:.0f} s: start the chief first, with the same config, data and store"
                )
            time.sleep(2)

    def _abandon(self) -> None:
        state_path = self.project / STATE_FILE
        if state_path.is_file():
            old = json.loads(state_path.read_text())["parent_run_id"]
            try:
                if self.store.get_run(old).status == "RUNNING":
                    self.store.end_run(old, "KILLED", "abandoned: a fresh sweep was started")
            except Exception:  # noqa: BLE001 - the old run may live in another store
                pass
        shutil.rmtree(self.project, ignore_errors=True)

    # -- trials ------------------------------------------------------------------------------

    def child_runs(self, trial_id: str) -> list[LoggedRun]:
        return self.store.child_runs(self.experiment_id, self.parent_run_id, trial_id=trial_id)

    def _run_trial(self, trial) -> dict[str, float]:
        trial_id = trial.trial_id
        self._started[trial_id] = time.monotonic()
        existing = self.child_runs(trial_id)
        for run in existing:
            if run.status == "FINISHED":
                self._scores[trial_id] = _scores(run.metrics)
                return self._scores[trial_id]
            if run.status == "FAILED" and RETRIED_TAG not in run.tags:
                raise kt.errors.FailedTrialError(run.tags.get("error", "failed earlier"))
        for run in existing:
            if run.status == "RUNNING":
                self.store.end_run(run.run_id, "KILLED", "interrupted: the sweep stopped")
        values = tuner.trial_values(trial)
        if "tuner/epochs" in trial.hyperparameters.values:
            values["frozen.epochs"] = trial.hyperparameters.values["tuner/epochs"]
        try:
            trial_config = self.config.with_values(values)
        except ConfigError as error:
            raise kt.errors.FailedTrialError(str(error)) from None
        try:
            _, result = tracked.execute(
                trial_config,
                self.prepared,
                self.store,
                self.experiment_id,
                run_name=trial_name(self.config, trial_id, values),
                tags={
                    "run_type": "trial",
                    "trial_id": trial_id,
                    "seed": str(trial_config.seed),
                    "worker": os.environ.get(TUNER_ID, "tuner0"),
                    "pid": str(os.getpid()),
                },
                parent_run_id=self.parent_run_id,
                time_budget_s=self.config.tuner.trial_timeout_s,
                note=f"Trial {trial_id} of sweep {self.config.name}: "
                + ", ".join(f"{key} = {value}" for key, value in values.items()),
            )
        except TrainingFailed as error:
            raise kt.errors.FailedTrialError(str(error)) from None
        final = result.evaluations[result.final_stage]
        self._scores[trial_id] = {
            f"{split}_{key}": value
            for split, evaluation in final.items()
            for key, value in evaluation.metrics.items()
        }
        return self._scores[trial_id]

    def close_failed(self, trial) -> None:
        """Give a FAILED trial its one FAILED run with the error: its RUNNING run is closed, or,
        when it failed before its run existed, a run is made for it."""
        reason = _last_line(trial.message)
        found = [r for r in self.child_runs(trial.trial_id) if RETRIED_TAG not in r.tags]
        if any(run.status in ("FINISHED", "FAILED") for run in found):
            return
        running = [run for run in found if run.status == "RUNNING"]
        for run in running:
            self.store.end_run(run.run_id, "FAILED", reason)
        if running:
            return
        values = tuner.trial_values(trial)
        tags = {"run_type": "trial", "trial_id": trial.trial_id}
        if tuner.SEED in values:
            tags["seed"] = str(values[tuner.SEED])
        run_id = self.store.create_run(
            self.experiment_id, f"trial-{trial.trial_id}", tags, self.parent_run_id
        )
        self.store.log(run_id, params=values)
        self.store.end_run(run_id, "FAILED", reason)

    def _report_trial(self, trial) -> None:
        took = time.monotonic() - self._started.get(trial.trial_id, time.monotonic())
        self._durations.append(took)
        self._ended += 1
        objective = self.config.tuner.objective
        if trial.status == "COMPLETED":
            outcome = f"{objective} {self._scores[trial.trial_id][objective]:.4f}"
        else:
            outcome = f"FAILED: {_last_line(trial.message)}"
        values = " ".join(f"{k}={v}" for k, v in tuner.trial_values(trial).items())
        elapsed = time.monotonic() - self.sweep_started
        total = f"/{self.planned}" if self.planned else ""
        eta = ""
        if self.planned:
            remaining = max(self.planned - self._ended, 0)
            eta = f", ETA {_clock(remaining * float(np.mean(self._durations)))}"
        self.say(
            f"[{self._ended:>3}{total}] trial {trial.trial_id} {outcome} | {values} | "
            f"{took:.1f} s | elapsed {_clock(elapsed)}{eta}"
        )

    # -- the outcome ---------------------------------------------------------------------------

    def _summarise(self, oracle) -> SweepSummary:
        """Statuses, and the best configuration as the report names it: `outcome` ranks the
        runs that count in the store (for Hyperband those of the final budget only)."""
        summary = SweepSummary(self.parent_run_id, self.experiment_id)
        trials = oracle.trials if hasattr(oracle, "trials") else {}
        for trial in trials.values():
            summary.statuses[trial.trial_id] = str(trial.status)
            if trial.status == "FAILED":
                self.close_failed(trial)
        objective = self.config.tuner.objective
        found = outcome.counted_runs(self.store.runs(self.experiment_id), self.parent_run_id)
        counted = found.runs
        table = configurations_table(found, objective)
        self.store.log_table(self.parent_run_id, table, CONFIGURATIONS)
        self.store.log(
            self.parent_run_id,
            tags={NOTE_TAG: f"{self._sweep_note()}\n\n{self._outcome_note(table)}"},
        )
        best = outcome.best_configuration(counted, objective)
        if best is not None:
            ranked = outcome.ranking(counted, objective).set_index("configuration")
            trial_id = counted.loc[counted["configuration"] == best, "tags.trial_id"].iloc[0]
            summary.best_values = tuner.configuration(trials[trial_id])
            summary.best_score = float(ranked.loc[best, "objective_mean"])
            summary.best_config_path = self._write_best_config(summary)
        self.store.log(
            self.parent_run_id,
            metrics=[
                ("trials_completed", summary.completed, 0),
                ("trials_failed", summary.failed, 0),
                *(
                    [(f"best_mean_{objective}", summary.best_score, 0)]
                    if summary.best_score is not None
                    else []
                ),
            ],
        )
        return summary

    def _outcome_note(self, table: pd.DataFrame) -> str:
        """The parent run's description after the sweep: where its configurations table is and
        how to make its report (`study report` names the report here once it has built it)."""
        objective = self.config.tuner.objective
        scored = table[table[f"mean_{objective}"].notna()]
        best = (
            f"best: {scored['configuration'].iloc[0]}, {scored[f'mean_{objective}'].iloc[0]:.4f}"
            if len(scored)
            else "none scored"
        )
        folder = re.sub(r"[^\w.-]+", "_", self.config.name)
        return (
            f"{len(table)} configurations, best first by mean {objective} over their seeds "
            f"({best}): the table {CONFIGURATIONS} in this run's artifacts.\n\n"
            f"{REPORT_NOTE}not built yet; `study report {self.config.name} --sweep "
            f"{self.parent_run_id}` writes reports/{folder}/report.html and logs it to this "
            "run's artifacts under report/."
        )

    def _write_best_config(self, summary: SweepSummary) -> Path:
        best = self.config.with_values(summary.best_values)
        body = best.model_dump(exclude={"hyperparameters", "tuner", "seeds"})
        body["name"] = f"{self.config.name}-best"
        body["description"] = (
            f"Best configuration of sweep {self.config.name} (parent run {self.parent_run_id}): "
            f"mean {self.config.tuner.objective} {summary.best_score:.4f} over its seeds."
        )
        path = self.project / "best_config.yaml"
        atomic_write_text(path, yaml.safe_dump(body, sort_keys=False))
        self.store.log_artifact(self.parent_run_id, path)
        return path


def default_workers(
    config: StudyConfig, images: int, trials_left: int | None, cores: int
) -> tuple[int, str]:
    """How many local worker processes run a sweep's trials when `--workers` is not given (0:
    in the sweep's process), and why.

    A trial on cached features that does not fine-tune trains the head alone, a few small
    matrix products per step that leave a second core idle: two such trials at once, in two
    worker processes, ran 1.6x as many trials per minute of trial time on 2 cores
    (benchmarks/workers_throughput.py). Workers cost tens of seconds to start (each imports
    TensorFlow and loads the cache; a SQLite store is served through a tracking server) and
    log through that server, so trials whose frozen phase is short (frozen.epochs x images
    below MIN_TRIAL_IMAGE_EPOCHS, as in the smoke study) or a single trial left run in the
    sweep's process. At most DEFAULT_WORKERS: the speed-up was measured with 2, and every
    worker holds its own TensorFlow and feature cache in memory."""
    if not _frozen_only_on_cached_features(config):
        return 0, "the trials fine-tune or do not run on cached features"
    epochs = max(_space_values(config, "frozen.epochs"))
    if epochs * images < MIN_TRIAL_IMAGE_EPOCHS:
        return 0, (
            f"short trials: {epochs} frozen epochs x {images} images < "
            f"{MIN_TRIAL_IMAGE_EPOCHS} image-epochs"
        )
    if trials_left is not None and trials_left < 2:
        return 0, f"{trials_left} trial left"
    if cores < 2:
        return 0, "1 usable core"
    left = "" if trials_left is None else f", {trials_left} trials left"
    return min(cores, DEFAULT_WORKERS), (
        f"frozen-phase trials on cached features{left}, {cores} usable cores"
    )


def _frozen_only_on_cached_features(config: StudyConfig) -> bool:
    """Whether every trial of the sweep trains the head on cached features, and nothing more."""
    return (
        all(_space_values(config, "features.cache"))
        and min(_space_values(config, "frozen.epochs")) > 0
        and max(_space_values(config, "fine_tune.epochs")) == 0
    )


def _space_values(config: StudyConfig, key: str) -> list:
    """The values the sweep's trials can give `key`: a range's ends, a choice's values, or the
    config's own value when the sweep does not vary it."""
    spec = config.hyperparameters.get(key)
    if spec is None:
        return [config.flat()[key]]
    if spec.type in ("choice", "fixed"):
        return tuner.grid_values(key, spec)
    return [spec.min, spec.max]


def configurations_table(counted: outcome.Counted, objective: str) -> pd.DataFrame:
    """The sweep's configurations in `outcome.ranking`'s order, best first: rank, label, the
    value of each swept setting, runs (one per seed), the seeds ranked on and the mean
    objective."""
    ranked = outcome.ranking(counted.runs, objective)
    first = counted.runs.drop_duplicates("configuration").set_index("configuration")
    labels = ranked["configuration"]
    return pd.DataFrame(
        {
            "rank": range(1, len(ranked) + 1),
            "configuration": labels,
            **{key: first[f"params.{key}"].reindex(labels).to_numpy() for key in counted.swept},
            "runs": ranked["n"],
            "ranked_on_seeds": ranked["ranked_on_seeds"],
            f"mean_{objective}": ranked["objective_mean"],
        }
    )


def trial_name(config: StudyConfig, trial_id: str, values: dict) -> str:
    """A short name, unique in the sweep, that says what differs: `t03 relu s1` is trial 3,
    the values of the knobs the sweep varies, and the seed."""
    varied = [key for key, spec in config.hyperparameters.items() if spec.type != "fixed"]
    parts = [_short(key, values[key]) for key in varied if key in values]
    return " ".join([f"t{trial_id.zfill(2)}", *parts, f"s{values[tuner.SEED]}"])


def _short(key: str, value) -> str:
    """A value in few characters: a name stands alone, a number says which knob it sets."""
    if isinstance(value, str):
        return value
    leaf = key.rpartition(".")[2]
    return f"{leaf}={value}" if isinstance(value, bool) else f"{leaf}={value:g}"


def _scores(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if re.match(r"^(train|val|test)_", k)}


def _last_line(message: str | None) -> str:
    """The error of a Keras Tuner trial message (a traceback, or a reason)."""
    return ((message or "").strip().splitlines() or ["no message"])[-1]


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_worker(
    config: StudyConfig,
    store: Store,
    state_dir: Path,
    oracle_address: str,
    worker_id: str,
    say: Callable[[str], None],
    progress: bool,
) -> None:
    """A local worker's share of the sweep, in the worker process `workers.WorkerPool` starts:
    trials handed out by the chief at `oracle_address` until the sweep is done."""
    sweep = Sweep(config, store, state_dir, say=say, progress=progress)
    sweep.work(oracle_address, worker_id)
