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
    store.get_run(run_id)  # connect first, so that the barrier lines up the inserts
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


def test_runs_read_through_the_client_are_the_frame_of_search_runs(tmp_path):
    # A tracking server's runs are read through MLflow's client, without its global tracking
    # URI; they must give the frame `mlflow.search_runs` gives, as the database reader does.
    import math

    import mlflow
    import pandas as pd
    from mlflow.entities import Metric, Param

    from study.tracking.run_tables import runs_through_client

    uri = f"sqlite:///{tmp_path}/m.db"
    Store(uri).initialize()
    client = MlflowClient(uri)
    shown, empty = client.create_experiment("shown"), client.create_experiment("empty")
    first = client.create_run(shown, start_time=1_000, tags={"kind": "trial"}).info.run_id
    client.log_batch(
        first,
        metrics=[
            Metric("loss", 0.5, 1, 0),
            Metric("loss", 0.25, 2, 1),
            Metric("odd", math.nan, 3, 0),
        ],
        params=[Param("width", "64")],
    )
    client.set_terminated(first, "FINISHED", end_time=5_000)
    other = client.create_run(shown, start_time=1_000).info.run_id
    client.log_batch(other, params=[Param("width", "128"), Param("dropout", "0.2")])
    client.create_run(shown, start_time=9_000)  # still running
    client.delete_run(client.create_run(shown, start_time=2_000).info.run_id)

    mlflow.set_tracking_uri(uri)
    for experiment_id in (shown, empty):
        expected = mlflow.search_runs(experiment_ids=[experiment_id])
        found = runs_through_client(client, experiment_id)
        pd.testing.assert_frame_equal(
            found[sorted(found.columns)], expected[sorted(expected.columns)]
        )
