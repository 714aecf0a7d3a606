"""A throwaway PostgreSQL cluster for tests: initdb and pg_ctl on a free port of 127.0.0.1,
everything (data, socket, log) in one temporary folder, never a system service.

PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user (which
Debian's package creates) and that user owns the folder."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from study.tracking import server

# Debian installs the programs outside PATH (and links some of them into /usr/local/bin).
DEBIAN_BINARIES = Path("/usr/lib/postgresql")
USER = "study"
PASSWORD = "s3cret-pw"
DATABASE = "study"


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(DEBIAN_BINARIES.glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


def _as_cluster_owner(line: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *line] if os.geteuid() == 0 else line


@contextmanager
def cluster(bin_dir: Path, kept: Path | None = None) -> Iterator[tuple[str, int]]:
    """A running cluster with a password-protected role and database: yields its URI
    (postgresql://USER:PASSWORD@127.0.0.1:PORT/DATABASE) and port, and removes it at the end.
    With `kept`, the cluster lives in that folder and is stopped but kept at the end; a cluster
    already there is started again (on a new port)."""
    folder = kept or Path(tempfile.mkdtemp(prefix="study-pg-"))
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, log = folder / "data", folder / "server.log"
    password_file = folder / "password"
    password_file.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        os.chown(password_file, owner.pw_uid, owner.pw_gid)
    port = server.free_port()

    def run(*line: str) -> None:
        command = _as_cluster_owner([str(bin_dir / line[0]), *line[1:]])
        subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True)

    created = not (data / "PG_VERSION").exists()
    if created:
        run(
            "initdb",
            "-D",
            str(data),
            "-U",
            USER,
            f"--pwfile={password_file}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        )
    options = f"-p {port} -h 127.0.0.1 -k {folder}"
    run("pg_ctl", "start", "-w", "-D", str(data), "-l", str(log), "-o", options)
    try:
        if created:
            run("createdb", "-h", str(folder), "-p", str(port), "-U", USER, DATABASE)
        yield f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}", port
    finally:
        run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(data))
        if kept is None:
            shutil.rmtree(folder, ignore_errors=True)


TEMPLATE = "study_mlflow_template"  # MLflow's tables, made once per cluster


def fresh_database(uri: str, name: str) -> str:
    """A new database `name` on the cluster of `uri` (a user that may create databases), a copy
    of a template that holds MLflow's tables (made on first use: MLflow's migrations take
    seconds, a copy does not). Returns its URI."""
    import psycopg
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    from study.tracking.backends import sqlalchemy_uri

    with psycopg.connect(uri, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [TEMPLATE])
        if exists.fetchone() is None:
            admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
            engine = sqlalchemy.create_engine(
                sqlalchemy_uri(_with_database(uri, TEMPLATE)), poolclass=sqlalchemy.pool.NullPool
            )
            try:
                _initialize_tables(engine)
            finally:
                engine.dispose()
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return _with_database(uri, name)


def _with_database(uri: str, name: str) -> str:
    return f"{uri.rpartition('/')[0]}/{name}"
