"""`study ui` serves the store's runs on 127.0.0.1."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from study import server
from study.server import free_port
from study.tracking import Store


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
