"""Worker processes of a distributed sweep: the pool of local workers a chief starts, and the
entry point of a worker process.

A worker is a Keras Tuner tuner that asks the chief's oracle for trials and runs them as the
sweep's child runs. A local worker that dies is started again under the same id, and the chief
hands it back the trial it had.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from study import server
from study.config import StudyConfig
from study.tracking import Store, redact, sigterm_as_interrupt

if TYPE_CHECKING:
    from study.sweep import Sweep


class WorkerPool:
    """Local worker processes for a chief; a worker that dies is started again under the same
    id, so the chief hands it back the trial it was running."""

    MAX_RESTARTS = 3

    def __init__(self, sweep: Sweep, count: int, host: str, port: str):
        self.sweep, self.count, self.address = sweep, count, f"{host}:{port}"
        self.threads = max(1, (os.cpu_count() or 1) // count)
        self.tracker = None
        self.tracking_uri = sweep.store.uri
        if sweep.store.uri.startswith("sqlite:"):  # several writers: go through a server
            tracking = server.command("server", sweep.store.uri, "127.0.0.1", server.free_port())
            self.tracker = server.start(tracking, log=sweep.project / "tracking-server.log")
            self.tracking_uri = tracking.url
        self.processes: dict[str, multiprocessing.Process] = {}
        self.restarts: dict[str, int] = {}
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        for number in range(1, self.count + 1):
            self._spawn(f"worker{number}")
        self._watcher.start()
        self.sweep.say(
            f"chief at {self.address} with {self.count} workers ({self.threads} threads each), "
            f"tracking through {redact(self.tracking_uri)}"
        )

    def _spawn(self, worker_id: str) -> None:
        context = multiprocessing.get_context("spawn")
        process = context.Process(
            target=work,
            args=(
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
        while not self._stopping.wait(1.0):
            for worker_id, process in list(self.processes.items()):
                if process.is_alive() or process.exitcode == 0:
                    continue
                restarts = self.restarts.get(worker_id, 0)
                if restarts >= self.MAX_RESTARTS:
                    continue
                self.restarts[worker_id] = restarts + 1
                print(
                    f"{worker_id} died (exit code {process.exitcode}); starting it again",
                    file=sys.stderr,
                    flush=True,
                )
                self._spawn(worker_id)

    def stop(self) -> None:
        self._stopping.set()
        for process in self.processes.values():
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
                process.join()
        if self.tracker is not None:
            server.stop(self.tracker)


def work(
    config: StudyConfig,
    tracking_uri: str,
    state_dir: str,
    oracle_address: str,
    worker_id: str,
    threads: int,
    progress: bool,
) -> None:
    """A worker process: its share of the cores, then trials until the chief says stop."""
    from study.sweep import Sweep

    sigterm_as_interrupt()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    say = functools.partial(print, f"[{worker_id}]", flush=True)
    sweep = Sweep(config, Store(tracking_uri), Path(state_dir), say=say, progress=progress)
    sweep.work(oracle_address, worker_id)
