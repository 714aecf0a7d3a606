"""The best model kept, registered, predicting and served: after the smoke sweep,
`models:/smoke@champion` resolves, `study predict` scores the embedded sample, and `mlflow models
serve` answers a request on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from study.data.dataset import sample_root
from study.data.discovery import discover
from study.serving.export import TOLERANCE
from study.tracking import server

from .conftest import REPO, run_study, wait_for_health

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, str]:
    """A finished smoke sweep at 32 px, in its own folder and store."""
    folder = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{folder}/m.db"
    done = run_study(
        "sweep", SMOKE, "--set", "data.image_size=32", "--tracking-uri", uri, cwd=folder
    )
    assert done.returncode == 0, done.stderr
    assert "registered as smoke version 1" in done.stdout  # the first version: the champion
    assert "it is the champion" in done.stdout
    for mlflow_line in ("Successfully registered model", "Created version", "Downloading"):
        assert mlflow_line not in done.stderr + done.stdout  # the one line above says it
    return folder, uri


def versions(client: MlflowClient) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions("name = 'smoke'"))


def champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias("smoke", "champion").version)


# The tests below share the fixture's registered model, and a test run before another may have
# registered a better champion: each checks what it changes, not the registry as it found it.


def test_sweep_registers_its_best_and_a_rerun_registers_nothing_new(swept):
    folder, uri = swept
    client = MlflowClient(uri)
    kept = client.get_model_version("smoke", "1")  # the fixture's sweep registered it
    run = client.get_run(kept.run_id)
    assert run.info.status == "FINISHED"
    assert kept.tags["objective"] == "val_accuracy"
    sweep = client.get_run(kept.tags["sweep"])
    assert float(kept.tags["score"]) == pytest.approx(sweep.data.metrics["best_mean_val_accuracy"])
    assert run.data.tags["seed"] in ("0", "1")
    assert run.data.params["model.activation"] in ("elu", "relu")

    registered, held = versions(client), champion(client)
    again = run_study(
        "sweep", SMOKE, "--set", "data.image_size=32", "--tracking-uri", uri, cwd=folder
    )
    assert again.returncode == 0, again.stderr
    assert "registered as smoke version 1" in again.stdout
    assert versions(client) == registered and champion(client) == held


def test_train_register_moves_champion_only_when_better(swept):
    folder, uri = swept
    client = MlflowClient(uri)
    held = client.get_model_version_by_alias("smoke", "champion")
    registered = versions(client)
    done = run_study(
        "train", SMOKE, "--set", "data.image_size=32", "--set", "fine_tune.epochs=0",
        "--register", "smoke", "--tracking-uri", uri, cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (new,) = set(versions(client)) - set(registered)
    assert f"registered as smoke version {new} " in done.stdout
    version = client.get_model_version("smoke", new)
    score = client.get_run(version.run_id).data.metrics["val_accuracy"]
    assert float(version.tags["score"]) == pytest.approx(score)
    better = score > float(held.tags["score"])
    assert champion(client) == (new if better else str(held.version))


def test_predict_writes_one_row_per_image_and_lists_bad_files(swept, tmp_path):
    folder, uri = swept
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    out = tmp_path / "predictions.csv"
    done = run_study(
        "predict", "models:/smoke@champion", str(sample_root()), str(broken),
        "--out", str(out), "--tracking-uri", uri, cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"skipped {broken}" in done.stderr
    rows = pd.read_csv(out, keep_default_na=False)
    images = discover(sample_root()).files
    classes = sorted({item.label for item in images})
    assert list(rows.columns) == ["file", "predicted", *classes, "skipped"]
    scored = rows[rows["skipped"] == ""]
    assert sorted(scored["file"]) == sorted(str(item.path) for item in images)
    assert set(scored["predicted"]) <= set(classes)
    probabilities = scored[classes].astype(float)
    assert (probabilities.sum(axis=1) - 1).abs().max() < 1e-4
    assert (scored["predicted"] == probabilities.idxmax(axis=1)).all()
    assert rows.iloc[-1]["file"] == str(broken) and "cannot be decoded" in rows.iloc[-1]["skipped"]

    to_stdout = run_study(
        "predict", "models:/smoke@champion", str(images[0].path), "--tracking-uri", uri, cwd=folder
    )
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert len(pd.read_csv(io.StringIO(to_stdout.stdout))) == 1

    missing = run_study(
        "predict", "models:/nothing@champion", str(broken), "--tracking-uri", uri, cwd=folder
    )
    assert missing.returncode == 2 and "models:/nothing@champion" in missing.stderr


def test_served_champion_answers_with_probabilities(swept):
    folder, uri = swept
    port = server.free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/smoke@champion"]
        + ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_health(port, process, path="/ping", wait_s=300)
        images = discover(sample_root()).files[:2]
        records = [{"image": base64.b64encode(item.path.read_bytes()).decode()} for item in images]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"dataframe_records": records}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            predictions = json.load(answer)["predictions"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    classes = sorted({item.label for item in discover(sample_root()).files})
    assert len(predictions) == 2
    for row in predictions:
        assert row["predicted"] in classes
        assert sum(row[name] for name in classes) == pytest.approx(1, abs=1e-4)
        assert row["predicted"] == max(classes, key=row.get)


@pytest.mark.parametrize(
    "format, files",
    [
        # converting NASNet to ONNX takes minutes; test_bench converts it in the default run
        pytest.param("onnx", ["model.onnx"], marks=pytest.mark.slow),
        ("openvino", ["model.bin", "model.xml"]),
    ],
)
def test_export_logs_files_and_parity_beside_the_model(swept, format, files):
    folder, uri = swept
    done = run_study(
        "export", "models:/smoke@champion", "--format", format, "--tracking-uri", uri, cwd=folder
    )
    assert done.returncode == 0, done.stderr
    client = MlflowClient(uri)
    run_id = client.get_model_version_by_alias("smoke", "champion").run_id
    logged = sorted(item.path for item in client.list_artifacts(run_id, f"export/{format}"))
    assert logged == [f"export/{format}/{name}" for name in files]
    metrics = client.get_run(run_id).data.metrics
    test_images = int(client.get_run(run_id).data.params["dataset.test_images"])
    assert metrics[f"export_{format}_parity_images"] == test_images
    assert metrics[f"export_{format}_same_class"] == 1
    assert metrics[f"export_{format}_max_abs_diff"] <= TOLERANCE[format]

    if format != "onnx":  # a second export costs minutes; the slow ONNX case checks a failure
        return
    strict = run_study(
        "export", "models:/smoke@champion", "--format", format, "--tolerance", "0",
        "--tracking-uri", uri, cwd=folder,
    )  # fmt: skip
    if client.get_run(run_id).data.metrics[f"export_{format}_max_abs_diff"] > 0:
        assert strict.returncode == 1
        assert strict.stderr.strip().splitlines()[-1].startswith("export failed: ")
