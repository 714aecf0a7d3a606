"""`study.tracking.store.Store` against real SQLite and PostgreSQL stores, from several processes
at once."""

from __future__ import annotations

import multiprocessing

import pytest
from mlflow import MlflowClient

from study.tracking.store import Store

PROCESSES = 6
DIGESTS = {"train": "1f2e3d4c", "validation": "5a6b7c8d", "test": "9e0f1a2b"}


def _log_at_once(uri: str, run_id: str, folder: str, barrier) -> None:
    store = Store(uri)
    store.client.get_run(run_id)  # connect first, so that the barrier lines up the inserts
    barrier.wait()
    store.log_datasets(run_id, "neu", folder, DIGESTS)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_runs_logging_the_same_new_dataset_at_once_each_get_it(kind, tmp_path, request):
    # Workers of one sweep log the same data set as their runs' inputs at the same moment;
    # only one insert of a new dataset wins, and the others must still get it.
    if kind == "sqlite":
        uri = f"sqlite:///{tmp_path}/m.db"
    else:
        uri = request.getfixturevalue("postgres_uri")
    store = Store(uri)
    experiment = store.experiment(f"race-{tmp_path.name}")  # new in the session's database
    runs = [store.create_run(experiment, f"r{n}", {}) for n in range(PROCESSES)]
    # spawn, as the sweep's workers: a forked child would share MLflow's PostgreSQL connections
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    workers = [
        context.Process(target=_log_at_once, args=(uri, run_id, str(tmp_path), barrier))
        for run_id in runs
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    client = MlflowClient(uri)
    for run_id in runs:
        inputs = client.get_run(run_id).inputs.dataset_inputs
        assert sorted(item.dataset.digest for item in inputs) == sorted(DIGESTS.values())
