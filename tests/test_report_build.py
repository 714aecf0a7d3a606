"""`build_report` end to end on a temporary SQLite MLflow store populated through `Store`: the
files it writes, that a rebuild gives the same bytes, and reports of incomplete experiments."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from study.report import ReportError, build_report
from study.tracking.store import Store

from .test_report_tables import activation_sweep, run

CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
FILES = {
    "report.md",
    "report.html",
    "configurations.csv",
    "table2_hyperparameters.csv",
    "table3_before_fine_tuning.csv",
    "table4_after_fine_tuning.csv",
    "table4_fine_tuning_gain.csv",
    "table5_inference.csv",
    "table6_activation_error.csv",
    "knobs.csv",
    "runs.csv",
    "question.csv",
    "champion_ties.csv",
    "omnibus.csv",
    "comparisons.csv",
    "paired_differences.csv",
    "not_beaten.csv",
    "power.csv",
    "backbone_variance.csv",
    "learning_curves_frozen.png",
    "learning_curves_fine_tune.png",
    "confusion_matrix.png",
    "activation_error.png",
    "verdict.png",
    "sweep.png",
    "outcomes.csv.gz",
}


def populate(store: Store, name: str, specs: list[dict], sweep: bool = True) -> str | None:
    """Log the runs as a sweep would: a parent run and its trials, with curves and a
    confusion matrix; returns the parent's run id."""
    experiment = store.experiment(name)
    parent = store.create_run(experiment, f"{name}-sweep", {"run_type": "sweep"}) if sweep else None
    for number, spec in enumerate(specs):
        tags = {k: v for k, v in spec["tags"].items() if k != "mlflow.parentRunId"}
        run_id = store.create_run(experiment, f"{name}-{number}", tags, parent)
        metrics = [(key, value, 0) for key, value in spec["metrics"].items()]
        for stage in ("frozen", "fine_tune"):
            if f"{stage}_val_accuracy" in spec["metrics"]:
                for epoch in range(4):
                    metrics += [
                        (f"{stage}/loss", 1.0 / (epoch + 1), epoch),
                        (f"{stage}/val_loss", 1.2 / (epoch + 1), epoch),
                        (f"{stage}/accuracy", 0.5 + 0.1 * epoch, epoch),
                        (f"{stage}/val_accuracy", 0.45 + 0.1 * epoch, epoch),
                    ]
        store.log(run_id, params=spec["params"], metrics=metrics)
        if spec["status"] == "FINISHED":
            matrix = io.StringIO()
            writer = csv.writer(matrix)
            writer.writerow(["true \\ predicted", *CLASSES])
            for row, label in enumerate(CLASSES):
                writer.writerow([label, *(10 if row == col else number % 2 for col in range(6))])
            store.log_text(run_id, matrix.getvalue(), "confusion_matrix.csv")
            store.log_text(run_id, predictions(spec, number), "predictions.csv")
        store.end_run(run_id, spec["status"], spec["tags"].get("error"))
    if parent:
        store.end_run(parent, "FINISHED")
    return parent


def predictions(spec: dict, number: int) -> str:
    """A predictions.csv whose test rows miss as many of 60 images as the run's error rate."""
    wrong = (
        round(60 * spec["metrics"]["test_error_rate"])
        if "test_error_rate" in spec["metrics"]
        else 0
    )
    lines = ["file,split,class,predicted,correct"]
    for image in range(60):
        missed = (image + number) % 60 < wrong
        guess = "patches" if missed else "crazing"
        lines.append(f"crazing/{image}.jpg,test,crazing,{guess},{int(not missed)}")
    return "\n".join(lines) + "\n"


def bench_run(store: Store, name: str) -> None:
    experiment = store.experiment(name)
    run_id = store.create_run(
        experiment, f"{name}-bench-224px", {"run_type": "bench", "machine": "Test CPU, 2 cores"}
    )
    store.log(
        run_id,
        params={"image_size": 224, "repeats": 20, "warmup": 3},
        metrics=[
            ("batch32_ms_per_step", 900.0, 0),
            ("batch32_ms_per_step_q1", 880.0, 0),
            ("batch32_ms_per_step_q3", 930.0, 0),
            ("batch32_ms_per_image", 900.0 / 32, 0),
            ("batch1_ms_per_step", 60.0, 0),
        ],
    )
    store.end_run(run_id, "FINISHED")


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory) -> tuple[Store, str]:
    folder = tmp_path_factory.mktemp("store")
    store = Store(f"sqlite:///{folder}/m.db")
    specs = activation_sweep(seeds=(0, 1, 2))
    specs += [run(3, status="FAILED"), run(4, "relu", status="KILLED")]
    parent = populate(store, "study", specs)
    bench_run(store, "study")
    return store, parent


def files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_report_files_are_written_logged_and_identical_on_a_rebuild(sweep_store, tmp_path):
    store, parent = sweep_store
    folder = build_report("study", store, tmp_path / "reports")
    assert folder == tmp_path / "reports" / "study"
    first = files(folder)
    assert set(first) == FILES
    assert b"tEXt" not in first["sweep.png"]  # no Software or date chunk

    (folder / "table9_stale.csv").write_text("left by an older build")
    again = build_report("study", store, tmp_path / "reports")
    assert files(again) == first

    logged = {a.path for a in MlflowClient(store.uri).list_artifacts(parent, "report")}
    assert {f"report/{name}" for name in FILES} == logged

    report = first["report.md"].decode()
    assert "1 failed, 1 killed" in report
    assert "Permutation p" in report and "Holm" in report and "new test images too" in report
    assert report.index("## Verdict") < report.index("verdict.png") < report.index("|")
    assert "0.029" in report and "Other data" in report  # fixture data is not NEU
    assert "added up over its 3 seeds" in report and "median" in report
    assert "Test CPU, 2 cores, 224 px" in report
    html = first["report.html"].decode()
    assert html.count("data:image/png;base64,") == 6 and '<img src="activation' not in html

    activations = pd.read_csv(folder / "table6_activation_error.csv").set_index("activation")
    assert list(activations["n"]) == [3, 3, 3, 3]
    assert activations.loc[["relu", "tanh", "sigmoid"], "new_images_ci_low"].notna().all()
    assert (activations["error_pct_ci_low"] >= 0).all()
    assert {"p_holm", "p_permutation", "difference_ci_low"} <= set(activations.columns)
    omnibus = pd.read_csv(folder / "omnibus.csv")
    assert list(omnibus["quantity"]) == ["test_error_pct", "val_accuracy"]
    assert list(omnibus["role"]) == ["primary", "secondary"]
    assert (omnibus["seeds"] == 3).all() and omnibus["p_permutation"].between(0, 1).all()
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == 14 and runs["included"].sum() == 12


def test_a_report_of_failed_runs_only_says_so(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/m.db")
    populate(store, "broken", [run(0, status="FAILED"), run(1, status="KILLED")])
    folder = build_report("broken", store, tmp_path / "reports")
    assert sorted(path.name for path in folder.iterdir()) == [
        "report.html",
        "report.md",
        "runs.csv",
    ]
    report = (folder / "report.md").read_text()
    assert "No finished runs" in report and "1 failed, 1 killed" in report


def test_one_seed_and_no_fine_tuning_are_reported_as_missing(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/m.db")
    specs = [
        run(0, name, stages=("frozen",), **{"fine_tune.epochs": 0}) for name in ("elu", "relu")
    ]
    populate(store, "short", specs, sweep=False)
    folder = build_report("short", store, tmp_path / "reports")
    report = (folder / "report.md").read_text()
    assert "One seed per configuration: no spread" in report
    assert "cannot be rebuilt" in report and "Table 4" in report
    assert "no `study bench` run" in report
    assert not (folder / "table4_after_fine_tuning.csv").exists()
    assert not (folder / "learning_curves_fine_tune.png").exists()
    assert (folder / "learning_curves_frozen.png").exists()


def test_an_unknown_experiment_or_store_is_a_clear_error(sweep_store, tmp_path):
    store, _ = sweep_store
    with pytest.raises(ReportError, match="no experiment 'nope'.*study"):
        build_report("nope", store, tmp_path)
    with pytest.raises(ReportError, match="no MLflow store"):
        build_report("study", Store(f"sqlite:///{tmp_path}/none.db"), tmp_path)
    assert not (tmp_path / "none.db").exists()
