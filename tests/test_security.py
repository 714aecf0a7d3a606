"""Safe defaults: servers bind 127.0.0.1 unless told otherwise, and credentials in a tracking
URI never reach params, tags, state files, terminal output, logs or reports."""

from __future__ import annotations

import logging
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from study import cli

from .conftest import REPO

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")
SECRET = "s3cret-Pa55"


@pytest.mark.parametrize("kind", ["ui", "server"])
def test_servers_bind_loopback_and_warn_when_told_otherwise(kind, tmp_path, monkeypatch, capsys):
    started: list[list[str]] = []
    environments: list[dict] = []

    class Started:
        def __init__(self, line, *args, **kwargs):
            started.append(line)
            environments.append(kwargs.get("env") or {})

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Started)
    uri = f"sqlite:///{tmp_path}/m.db"
    assert cli.main([kind, "--tracking-uri", uri]) == 0
    out, err = capsys.readouterr()
    line = started[-1]
    assert line[line.index("--host") + 1] == "127.0.0.1"
    assert "http://127.0.0.1:5000" in out and "warning" not in err
    # the store URI (which may hold a password) is passed in the environment, not in `ps`
    assert uri not in line and environments[-1]["MLFLOW_BACKEND_STORE_URI"] == uri

    assert cli.main([kind, "--tracking-uri", uri, "--host", "0.0.0.0", "--port", "5001"]) == 0
    out, err = capsys.readouterr()
    line = started[-1]
    assert line[line.index("--host") + 1] == "0.0.0.0"
    assert "warning: serving on 0.0.0.0: the runs become visible to the network" in err


def test_credentials_in_the_tracking_uri_are_never_written(
    tracking_server, tmp_path, capsys, caplog
):
    port, server_folder = tracking_server
    uri = f"http://alice:{SECRET}@127.0.0.1:{port}"
    caplog.set_level(logging.INFO)
    state, reports = tmp_path / "state", tmp_path / "reports"
    sweep = ["sweep", SMOKE, "--tracking-uri", uri, "--state-dir", str(state)]
    for item in (
        "data.image_size=32",
        "frozen.epochs=1",
        "seeds=[0]",
        "hyperparameters.model.activation.values=[elu]",
    ):
        sweep += ["--set", item]
    assert cli.main(sweep) == 0
    assert cli.main(["report", "smoke", "--tracking-uri", uri, "--out", str(reports)]) == 0
    out, err = capsys.readouterr()
    assert f"http://127.0.0.1:{port}" in out  # the address is shown, without the credentials

    client = MlflowClient(f"http://127.0.0.1:{port}")
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    # the trial, its sweep, and the champion model trained again for the registry
    assert sorted(r.data.tags["run_type"] for r in runs) == ["model", "sweep", "trial"]
    assert all(r.info.status == "FINISHED" for r in runs)
    logged = [str(r.data.params) + str(r.data.tags) for r in runs]
    assert (reports / "smoke" / "report.md").is_file()

    texts = {"stdout": out, "stderr": err, "logs": caplog.text}
    texts.update({f"run {r.info.run_id}": text for r, text in zip(runs, logged, strict=True)})
    for folder in (state, reports, server_folder):  # server_folder: the store and artifacts
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files
        texts.update({str(p): p.read_bytes().decode("latin-1") for p in files})
    leaks = [where for where, text in texts.items() if SECRET in text or "alice" in text]
    assert leaks == []
