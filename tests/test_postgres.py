"""A PostgreSQL tracking store: `study train` logging into it directly and through
`study server`, and the one-line errors of a URI that cannot be used. Against a real throwaway
cluster (the `postgres_uri` fixture)."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import pytest
from mlflow.tracking import MlflowClient

from study import cli
from study.tracking import server
from study.tracking.backends import sqlalchemy_uri

from .conftest import REPO, run_study, wait_for_health

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")


def train(study: str, tracking_uri: str, cwd: Path):
    """`study train` of the smoke study (the package's sample, random weights) at 32 px, frozen
    phase only, as experiment `study`."""
    cwd.mkdir(parents=True, exist_ok=True)
    sets = ["data.image_size=32", "frozen.epochs=2", "fine_tune.epochs=0", f"name={study}"]
    args = [arg for item in sets for arg in ("--set", item)]
    return run_study(
        "train", SMOKE, *args, "--tracking-uri", tracking_uri, "--state-dir", "state", cwd=cwd
    )


def only_run(postgres_uri: str, study: str):
    client = MlflowClient(sqlalchemy_uri(postgres_uri))
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None, f"no experiment {study} in PostgreSQL"
    (run,) = client.search_runs([experiment.experiment_id])
    return run


def with_netloc(uri: str, netloc: str, path: str | None = None) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=netloc, path=parts.path if path is None else path))


def test_train_logs_its_run_into_postgresql(postgres_uri, tmp_path):
    done = train("pg_direct", postgres_uri, tmp_path)
    assert done.returncode == 0, done.stderr
    run = only_run(postgres_uri, "pg_direct")
    assert run.info.status == "FINISHED"
    assert run.data.params["data.image_size"] == "32"
    assert 0 <= run.data.metrics["test_accuracy"] <= 1
    artifacts = MlflowClient(sqlalchemy_uri(postgres_uri)).list_artifacts(run.info.run_id)
    assert "split.csv" in {a.path for a in artifacts}


@pytest.fixture
def postgres_server(postgres_uri, tmp_path):
    """A real `study server` over the PostgreSQL store on a free port: (port, its folder)."""
    folder = tmp_path / "server"
    folder.mkdir()
    port = server.free_port()
    log = folder / "server.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "study.cli", "server", "--port", str(port)]
            + ["--tracking-uri", postgres_uri],
            cwd=folder,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    try:
        wait_for_health(port, process, log)
        yield port, folder, process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def test_server_over_postgresql_keeps_runs_there_and_serves_their_artifacts(
    postgres_uri, postgres_server, tmp_path
):
    port, folder, process = postgres_server
    # MLflow's processes get the store URI, with its password, through their environment
    password = urlsplit(postgres_uri).password
    mlflow_lines = [" ".join(p.cmdline()) for p in process_children(process)]
    assert any("mlflow server" in line for line in mlflow_lines)
    assert not any(password in line for line in mlflow_lines)

    done = train("pg_served", f"http://127.0.0.1:{port}", tmp_path / "client")
    assert done.returncode == 0, done.stderr
    run = only_run(postgres_uri, "pg_served")  # in PostgreSQL itself
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")

    # the client wrote no artifact of its own: the server holds them, under mlruns/artifacts
    assert not (tmp_path / "client" / "mlruns").exists()
    artifact_path = run.info.artifact_uri.removeprefix("mlflow-artifacts:/") + "/split.csv"
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow-artifacts/artifacts/{artifact_path}"
    with urllib.request.urlopen(url, timeout=30) as answer:
        served = answer.read()
    assert served == (folder / "mlruns" / "artifacts" / artifact_path).read_bytes()
    rows = list(csv.DictReader(io.StringIO(served.decode())))
    assert len(rows) == int(run.data.params["dataset.images"])


def process_children(process: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(process.pid).children(recursive=True)


def bad_uri(postgres_uri: str, case: str) -> tuple[str, str]:
    """A URI to the test cluster with one thing wrong, and the error line it must give."""
    parts = urlsplit(postgres_uri)
    where = f"{parts.hostname}:{parts.port}"
    if case == "closed port":
        closed = f"127.0.0.1:{server.free_port()}"
        uri = with_netloc(postgres_uri, f"{parts.username}:{parts.password}@{closed}")
        line = (
            f"cannot connect to PostgreSQL at {closed}: connection refused; is the server running?"
        )
        return uri, line
    if case == "wrong password":
        uri = with_netloc(postgres_uri, f"{parts.username}:not-{parts.password}@{where}")
        return uri, (
            f"PostgreSQL at {where} refused user '{parts.username}': password authentication "
            "failed; check the user and the password (in the URI, PGPASSWORD or ~/.pgpass)"
        )
    uri = with_netloc(postgres_uri, parts.netloc, "/no_such_db")
    return uri, (
        f"PostgreSQL at {where}: database 'no_such_db' does not exist; create it with "
        f"createdb --owner {parts.username} no_such_db"
    )


@pytest.mark.parametrize("case", ["closed port", "wrong password", "missing database"])
def test_an_unusable_postgresql_uri_is_one_line_and_writes_nothing(postgres_uri, tmp_path, case):
    uri, line = bad_uri(postgres_uri, case)
    study = "pg_bad_" + case.replace(" ", "_")
    done = train(study, uri, tmp_path / "work")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {line}"]
    assert os.listdir(tmp_path / "work") == []
    client = MlflowClient(sqlalchemy_uri(postgres_uri))
    assert client.get_experiment_by_name(study) is None


def test_server_over_an_unusable_postgresql_uri_exits_with_one_line(postgres_uri, tmp_path):
    uri, line = bad_uri(postgres_uri, "wrong password")
    done = run_study(
        "server", "--port", str(server.free_port()), "--tracking-uri", uri, cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {line}"]
    assert os.listdir(tmp_path) == []


def test_a_plain_postgresql_uri_names_psycopg_3():
    plain = "postgresql://u:p@db.example:5432/runs"
    assert sqlalchemy_uri(plain) == "postgresql+psycopg://u:p@db.example:5432/runs"
    assert sqlalchemy_uri("postgresql+psycopg2://u@h/d") == "postgresql+psycopg2://u@h/d"


def test_server_command_for_postgresql_serves_artifacts_and_keeps_the_uri_off_its_line():
    uri = sqlalchemy_uri("postgresql://study:hunter2-secret@db.example:5432/runs")
    default = server.command("server", uri, "0.0.0.0", 5000)
    at = default.line.index("--artifacts-destination")
    assert "--serve-artifacts" in default.line
    assert default.line[at + 1] == str(Path.cwd() / "mlruns" / "artifacts")
    assert not any("hunter2-secret" in part for part in default.line)
    assert default.env["MLFLOW_BACKEND_STORE_URI"] == uri
    # an object store URI keeps its double slash through the command line
    args = cli._parser().parse_args(["server", "--artifacts-destination", "s3://bucket/runs"])
    chosen = server.command("server", uri, "0.0.0.0", 5000, None, args.artifacts_destination)
    assert chosen.line[chosen.line.index("--artifacts-destination") + 1] == "s3://bucket/runs"
