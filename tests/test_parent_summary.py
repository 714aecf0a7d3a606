"""A sweep's parent run names its best configurations without the trials' per-run columns: a
table of the configurations, best first as `outcome.ranking` orders them, and a description
that says where the table is and how to build the report."""

import json

import pandas as pd
import pytest
from mlflow import MlflowClient

from study.tracking import outcome
from study.tracking.store import CONFIGURATIONS, NOTE_TAG, REPORT_NOTE, Store


@pytest.fixture(scope="module")
def parent(smoke_sweep, tmp_path_factory):
    """(store, runs of the smoke experiment, the sweep's parent run, its configurations table)."""
    _, uri, _ = smoke_sweep
    store, client = Store(uri), MlflowClient(uri)
    runs = store.runs(client.get_experiment_by_name("smoke").experiment_id)
    run = client.get_run(runs.loc[runs["tags.run_type"] == "sweep", "run_id"].iloc[0])
    folder = tmp_path_factory.mktemp("table")
    path = client.download_artifacts(run.info.run_id, CONFIGURATIONS, str(folder))
    return store, runs, run, pd.read_json(path, orient="split")


def test_the_configurations_table_follows_the_outcome_ranking(parent):
    _, runs, run, table = parent
    counted = outcome.counted_runs(runs, run.info.run_id).runs
    ranked = outcome.ranking(counted, "val_accuracy")
    assert list(table["configuration"]) == list(ranked["configuration"])
    assert list(table["rank"]) == [1, 2]
    assert table["mean_val_accuracy"].tolist() == pytest.approx(ranked["objective_mean"].tolist())
    assert table["mean_val_accuracy"].is_monotonic_decreasing
    # each row's values and mean are those of its trial runs, over both seeds
    trials = runs[runs["tags.run_type"] == "trial"]
    means = trials.groupby("params.model.activation")["metrics.val_accuracy"].mean()
    for row in table.itertuples():
        assert row.configuration == f"activation={row.activation}"
        assert row.mean_val_accuracy == pytest.approx(means[row.activation])
        assert (row.runs, row.ranked_on_seeds) == (2, "0 1")
    assert set(table["activation"]) == {"elu", "relu"}
    # the MLflow UI shows the artifact as a table
    logged = json.loads(run.data.tags["mlflow.loggedArtifacts"])
    assert {"path": CONFIGURATIONS, "type": "table"} in logged


def test_the_parent_description_points_to_the_table_and_the_report(parent):
    _, _, run, table = parent
    note = run.data.tags[NOTE_TAG]
    assert note.startswith("Embedded NEU sample")
    best = table.iloc[0]
    assert f"(best: {best.configuration}, {best.mean_val_accuracy:.4f})" in note
    assert f"the table {CONFIGURATIONS} in this run's artifacts" in note
    report = [part for part in note.split("\n\n") if part.startswith(REPORT_NOTE)]
    assert report == [
        f"{REPORT_NOTE}not built yet; `study report smoke --sweep {run.info.run_id}` writes "
        "reports/smoke/report.html and logs it to this run's artifacts under report/."
    ]
