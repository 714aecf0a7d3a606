"""Worker processes of a distributed sweep: how many local workers a sweep starts by default,
the pool of local workers a chief starts, the lease by which a worker holds its id, and the
entry point of a worker process.

A worker is a Keras Tuner tuner that asks the chief's oracle for trials and runs them as the
sweep's child runs. A local worker that dies is started again under the same id, and the chief
hands it back the trial it had; after `MAX_RESTARTS` deaths on one trial that trial is FAILED
and the worker goes on with the next one. Every worker announces itself with a lease on the
sweep's parent run (host, pid and a heartbeat), through the tracking server: a second process
cannot take an id a live worker holds, and the chief fails the trial of a worker, local or
remote, whose heartbeat stopped, so it never waits forever on a dead worker. A chief started
again after it died leaves the trial a worker was running with that worker while its lease is
live (a remote worker outlives its chief and reports the trial to the new one).

This module knows the sweep only as a `Chief`: the sweep hands the pool the function a worker
process runs once it is set up (`WorkerRun`), so the two modules import one way.
"""

from __future__ import annotations

import _thread
import functools
import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import keras_tuner as kt

from study import processes
from study.config import StudyConfig
from study.errors import WorkerIdError
from study.processes import sigterm_as_interrupt
from study.tracking import server
from study.tracking.provenance import redact
from study.tracking.store import Store
from study.tuning import tuner
from study.tuning.keras_tuner_adapter import abandon, give_back, queued_retries

DEFAULT_WORKERS = 2  # local worker processes when `default_workers` runs trials two at a time
WORKER_MEMORY_GB = 4  # set aside per fine-tuning worker: TensorFlow, the model, its gradients
MIN_TRIAL_IMAGE_EPOCHS = 20_000  # frozen.epochs x images of a trial worth a worker process
MAX_RESTARTS = 3  # deaths of a local worker on one trial before that trial is FAILED
LEASE_TAG = "worker_lease."  # + worker id, on the parent run: JSON host, pid, beat, released
HEARTBEAT_S = 10.0
LEASE_EXPIRES_S = 120.0  # a worker silent this long is dead: its trial is FAILED

# What a worker process runs once it is set up: the sweep's trials, handed out by the chief at
# `oracle_address`: (config, store, state_dir, oracle_address, worker_id, say, progress).
WorkerRun = Callable[[StudyConfig, Store, Path, str, str, Callable[[str], None], bool], None]


def default_workers(
    config: StudyConfig,
    images: int,
    trials_left: int | None,
    cores: int,
    memory_gb: float | None = None,
) -> tuple[int, str]:
    """How many local worker processes run a sweep's trials when `workers` is not given (0:
    in the sweep's process), and why.

    A trial on cached features that does not fine-tune trains the head alone, a few small
    matrix products per step that leave a second core idle: two such trials at once, in two
    worker processes, ran 1.6x as many trials per minute of trial time on 2 cores
    (benchmarks/workers_throughput.py). Workers cost tens of seconds to start (each imports
    TensorFlow and loads the cache; a SQLite store is served through a tracking server) and
    log through that server, so trials whose frozen phase is short (frozen.epochs x images
    below MIN_TRIAL_IMAGE_EPOCHS, as in the smoke study) or a single trial left run in the
    sweep's process. At most DEFAULT_WORKERS: the speed-up was measured with 2, and every
    worker holds its own TensorFlow and feature cache in memory.

    Fine-tuning trials on cached activations run two at a time too, when the memory available
    (`memory_gb`, else the kernel's MemAvailable) holds DEFAULT_WORKERS x WORKER_MEMORY_GB:
    the frozen phase, validation, scoring and logging of a trial leave a core idle beside its
    convolutions. `benchmarks/workers_throughput.py --space search_spaces/optimizer.yaml`
    measures what that buys."""
    if _fine_tunes_on_cached_activations(config):
        kind = "fine-tuning trials on cached activations"
        available = available_memory_gb() if memory_gb is None else memory_gb
        if available < DEFAULT_WORKERS * WORKER_MEMORY_GB:
            return 0, (
                f"{available:.1f} GB of memory available, under {DEFAULT_WORKERS} x "
                f"{WORKER_MEMORY_GB} GB for fine-tuning workers"
            )
    elif not _frozen_only_on_cached_features(config):
        return 0, "the trials fine-tune or do not run on cached features"
    else:
        kind = "frozen-phase trials on cached features"
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
    return min(cores, DEFAULT_WORKERS), f"{kind}{left}, {cores} usable cores"


def _fine_tunes_on_cached_activations(config: StudyConfig) -> bool:
    """Whether every trial of the sweep trains both phases on caches: the head on cached
    features, then the cells above a fine-tuning cut on cached activations."""
    return (
        all(_space_values(config, "features.cache"))
        and min(_space_values(config, "frozen.epochs")) > 0
        and min(_space_values(config, "fine_tune.epochs")) > 0
        and config.fine_tune.first_trainable is not None  # the cut is not sweepable
    )


def available_memory_gb() -> float:
    """The memory the kernel says new processes can have (MemAvailable), in GB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9


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


class Chief(Protocol):
    """What the pool needs of the sweep whose chief it serves."""

    config: StudyConfig
    store: Store
    state_dir: Path
    progress: bool
    parent_run_id: str
    serves_remote_workers: bool
    say: Callable[[str], None]

    def close_failed(self, trial) -> None: ...


class Lease:
    """A worker id, held by one live process and announced on the sweep's parent run."""

    def __init__(self, store: Store, parent_run_id: str, worker_id: str):
        self.store, self.parent_run_id, self.worker_id = store, parent_run_id, worker_id
        self.tag = LEASE_TAG + worker_id
        self._stopping = threading.Event()
        self._beater = threading.Thread(target=self._beat, daemon=True)

    def acquire(self) -> None:
        """Take the id, or raise WorkerIdError when a live worker holds it."""
        holder = read_leases(self.store, self.parent_run_id).get(self.worker_id)
        if holder is not None and alive(holder):
            age = time.time() - holder["beat"]
            raise WorkerIdError(
                f"worker id {self.worker_id} is held by a live worker (pid {holder['pid']} "
                f"on {holder['host']}, heartbeat {age:.0f} s ago); give this worker another "
                "`worker_id`",
                settings=("worker_id",),
            )
        self._write(released=False)
        self._beater.start()

    def release(self) -> None:
        self._stopping.set()
        self._write(released=True)

    def _beat(self) -> None:
        while not self._stopping.wait(HEARTBEAT_S):
            try:
                self._write(released=False)
            except Exception as error:  # noqa: BLE001 - a missed beat is retried at the next one
                print(f"[{self.worker_id}] heartbeat not sent: {error}", file=sys.stderr)

    def _write(self, released: bool) -> None:
        lease = {"host": socket.gethostname(), "pid": os.getpid(), "beat": time.time()}
        lease["released"] = released
        self.store.log(self.parent_run_id, tags={self.tag: json.dumps(lease)})


def read_leases(store: Store, parent_run_id: str) -> dict[str, dict]:
    """Worker id -> its lease, as the parent run holds them."""
    tags = store.get_run(parent_run_id).tags
    return {
        key.removeprefix(LEASE_TAG): json.loads(value)
        for key, value in tags.items()
        if key.startswith(LEASE_TAG)
    }


def alive(lease: dict) -> bool:
    """Whether the process that holds a lease still runs: on this machine its pid tells, on
    another its heartbeat."""
    if lease["released"]:
        return False
    if lease["host"] == socket.gethostname():
        return processes.alive(lease["pid"])
    return time.time() - lease["beat"] < LEASE_EXPIRES_S


class WorkerPool:
    """The chief's watch over its workers: local worker processes (none with `count` 0), each
    running `run` once set up, started again when they die, and the leases of remote
    workers. The workers log through `tracking` (None: to the sweep's store), which the pool
    stops with them."""

    def __init__(
        self,
        sweep: Chief,
        count: int,
        host: str,
        port: str,
        run: WorkerRun,
        tracking: server.TrackingServer | None = None,
    ):
        self.sweep, self.count, self.address, self.run = sweep, count, f"{host}:{port}", run
        self.threads = max(1, processes.usable_cores() // max(count, 1))
        self.tracker = tracking
        self.tracking_uri = tracking.url() if tracking else sweep.store.uri
        self.processes: dict[str, multiprocessing.Process] = {}
        self.deaths: dict[tuple[str, str | None], int] = {}  # (worker, trial) -> deaths
        self.failure: str | None = None  # why the sweep cannot go on, when no worker is left
        self.oracle = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    def start(self, oracle: kt.Oracle) -> None:
        self.oracle = oracle
        self._keep_trials_of_live_workers()
        for number in range(1, self.count + 1):
            self._spawn(f"worker{number}")
        self._watcher.start()
        if self.count:
            self.sweep.say(
                f"chief at {self.address} with {self.count} workers ({self.threads} threads "
                f"each), tracking through {redact(self.tracking_uri)}"
            )

    def _keep_trials_of_live_workers(self) -> None:
        """A chief started again on a sweep: Keras Tuner queues the trials that were running
        to be handed out again. A trial whose worker still holds a live lease (a remote worker
        that outlived the old chief and is still running it, or one started again under its
        id) stays that worker's, and the chief waits for it to end the trial, rather than
        have another worker close its run and run it a second time. The trial of a worker
        whose lease is released or expired is handed out again; whoever gets it closes its
        run KILLED."""
        interrupted = {
            worker_id: trial_id
            for worker_id, trial_id in self.oracle.interrupted.items()
            if trial_id in queued_retries(self.oracle) and worker_id != "chief"
        }
        if not interrupted:
            return
        leases = read_leases(self.sweep.store, self.sweep.parent_run_id)
        for worker_id, trial_id in interrupted.items():
            lease = leases.get(worker_id)
            if lease is None or not alive(lease):
                self.sweep.say(f"trial {trial_id} of {worker_id} runs again: {worker_id} is gone")
                continue
            give_back(self.oracle, worker_id, trial_id)
            self.sweep.say(
                f"trial {trial_id} stays with {worker_id}, which still holds its lease (pid "
                f"{lease['pid']} on {lease['host']}): waiting for it to end the trial"
            )

    def _spawn(self, worker_id: str) -> None:
        context = multiprocessing.get_context("spawn")
        process = context.Process(
            target=work,
            args=(
                self.run,
                self.sweep.config,
                self.tracking_uri,
                str(self.sweep.state_dir),
                self.address,
                worker_id,
                self.threads,
                self.sweep.progress,
            ),
            name=worker_id,
        )
        process.start()
        self.processes[worker_id] = process

    def _watch(self) -> None:
        last_lease_check = time.monotonic()
        while not self._stopping.wait(1.0):
            for worker_id, process in list(self.processes.items()):
                if not process.is_alive() and process.exitcode != 0:
                    self._died(worker_id, process.exitcode)
            if time.monotonic() - last_lease_check >= HEARTBEAT_S:
                last_lease_check = time.monotonic()
                self._expire_remote_workers()

    def _died(self, worker_id: str, exitcode: int | None) -> None:
        trial = self.oracle.ongoing_trials.get(worker_id)
        key = (worker_id, trial.trial_id if trial else None)
        self.deaths[key] = deaths = self.deaths.get(key, 0) + 1
        if deaths <= MAX_RESTARTS:
            _tell(f"{worker_id} died (exit code {exitcode}); starting it again")
            self._spawn(worker_id)
            return
        if trial is not None:
            reason = (
                f"{worker_id} died {deaths} times running this trial (last exit code {exitcode})"
            )
            self._fail(worker_id, reason, give_up=False)
            _tell(f"trial {trial.trial_id} FAILED: {reason}; {worker_id} goes on with the next")
            self._spawn(worker_id)
            return
        del self.processes[worker_id]
        self._fail(worker_id, "", give_up=True)
        _tell(f"{worker_id} died {deaths} times before it got a trial (exit code {exitcode})")
        if not self.processes and not self.sweep.serves_remote_workers:
            self.failure = f"every local worker died {MAX_RESTARTS + 1} times; see their output"
            _thread.interrupt_main()

    def _expire_remote_workers(self) -> None:
        try:
            leases = read_leases(self.sweep.store, self.sweep.parent_run_id)
        except Exception as error:  # noqa: BLE001 - the tracking server may be busy: next time
            _tell(f"worker leases not read: {error}")
            return
        waited_for = set(self.oracle.tuner_ids) | set(self.oracle.ongoing_trials)
        for worker_id in waited_for - set(self.processes) - {"chief"}:
            lease = leases.get(worker_id)
            if lease is None:
                continue
            silent = time.time() - lease["beat"]
            if silent < LEASE_EXPIRES_S:
                continue
            reason = f"worker {worker_id} stopped: no heartbeat for {silent:.0f} s"
            trial = self._fail(worker_id, reason, give_up=True)
            _tell(reason + (f"; its trial {trial.trial_id} FAILED" if trial else ""))

    def _fail(self, worker_id: str, reason: str, give_up: bool):
        trial = abandon(self.oracle, worker_id, reason, give_up)
        if trial is not None:
            self.sweep.close_failed(trial)
        return trial

    def stop(self) -> None:
        self._stopping.set()
        for process in self.processes.values():
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
                process.join()
        if self.tracker is not None:
            self.tracker.stop()


def _tell(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def work(
    run: WorkerRun,
    config: StudyConfig,
    tracking_uri: str,
    state_dir: str,
    oracle_address: str,
    worker_id: str,
    threads: int,
    progress: bool,
) -> None:
    """A worker process: its share of the cores, then `run`: trials until the chief says stop."""
    sigterm_as_interrupt()
    threading.Thread(target=_stop_with_chief, args=(os.getppid(),), daemon=True).start()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    say = functools.partial(print, f"[{worker_id}]", flush=True)
    run(config, Store(tracking_uri), Path(state_dir), oracle_address, worker_id, say, progress)


def _stop_with_chief(chief: int) -> None:
    """A local worker ends when its chief is gone (killed): its run ends KILLED, and the chief,
    started again, hands its trial out anew (a SIGKILL follows if SIGTERM is not enough)."""
    while os.getppid() == chief:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30.0)
    os.kill(os.getpid(), signal.SIGKILL)
