"""The trial runner: a Keras Tuner trial as one MLflow child run of the sweep's parent run.

MLflow is checked before a trial runs: a trial that already has a finished run is not run
again, and a run left RUNNING by a killed process is closed as KILLED before the trial runs
anew. A failed trial keeps one FAILED run that says why; retried (`retry_failed`), that run stays,
tagged, and the trial's new run is the one that counts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import keras_tuner as kt

from study.config import StudyConfig
from study.errors import ConfigError, TrainingFailed
from study.runs import session, tracked
from study.tracking.store import LoggedRun, Store
from study.tuning import keras_tuner_adapter, tuner
from study.tuning.keras_tuner_adapter import TUNER_ID

RETRIED_TAG = "retried"  # on a trial's FAILED run that was retried


class TrialRunner:
    """Runs the trials of the sweep whose parent run is `parent_run_id`, as its child runs."""

    def __init__(
        self,
        config: StudyConfig,
        store: Store,
        prepared: session.Prepared,
        experiment_id: str,
        parent_run_id: str,
    ):
        self.config, self.store, self.prepared = config, store, prepared
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self.scores: dict[str, dict[str, float]] = {}  # trial id -> what `run` returned

    def child_runs(self, trial_id: str) -> list[LoggedRun]:
        return self.store.child_runs(self.experiment_id, self.parent_run_id, trial_id=trial_id)

    def run(self, trial) -> dict[str, float]:
        """The trial's scores: from its FINISHED run, or from training it as a new run."""
        trial_id = trial.trial_id
        existing = self.child_runs(trial_id)
        for run in existing:
            if run.status == "FINISHED":
                self.scores[trial_id] = _scores(run.metrics)
                return self.scores[trial_id]
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
        self.scores[trial_id] = {
            f"{split}_{key}": value
            for split, evaluation in final.items()
            for key, value in evaluation.metrics.items()
        }
        return self.scores[trial_id]

    def close_failed(self, trial) -> None:
        """Give a FAILED trial its one FAILED run with the error: its RUNNING run is closed, or,
        when it failed before its run existed, a run is made for it."""
        reason = last_line(trial.message)
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

    def retry_failed(self, oracle, say: Callable[[str], None]) -> None:
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
        say(f"retrying {len(failed)} failed trials: {', '.join(failed) or 'none'}")

    def trials_left(self, planned: int | None, retry_failed: bool) -> int | None:
        """Planned trials without a FINISHED run (or a FAILED one, unless it is retried)."""
        if planned is None:
            return None
        ended = {
            run.tags.get("trial_id")
            for run in self.store.child_runs(
                self.experiment_id, self.parent_run_id, run_type="trial"
            )
            if run.status == "FINISHED" or (run.status == "FAILED" and not retry_failed)
        }
        return max(planned - len(ended), 0)


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


def last_line(message: str | None) -> str:
    """The error of a Keras Tuner trial message (a traceback, or a reason)."""
    return ((message or "").strip().splitlines() or ["no message"])[-1]
