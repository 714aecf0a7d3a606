"""MLflow's own web processes over the project's store: the UI, and the tracking server that
several sweep workers (on one machine or many) log to."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from study.errors import ServerError
from study.tracking.backends import DEFAULT_STORE, is_postgres, sqlite_path
from study.tracking.store import Store

LOOPBACK = ("127.0.0.1", "localhost", "::1")
QUIET_UVICORN = "--log-level warning"  # uvicorn's INFO lines: start-up, shutdown
QUIET_WARNINGS = "ignore:starlette.middleware.wsgi is deprecated:UserWarning"


def is_loopback(host: str) -> bool:
    return host in LOOPBACK


def reachable(host: str) -> str:
    """The address to reach a process bound to `host`: a wildcard bind is reached locally."""
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def check_port(host: str, port: int) -> None:
    """Raise ServerError when `port` on `host` cannot be bound. MLflow's server itself only
    logs the bind error and exits with code 0, so this is checked before it starts."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as MLflow's binds
            probe.bind((host, port))
    except OSError as error:
        fix = (
            "stop the process that holds it or choose another port"
            if error.errno == errno.EADDRINUSE
            else "give a host name or address of this machine"
        )
        raise ServerError(f"cannot serve on {host}:{port}: {error.strerror}; {fix}") from None


def runs_url(base_url: str, experiment_id: str) -> str:
    """The UI's address of an experiment's runs, opened as model training (MLflow 3's UI
    otherwise opens an experiment on its GenAI overview)."""
    return f"{base_url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


@dataclass(frozen=True)
class Command:
    """An `mlflow ui` or `mlflow server` process to start. The store URI travels in its
    environment, not on its command line, where any user of the machine could read a password
    in it with `ps`."""

    line: list[str]
    env: dict[str, str]
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{reachable(self.host)}:{self.port}"


def command(
    kind: str,
    store_uri: str,
    host: str,
    port: int,
    allowed_hosts: str | None = None,
    artifacts: str | Path | None = None,
    quiet: bool = False,
) -> Command:
    """The `mlflow ui` or `mlflow server` process for a store.

    The store URI reaches MLflow as `--backend-store-uri` through its environment variable
    MLFLOW_BACKEND_STORE_URI. A server stores the artifacts that clients send it under
    `artifacts`, a folder or an object store URI (by default `artifacts/` beside a SQLite
    database, `mlruns/artifacts` under the working directory for PostgreSQL), so workers on
    other machines need no shared folder. A `quiet` process prints no line per request or
    start-up step (QUIET_UVICORN), no deprecation warning of MLflow's web framework, and no
    notice that the registry shares the backend store (it is passed explicitly)."""
    line = [sys.executable, "-m", "mlflow", kind]
    line += ["--host", host, "--port", str(port), "--workers", "1"]
    if kind == "server":
        database = sqlite_path(store_uri)
        if artifacts is None and database is not None:
            artifacts = database.resolve().parent / "artifacts"
        elif artifacts is None and is_postgres(store_uri):
            artifacts = DEFAULT_STORE.parent.resolve() / "artifacts"
        if artifacts is not None:
            line += ["--serve-artifacts", "--artifacts-destination", str(artifacts)]
    if allowed_hosts:
        line += ["--allowed-hosts", allowed_hosts]
    if quiet:
        line += ["--uvicorn-opts", QUIET_UVICORN]
    # MLflow's job runner (GenAI scorers and evaluations, none of which a study uses) keeps
    # eight polling processes busy beside the server: off, unless the environment asks for it.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    env["MLFLOW_BACKEND_STORE_URI"] = store_uri
    if quiet:
        env["MLFLOW_REGISTRY_STORE_URI"] = store_uri
        env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), QUIET_WARNINGS]))
    return Command(line, env, host, port)


def run(server: Command, when_up: Callable[[], None] | None = None) -> int:
    """Run a server in the foreground, its output to this terminal, until it exits (its exit
    code) or Ctrl-C stops it; `when_up` is called once it answers."""
    process = subprocess.Popen(server.line, env=server.env)
    try:
        if when_up is not None:
            wait_until_up(server, process)
            when_up()
        return process.wait()
    except KeyboardInterrupt:
        stop(process)
        raise


def start(server: Command, log: Path | None = None, wait_s: float = 120.0) -> subprocess.Popen:
    """Start a server, its output to `log` (else this terminal), and return once it answers
    on its /health endpoint; raise ServerError when it cannot start."""
    process = launch(server, log)
    wait_until_up(server, process, log, wait_s)
    return process


def launch(server: Command, log: Path | None = None) -> subprocess.Popen:
    """Start a server process, its output to `log` (else this terminal), without waiting for it
    to answer (`wait_until_up` does)."""
    check_port(server.host, server.port)
    output = open(log, "ab") if log else None  # noqa: SIM115 - the server process owns it
    return subprocess.Popen(server.line, stdout=output, stderr=output, env=server.env)


def wait_until_up(
    server: Command, process: subprocess.Popen, log: Path | None = None, wait_s: float = 120.0
) -> None:
    """Return once the started server answers on its /health endpoint; raise ServerError when
    it exits first or does not answer within `wait_s` seconds."""
    kind = server.line[3]
    why = f"its log {log} says why" if log else "its output above says why"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(
                f"mlflow {kind} on {server.url} exited with code {process.returncode} before it "
                f"answered; {why}, for example a store it cannot open"
            )
        try:
            urllib.request.urlopen(f"{server.url}/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    stop(process)
    raise ServerError(
        f"mlflow {kind} did not answer on {server.url} within {wait_s:.0f} s; {why}, or the "
        "machine is too busy to start it in time"
    )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class TrackingServer:
    """The tracking server through which local workers log to a SQLite store (a file that takes
    one writer at a time), started before it is needed: the sweep launches it while it loads
    its data and builds the feature cache, on a store whose database it creates first."""

    def __init__(self, store: Store, log: Path):
        store.initialize()
        self.command = command("server", store.uri, "127.0.0.1", free_port())
        log.parent.mkdir(parents=True, exist_ok=True)
        self.process, self.log = launch(self.command, log), log

    def url(self) -> str:
        """Its address, once it answers."""
        wait_until_up(self.command, self.process, self.log)
        return self.command.url

    def stop(self) -> None:
        stop(self.process)


def serve(
    kind: str,
    store: Store,
    host: str,
    port: int,
    allowed_hosts: str | None = None,
    artifacts: str | None = None,
    quiet: bool = True,
    open_browser: bool = False,
) -> int:
    """Run MLflow's UI (`kind` "ui") or tracking server ("server") over `store` on host:port
    until Ctrl-C, keeping its artifacts in `artifacts` (None: MLflow's default) and its
    start-up lines out when `quiet`. Says where it serves and, for the UI, each recent
    experiment's runs, the latest opened in a browser with `open_browser`."""
    store.check()
    check_port(host, port)
    store.initialize()  # a new store's tables are created here, whole, not by MLflow's server
    if not is_loopback(host):
        print(
            f"warning: serving on {host}: the runs become visible to the network", file=sys.stderr
        )
    spec = command(kind, store.uri, host, port, allowed_hosts, artifacts, quiet)
    what = "MLflow UI" if kind == "ui" else "MLflow tracking server"
    print(f"{what} for {store.display_uri} at http://{host}:{port} (Ctrl-C stops it)")
    address = None
    if kind == "ui":
        for n, experiment in enumerate(store.recent_experiments()):
            url = runs_url(spec.url, experiment.experiment_id)
            address = address or url
            print(f"{'latest experiment' if n == 0 else '  also'} {experiment.name}: {url}")
    sys.stdout.flush()
    when_up = None
    if open_browser:
        import webbrowser

        def when_up() -> None:
            webbrowser.open(address or spec.url)

    return run(spec, when_up)
