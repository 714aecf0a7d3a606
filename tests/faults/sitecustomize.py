"""Fault injection for the worker tests, set up by `kill_harness.worker_dies_on`.

Python imports this module at start-up in every process that has tests/faults on its
PYTHONPATH. With STUDY_TEST_KILL_TRIAL set to a trial id, a local worker process of a
distributed sweep (a multiprocessing spawn child) SIGKILLs itself as soon as the chief hands it
that trial, before the trial's MLflow run exists. Any other process (the chief, its tracking
server) is left alone.

With STUDY_TEST_HOLD_RUNS set to a path (`kill_harness.runs_held_until`), a process holds
each run it starts open, RUNNING and its data sets logged, until that path exists; it names
the run it holds in the file `<path>.held`.
"""

import os
import signal
import sys
import time

KILL_TRIAL = "STUDY_TEST_KILL_TRIAL"
HOLD_RUNS = "STUDY_TEST_HOLD_RUNS"


def die_on(doomed: str) -> None:
    from study.tuning import tuner

    run_trial = tuner.StudyTuner.run_trial

    def run_or_die(self, trial, *args, **kwargs):
        if trial.trial_id == doomed:
            os.kill(os.getpid(), signal.SIGKILL)
        return run_trial(self, trial, *args, **kwargs)

    tuner.StudyTuner.run_trial = run_or_die


def hold_runs(gate: str) -> None:
    from study.tracking.store import Store

    log_datasets = Store.log_datasets

    def log_and_hold(self, run_id, *args, **kwargs):
        log_datasets(self, run_id, *args, **kwargs)
        held = f"{gate}.held"
        with open(f"{held}.partial", "w") as marker:
            marker.write(run_id)
        os.replace(f"{held}.partial", held)
        while not os.path.exists(gate):
            time.sleep(0.2)

    Store.log_datasets = log_and_hold


if os.environ.get(HOLD_RUNS):
    hold_runs(os.environ[HOLD_RUNS])
if os.environ.get(KILL_TRIAL) and "--multiprocessing-fork" in sys.argv:
    die_on(os.environ[KILL_TRIAL])
