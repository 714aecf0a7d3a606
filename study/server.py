"""MLflow's own web processes over the project's store: the UI, and the tracking server that
several sweep workers (on one machine or many) log to."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from study.tracking import sqlite_path

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def command(
    kind: str,
    store_uri: str,
    host: str,
    port: int,
    allowed_hosts: str | None = None,
    artifacts: Path | None = None,
) -> list[str]:
    """The `mlflow ui` or `mlflow server` command line for a store.

    A server stores the artifacts that clients send it under `artifacts` (for a SQLite store,
    by default `artifacts/` beside the database), so workers on other machines need no shared
    folder."""
    line = [sys.executable, "-m", "mlflow", kind, "--backend-store-uri", store_uri]
    line += ["--host", host, "--port", str(port), "--workers", "1"]
    if kind == "server":
        database = sqlite_path(store_uri)
        if artifacts is None and database is not None:
            artifacts = database.resolve().parent / "artifacts"
        if artifacts is not None:
            line += ["--serve-artifacts", "--artifacts-destination", str(artifacts)]
    if allowed_hosts:
        line += ["--allowed-hosts", allowed_hosts]
    return line


def start(line: list[str], log: Path | None = None, wait_s: float = 120.0) -> subprocess.Popen:
    """Start a server, its output to `log` (else this terminal), and return once it answers
    on its /health endpoint."""
    host, port = line[line.index("--host") + 1], line[line.index("--port") + 1]
    address = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/health"
    output = open(log, "ab") if log else None  # noqa: SIM115 - the server process owns it
    process = subprocess.Popen(line, stdout=output, stderr=output)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            where = f"; see {log}" if log else ""
            raise RuntimeError(f"mlflow {line[3]} exited with code {process.returncode}{where}")
        try:
            urllib.request.urlopen(address, timeout=2)
            return process
        except OSError:
            time.sleep(0.5)
    stop(process)
    raise RuntimeError(f"mlflow {line[3]} did not answer on {address} within {wait_s:.0f} s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
