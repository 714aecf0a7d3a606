"""`study train` end to end: a real process, real NEU images, a real SQLite MLflow store."""

import csv

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from .conftest import REPO, run_study

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")


def test_train_logs_one_complete_run(neu_slice, tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    done = run_study(
        "train",
        SMOKE,
        "--set",
        f"data.root={neu_slice}",
        "--set",
        "data.image_size=48",
        "--tracking-uri",
        uri,
        "--state-dir",
        str(tmp_path / "state"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "FINISHED" in done.stdout

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["smoke"])
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED"
    for knob in ("activation", "dropout", "head_width", "optimizer", "decay_rate"):
        assert run[f"params.{knob}"] is not None
    assert run["params.model.activation"] == "elu"
    assert run["params.data.image_size"] == "48"
    assert run["metrics.parameters_total"] == 4_376_022
    assert run["metrics.parameters_trainable_frozen"] == 106_306
    for stage in ("frozen", "fine_tune"):
        assert 0 <= run[f"metrics.{stage}_test_accuracy"] <= 1
        assert run[f"metrics.{stage}_wall_time_s"] > 0
    assert run["metrics.test_accuracy"] == run["metrics.fine_tune_test_accuracy"]
    assert run["metrics.test_error_rate"] == pytest.approx(1 - run["metrics.test_accuracy"])
    assert run["tags.weights_source"] == "none"
    assert len(run["tags.data_fingerprint"]) == 64

    client = MlflowClient(uri)
    run_id = run["run_id"]
    history = client.get_metric_history(run_id, "frozen/val_loss")
    assert [m.step for m in history] == list(range(len(history))) and len(history) >= 1
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {
        "config.yaml",
        "split.csv",
        "confusion_matrix.png",
        "confusion_matrix.csv",
        "learning_curves_frozen.png",
        "learning_curves_fine_tune.png",
        "per_class_metrics.csv",
    } <= artifacts
    split_file = client.download_artifacts(run_id, "split.csv", str(tmp_path))
    with open(split_file) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 72
    for name in ("train", "val", "test"):
        assert sum(r["split"] == name for r in rows) == int(run[f"params.dataset.{name}_images"])
