"""`study train` end to end: a real process, real NEU images, a real SQLite MLflow store."""

import csv
import json
import shutil

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from .conftest import CLASSES, NEU, REPO, nested_copy, run_study

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
        "confusion_matrix.csv",
        "per_class_metrics.csv",
    } <= artifacts
    assert not [path for path in artifacts if path.endswith(".png")]  # figures: the report's
    split_file = client.download_artifacts(run_id, "split.csv", str(tmp_path))
    with open(split_file) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 72
    for name in ("train", "val", "test"):
        assert sum(r["split"] == name for r in rows) == int(run[f"params.dataset.{name}_images"])


def train_on(root, tmp_path, *sets):
    """`study train` of the smoke study at 32 px, briefly, on `root`: the process, its run."""
    uri = f"sqlite:///{tmp_path}/m.db"
    args = ["--set", f"data.root={root}", "--set", "data.image_size=32"]
    args += ["--set", "frozen.epochs=2", "--set", "fine_tune.epochs=0"]
    for item in sets:
        args += ["--set", item]
    done = run_study(
        "train",
        SMOKE,
        *args,
        "--tracking-uri",
        uri,
        "--state-dir",
        str(tmp_path / "s"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (run,) = MlflowClient(uri).search_runs(["1"])
    return done, run, MlflowClient(uri)


def test_train_on_nested_class_folders_with_masks_beside_the_images(tmp_path):
    root = nested_copy(tmp_path / "tiles", per_class=10)
    done, run, client = train_on(root, tmp_path, 'data.exclude=["*.png"]')
    assert "note: ignored 1 image file outside the class folders (dataset.jpg)" in done.stdout
    assert "note: data.include/exclude: using 31 of 61 image files" in done.stdout
    params = run.data.params
    assert params["dataset.images"] == "30"
    assert json.loads(params["dataset.class_counts"]) == {name: 10 for name in CLASSES[:3]}
    per_split = [json.loads(params[f"dataset.{s}_class_counts"]) for s in ("train", "val", "test")]
    assert [sum(counts.values()) for counts in per_split] == [
        int(params[f"dataset.{s}_images"]) for s in ("train", "val", "test")
    ]
    classes = client.download_artifacts(run.info.run_id, "classes.csv", str(tmp_path))
    with open(classes) as handle:
        assert list(csv.reader(handle))[1:] == [[n, "10", f"{n}/Imgs"] for n in CLASSES[:3]]


def test_train_from_a_labels_file(tmp_path):
    root = nested_copy(tmp_path / "tiles", per_class=10)
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId", "ClassId"])
        for n, name in enumerate(CLASSES[:3]):
            writer.writerows([f"{name}/Imgs/exp_{i}.jpg", f"defect_{n}"] for i in range(1, 11))
    done, run, _ = train_on(
        root,
        tmp_path,
        "data.labels=labels.csv",
        "data.label_columns={file: ImageId, class: ClassId}",
    )
    assert "note: ignored 31 image files that labels.csv does not list" in done.stdout
    counts = json.loads(run.data.params["dataset.class_counts"])
    assert counts == {"defect_0": 10, "defect_1": 10, "defect_2": 10}
    assert run.data.params["dataset.class_source"].startswith("labels file")


def test_train_on_elpv_labels_as_shipped(tmp_path):
    """ELPV's own labels.csv lines (whitespace-separated, no header), 6 images per defect
    probability, read with columns by position and the binary class map."""
    elpv, root = NEU.parent / "elpv", tmp_path / "elpv"
    (root / "images").mkdir(parents=True)
    lines = (elpv / "labels.csv").read_text().splitlines()
    chosen = [
        line
        for grade in ("0.0", "0.3333333333333333", "0.6666666666666666", "1.0")
        for line in [line for line in lines if line.split()[1] == grade][:6]
    ]
    for line in chosen:
        shutil.copy(elpv / line.split()[0], root / "images")
    (root / "labels.csv").write_text("\n".join(chosen) + "\n")
    done, run, _ = train_on(
        root,
        tmp_path,
        "data.labels=labels.csv",
        "data.label_columns={file: 0, class: 1}",
        "data.class_map={0.0: functional, 0.333: functional, 0.667: defective, 1.0: defective}",
    )
    assert "data: 24 images, 2 classes" in done.stdout
    params = run.data.params
    assert json.loads(params["dataset.class_counts"]) == {"defective": 12, "functional": 12}
    assert params["dataset.class_source"].endswith("(columns 0, 1, classes by data.class_map)")
    assert 0 <= run.data.metrics["test_auc_ovr_macro"] <= 1
