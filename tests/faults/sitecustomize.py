"""Fault injection for the worker tests, set up by `kill_harness.worker_dies_on`.

Python imports this module at start-up in every process that has tests/faults on its
PYTHONPATH. With STUDY_TEST_KILL_TRIAL set to a trial id, a local worker process of a
distributed sweep (a multiprocessing spawn child) SIGKILLs itself as soon as the chief hands it
that trial, before the trial's MLflow run exists. Any other process (the chief, its tracking
server) is left alone.
"""

import os
import signal
import sys

KILL_TRIAL = "STUDY_TEST_KILL_TRIAL"


def die_on(doomed: str) -> None:
    from study.tuning import tuner

    run_trial = tuner.StudyTuner.run_trial

    def run_or_die(self, trial, *args, **kwargs):
        if trial.trial_id == doomed:
            os.kill(os.getpid(), signal.SIGKILL)
        return run_trial(self, trial, *args, **kwargs)

    tuner.StudyTuner.run_trial = run_or_die


if os.environ.get(KILL_TRIAL) and "--multiprocessing-fork" in sys.argv:
    die_on(os.environ[KILL_TRIAL])
