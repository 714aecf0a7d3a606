"""A sweep: Keras Tuner searches a study's space; every trial is one MLflow child run of the
sweep's parent run.

The sweep's state (`state`) lets the same sweep run again resume; the trials run through a
`TrialRunner`; each ended trial is said by `Progress`; once the parent run has ended, with its
`summary` logged, the callbacks the caller gave run in order, as Keras Tuner's
`on_search_end` or Optuna's `optimize(callbacks=...)` do (`sweep_end` holds the usual ones).

Distributed, this process is Keras Tuner's chief: it owns the oracle and serves it over gRPC,
while worker processes (started here, see `workers`, or on other machines) ask it for trials and
log them to a shared MLflow tracking server.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from study import processes
from study.config import StudyConfig
from study.errors import WorkersLost
from study.files import slug
from study.runs import session
from study.tracking import server
from study.tracking.store import Store
from study.tuning import state, tuner
from study.tuning.keras_tuner_adapter import ORACLE_IP, ORACLE_PORT, TUNER_ID
from study.tuning.progress import Progress
from study.tuning.summary import SweepSummary, summarise
from study.tuning.trials import TrialRunner
from study.tuning.workers import Lease, WorkerPool, default_workers

# Called once the sweep's parent run has ended, with the sweep and its summary.
SweepCallback = Callable[["Sweep", SweepSummary], None]


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
        self.project_name = slug(config.name)
        self.project = self.state_dir / "tuner" / self.project_name
        self.state = state.SweepState(config, store, self.project, say)
        self.planned = tuner.planned_trials(config)

    def run(
        self,
        fresh: bool = False,
        workers: int | None = 0,
        oracle_address: str | None = None,
        retry_failed: bool = False,
        callbacks: Sequence[SweepCallback] = (),
    ) -> SweepSummary:
        """Run or resume the sweep (`fresh`: start a new one): in this process, or as the chief
        of `workers` local worker processes (None: as many as `default_workers` chooses, none
        with an `oracle_address`) and of any remote workers that reach `oracle_address`
        (host:port). With `retry_failed`, the trials that failed run once more. Each of
        `callbacks` is called with the sweep and its summary once the parent run has ended."""
        if oracle_address and not server.is_loopback(oracle_address.rpartition(":")[0]):
            print(
                f"warning: the oracle at {oracle_address} takes requests from the network",
                file=sys.stderr,
            )
        self.say(
            f"sweep {self.config.name}: {self.config.tuner.oracle} search, tracking in "
            f"{self.store.display_uri}"
        )
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
                self.state.abandon()
            self.experiment_id = self.store.experiment(self.config.name, self.config.description)
            self.parent_run_id = self.state.parent_run(
                self.experiment_id,
                state.identity(self.config, self.prepared),
                self.prepared,
                self.planned,
            )
            self.trials = self._trial_runner()
            if workers is None:
                workers = self._default_workers(retry_failed)
        except BaseException:
            if self.tracking:
                self.tracking.stop()
            raise
        if self.tracking and not workers:  # a resumed sweep with one trial left
            self.tracking.stop()
            self.tracking = None
        pool = None
        if workers > 0 or oracle_address is not None:
            host, _, port = (oracle_address or f"127.0.0.1:{server.free_port()}").rpartition(":")
            os.environ.update({ORACLE_IP: host, ORACLE_PORT: port, TUNER_ID: "chief"})
            pool = WorkerPool(
                self, workers, server.reachable(host), port, run_worker, self.tracking
            )
        self.serves_remote_workers = oracle_address is not None
        study_tuner = self._tuner(oracle)
        if retry_failed:
            self.trials.retry_failed(study_tuner.oracle, self.say)
        self._progress = Progress(
            self.config.tuner.objective, self.planned, len(study_tuner.oracle.end_order), self.say
        )
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
        self.store.end_run(self.parent_run_id, "FAILED" if summary.all_failed else "FINISHED")
        for callback in callbacks:
            callback(self, summary)
        return summary

    def work(self, oracle_address: str, worker_id: str) -> None:
        """Run trials handed out by the chief at `oracle_address` until the sweep is done."""
        oracle = tuner.make_oracle(self.config)
        host, _, port = oracle_address.rpartition(":")
        os.environ.update({ORACLE_IP: host, ORACLE_PORT: port, TUNER_ID: worker_id})
        self.prepared = session.prepare(self.config, self.store, self.state_dir, self.progress)
        self.experiment_id = self.store.experiment(self.config.name)
        identity = state.identity(self.config, self.prepared)
        self.parent_run_id = state.find_parent(self.store, self.experiment_id, identity)
        self.trials = self._trial_runner()
        lease = Lease(self.store, self.parent_run_id, worker_id)
        lease.acquire()
        study_tuner = self._tuner(oracle)
        # A worker sees only its own trials: it counts them, the sweep's total is the chief's.
        self._progress = Progress(self.config.tuner.objective, None, 0, self.say)
        try:
            study_tuner.search(verbose=0)
        finally:
            lease.release()

    def close_failed(self, trial) -> None:
        """Give a FAILED trial its one FAILED run with the error (`TrialRunner.close_failed`)."""
        self.trials.close_failed(trial)

    def _trial_runner(self) -> TrialRunner:
        return TrialRunner(
            self.config, self.store, self.prepared, self.experiment_id, self.parent_run_id
        )

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
            self.trials.trials_left(self.planned, retry_failed),
            processes.usable_cores(),
        )
        if count:
            self.say(f"{count} local workers by default ({reason}; workers 0: in this process)")
        else:
            self.say(f"trials in this process by default ({reason}; workers N: N processes)")
        return count

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

    def _run_trial(self, trial) -> dict[str, float]:
        self._progress.trial_started(trial.trial_id)
        return self.trials.run(trial)

    def _report_trial(self, trial) -> None:
        self._progress.trial_ended(trial, self.trials.scores)

    def _summarise(self, oracle) -> SweepSummary:
        """The sweep's statuses and best configuration, logged on the parent run; each FAILED
        trial keeps its one FAILED run. The experiment's runs are fetched here, once, for the
        summary and the callbacks at the sweep's end."""
        trials = oracle.trials if hasattr(oracle, "trials") else {}
        for trial in trials.values():
            if trial.status == "FAILED":
                self.close_failed(trial)
        runs = self.store.runs(self.experiment_id)
        summary = SweepSummary(self.parent_run_id, self.experiment_id, runs)
        summarise(self.config, self.store, summary, trials, self.planned, self.project)
        return summary


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
    Sweep(config, store, state_dir, say=say, progress=progress).work(oracle_address, worker_id)
