"""`study ui` serves the store's runs on 127.0.0.1, opened where the study is, with runs a
person can read, seen in a real browser (Debian's chromium, driven by Playwright)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import mlflow
from mlflow.tracking import MlflowClient
from playwright.sync_api import sync_playwright

from study.tracking import server
from study.tracking.server import free_port
from study.tracking.store import Store

from .browser import launch, start_ui
from .conftest import REPO, SMOKE, wait_for_health

ARTIFACTS = REPO / "test-artifacts"
ADDRESS = re.compile(r"latest experiment smoke: (http://\S+/#/experiments/(\d+)/runs\S*)")


def test_mlflow_job_runner_is_off_unless_the_environment_asks(monkeypatch):
    # its eight polling processes would take CPU from the trials beside the server
    flag = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
    monkeypatch.delenv(flag, raising=False)
    assert server.command("server", "sqlite:///m.db", "127.0.0.1", 5000).env[flag] == "false"
    monkeypatch.setenv(flag, "true")
    assert server.command("ui", "sqlite:///m.db", "127.0.0.1", 5000).env[flag] == "true"


def test_ui_serves_the_page_and_the_runs_api(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    store = Store(uri)
    experiment = store.experiment("browse-me")
    with store.run(experiment, "a-run", {"run_type": "train"}) as run_id:
        store.log(run_id, metrics=[("test_accuracy", 0.5, 0)])

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "ui", "--tracking-uri", uri, "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        page = None
        deadline = time.monotonic() + 120
        while page is None and time.monotonic() < deadline:
            try:
                page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(1)
        assert page is not None and "MLflow" in page
        request = urllib.request.Request(
            base + "/api/2.0/mlflow/runs/search",
            data=json.dumps({"experiment_ids": [experiment]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        runs = json.loads(urllib.request.urlopen(request, timeout=10).read())["runs"]
        assert [r["info"]["run_id"] for r in runs] == [run_id]
        assert runs[0]["data"]["metrics"][0] == {
            **runs[0]["data"]["metrics"][0],
            "key": "test_accuracy",
            "value": 0.5,
        }
        # bound to loopback only
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
    assert f"at http://127.0.0.1:{port}" in output


def test_study_server_is_quiet_unless_verbose(tmp_path):
    # MLflow's server prints uvicorn's INFO lines, a deprecation warning of its web framework
    # and a notice about the registry's store: kept off the terminal as the sweep's noise is.
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "server", "--port", str(port), "--tracking-uri"]
        + [f"sqlite:///{tmp_path}/m.db"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_health(port, process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert f"at http://127.0.0.1:{port}" in output
    noise = ["INFO:", "Registry store URI not provided", "StarletteDeprecationWarning"]
    assert [words for words in noise if words in output] == [], output
    assert "--uvicorn-opts" not in server.command("ui", "sqlite:///m.db", "127.0.0.1", port).line


def test_the_smoke_sweep_prints_no_tensorflow_log_lines(smoke_sweep):
    _, _, result = smoke_sweep
    lines = (result.stdout + result.stderr).replace("\r", "\n").splitlines()
    noise = [
        line
        for line in lines
        if line.startswith(("E0000", "I0000", "W0000")) or "oneDNN" in line or "cuInit" in line
    ]
    assert noise == []
    assert "[  4/4]" in result.stdout


def test_runs_say_what_they_are_with_their_data_source_and_system_metrics(smoke_sweep):
    _, uri, _ = smoke_sweep
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["smoke"])
    trials = found[found["tags.run_type"] == "trial"]
    parent = found[found["tags.run_type"] == "sweep"].iloc[0]
    assert parent["tags.mlflow.runName"] == "smoke · grid sweep"
    for _, trial in trials.iterrows():
        name, activation = trial["tags.mlflow.runName"], trial["params.model.activation"]
        assert activation in name.split() and f"s{trial['tags.seed']}" in name.split()
        note = trial["tags.mlflow.note.content"]
        assert f"model.activation = {activation}" in note
        assert f"{trial['metrics.val_accuracy']:.4f}" in note
        assert trial["tags.mlflow.source.name"].startswith(f"study sweep {SMOKE}")
        assert trial["tags.mlflow.source.type"] == "LOCAL"
        assert trial["metrics.system/cpu_utilization_percentage"] >= 0
    assert len(set(trials["tags.mlflow.runName"])) == len(trials) == 4
    client = MlflowClient(uri)
    for run_id in trials["run_id"]:
        inputs = client.get_run(run_id).inputs.dataset_inputs
        contexts = {tag.value for i in inputs for tag in i.tags if tag.key == "mlflow.data.context"}
        assert contexts == {"train", "validation", "test"}
        assert {i.dataset.name for i in inputs} == {"neu"}
        assert all(json.loads(i.dataset.source)["uri"].endswith("neu") for i in inputs)
    experiment = client.get_experiment_by_name("smoke")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"].startswith("Embedded NEU sample")


def test_study_ui_opens_on_the_sweep_and_its_trials_in_chromium(smoke_sweep):
    folder, uri, _ = smoke_sweep
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["smoke"])
    trial_names = sorted(found[found["tags.run_type"] == "trial"]["tags.mlflow.runName"])
    ui, port, log = start_ui(uri, folder)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        wait_for_health(port, ui, log)
        printed = ADDRESS.search(log.read_text())
        assert printed, log.read_text()
        address, experiment_id = printed.groups()
        assert address == (
            f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs"
            "?workflowType=machine_learning"
        )
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(address)
                parent = page.get_by_role("row").filter(has_text="smoke · grid sweep")
                parent.wait_for(timeout=60_000)
                assert page.get_by_role("columnheader", name="Run Name").first.is_visible()
                assert page.get_by_text("Embedded NEU sample").first.is_visible()
                parent.locator('button[data-component-id*="runnamecellrenderer"]').click()
                for name in trial_names:
                    page.get_by_role("row").filter(has_text=name).wait_for(timeout=30_000)
                page.screenshot(path=ARTIFACTS / "ui_runs.png")
            finally:
                browser.close()
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
