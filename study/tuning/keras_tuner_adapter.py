"""Every use of Keras Tuner beyond its public API, in one place.

The study needs a few things Keras Tuner offers no public way to do: write its state files
atomically, repair the state a kill leaves behind, queue trials to run again, name one tuner
state file for the chief and an in-process sweep, end the trial of a dead worker so that the
chief stops waiting for it, and let the chief end as soon as its last worker is told to stop.
Each is a small function or class here, whose docstring says which private member of Keras
Tuner it relies on; tests/test_private_apis.py has one test per member, named after it.
pyproject.toml caps keras-tuner at <1.5 (tested with 1.4.8): an upgrade past the cap must pass
those tests first. No other module of the study touches a Keras Tuner member whose name starts
with an underscore, or imports `keras_tuner.src`.
"""

from __future__ import annotations

import json
import os
import time

import keras_tuner as kt

from study.files import atomic_write_text

TrialStatus = kt.engine.trial.TrialStatus
# Keras Tuner's distribution settings, read from the environment.
TUNER_ID, ORACLE_IP, ORACLE_PORT = (
    "KERASTUNER_TUNER_ID",
    "KERASTUNER_ORACLE_IP",
    "KERASTUNER_ORACLE_PORT",
)
CHIEF_POLL_S = 0.5  # how often the chief looks whether every worker was told to stop


def open_project(oracle: kt.Oracle, directory: str, project_name: str) -> None:
    """Point an oracle at the project folder `directory/project_name` without a tuner (a tuner
    does this itself), so that `reload()` reads that project's state.
    Relies on `Oracle._set_project_dir(directory, project_name)`."""
    oracle._set_project_dir(directory, project_name)


def queue_retries(oracle: kt.Oracle, trial_ids: list[str]) -> None:
    """Queue ended trials to be handed out again, in the order given, before any new trial.
    Relies on `Oracle._retry_queue`, a list that `create_trial` pops from its end."""
    oracle._retry_queue += reversed(trial_ids)


def queued_retries(oracle: kt.Oracle) -> list[str]:
    """The trials the oracle will hand out again before any new one (after a reload: the ones
    that were running). Relies on `Oracle._retry_queue`."""
    return list(oracle._retry_queue)


class DurableStates:
    """An oracle mixin: atomic state files, and a reload that repairs what a kill can leave.

    Relies on `Oracle._get_oracle_fname()` (the project's oracle.json), on
    `Oracle._get_trial_dir(trial_id)` and on `Oracle._save_trial(trial)`, which Keras Tuner
    calls for every write of a trial's trial.json (overridden here to write it atomically), and
    on `Oracle._retry_queue`, which `reload()` fills with the trials that were running."""

    interrupted: dict[str, str] = {}  # after a reload: tuner id -> the trial it was running

    def set_state(self, state) -> None:
        super().set_state(state)
        # `reload()` queues these trials to run again, forgetting which tuner ran each.
        self.interrupted = dict(state["ongoing_trials"])

    def save(self) -> None:
        atomic_write_text(self._get_oracle_fname(), json.dumps(self.get_state()))

    def _save_trial(self, trial) -> None:
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        atomic_write_text(path, json.dumps(trial.get_state()))

    def reload(self) -> None:
        super().reload()
        # A kill between writing a new trial's file and the oracle's leaves a trial the oracle
        # never handed out; forget it, and its id is handed out again.
        for trial_id in set(self.trials) - set(self.start_order):
            del self.trials[trial_id]
        # Keras Tuner records an ended trial as ongoing until the next trial starts; a kill in
        # between would make it run the ended trial again.
        self._retry_queue = [t for t in self._retry_queue if t not in self.end_order]


class SharedStateTuner(kt.engine.base_tuner.BaseTuner):
    """A tuner whose state file is written atomically, and named `tuner0.json` for the chief
    of a distributed sweep as for a sweep in one process: Keras Tuner reloads the oracle only
    from the tuner's own file, named by its tuner id, so either resumes the other's sweep.

    Relies on `BaseTuner._is_worker()` (whether this tuner asks a chief's oracle for trials)
    and on `BaseTuner._get_tuner_fname()`, the path Keras Tuner reads the tuner's state from
    when it is created and that `save()` writes."""

    @property
    def is_worker(self) -> bool:
        """Whether this tuner is a worker of a distributed sweep (not its chief)."""
        return self._is_worker()

    def save(self) -> None:
        if not self.is_worker:
            self.oracle.save()
        atomic_write_text(self._get_tuner_fname(), json.dumps(self.get_state()))

    def _get_tuner_fname(self) -> str:
        if self.is_worker:
            return super()._get_tuner_fname()
        return os.path.join(str(self.project_dir), "tuner0.json")

    def search(self, *fit_args, **fit_kwargs) -> None:
        """Keras Tuner's search, but the chief of a distributed sweep serves its oracle with
        `serve_oracle`, which ends within `CHIEF_POLL_S` of the sweep's end."""
        if self.is_worker or ORACLE_IP not in os.environ:
            super().search(*fit_args, **fit_kwargs)
            return
        if "verbose" in fit_kwargs:
            self.oracle.verbose = fit_kwargs["verbose"]
        self.save()
        serve_oracle(self.oracle, os.environ[ORACLE_IP], os.environ[ORACLE_PORT])


def serve_oracle(oracle: kt.Oracle, host: str, port: str) -> None:
    """Serve `oracle` to the workers over gRPC until the sweep is over: a worker was told to
    stop, no trial is ongoing and every worker that asked for trials was told to stop. Keras
    Tuner's own chief (`oracle_chief.start_server`) looks again only every 20 s once the first
    worker was told to stop while another still ran its last trial.

    Relies on `keras_tuner.src.distribute.oracle_chief.OracleServicer` (the gRPC servicer,
    its `stop_triggered` set when it hands out STOPPED), `oracle_chief.exit_chief` and
    `keras_tuner.src.protos.get_service_grpc()`."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(CHIEF_POLL_S)
    finally:
        server.stop(grace=None)


@kt.synchronized
def give_back(oracle: kt.Oracle, tuner_id: str, trial_id: str) -> None:
    """Take a trial that a reload queued to run again out of the queue and make it the ongoing
    trial of `tuner_id` again, the tuner that was running it: the chief then waits for that
    tuner to end it. Relies on `Oracle._retry_queue`."""
    oracle._retry_queue.remove(trial_id)
    oracle.ongoing_trials[tuner_id] = oracle.trials[trial_id]
    oracle.tuner_ids.add(tuner_id)


@kt.synchronized
def abandon(oracle: kt.Oracle, tuner_id: str, reason: str, give_up: bool):
    """End the trial a dead tuner held as FAILED with `reason` (returns it, or None); with
    `give_up`, the chief also stops waiting for that tuner to ask again.

    Relies on `keras_tuner.synchronized` taking the oracle's lock for a function whose first
    argument is the oracle (it is made for oracle methods), and on the chief's exit rule in
    `keras_tuner.src.distribute.oracle_chief.exit_chief`: the chief serves until no trial is
    ongoing and no tuner id is left in `Oracle.tuner_ids`."""
    trial = oracle.ongoing_trials.get(tuner_id)
    if trial is not None:
        trial.status = TrialStatus.FAILED
        trial.message = reason
        oracle.end_trial(trial)
    if give_up:
        oracle.tuner_ids.discard(tuner_id)
    return trial
