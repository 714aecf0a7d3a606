"""Where the MLflow store is and whether it can be used: its URI (the default SQLite file, a
PostgreSQL database or a tracking server), a SQLite store created whole, and the checks that
fail fast with one line saying what is wrong."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from study.errors import TrackingError
from study.files import remove_stale_partials
from study.tracking.provenance import redact

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

DEFAULT_STORE = Path("mlruns") / "mlflow.db"
# (connect, read) seconds for the reachability check: an unreachable server fails in seconds.
HEALTH_TIMEOUT_S = (5, 10)
POSTGRES_CONNECT_TIMEOUT_S = 10
# The SQLAlchemy driver for PostgreSQL: psycopg 3, from the optional `server` dependencies.
POSTGRES_DRIVER = "postgresql+psycopg"
_POSTGRES_SCHEMES = ("postgresql", "postgres")


def default_uri() -> str:
    return f"sqlite:///{DEFAULT_STORE.resolve()}"


def resolve_uri(explicit: str | None = None) -> str:
    return sqlalchemy_uri(explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_uri())


def sqlalchemy_uri(uri: str) -> str:
    """The URI as MLflow's SQLAlchemy store should get it.

    A PostgreSQL URI as users type it (`postgresql://USER:PASSWORD@HOST:PORT/DB`, or
    `postgres://`) names no driver, and SQLAlchemy before 2.1 then picks psycopg2, which the
    project does not install: it becomes `postgresql+psycopg://` (psycopg 3). A URI that names
    its driver (`postgresql+psycopg2://`) is kept as it is."""
    scheme, separator, rest = uri.partition("://")
    if separator and scheme in _POSTGRES_SCHEMES:
        return f"{POSTGRES_DRIVER}://{rest}"
    return uri


def is_postgres(uri: str) -> bool:
    return urlsplit(uri).scheme.partition("+")[0] in _POSTGRES_SCHEMES


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


def create_sqlite_store(database: Path) -> None:
    """Create a new SQLite store so that it appears whole or not at all.

    MLflow creates its tables and then migrates them in many steps; a process killed in
    between leaves a file that MLflow refuses to open ever again. So the store is made in a
    temporary file beside `database` and linked under its name only when complete (a link never
    replaces a store that another process created meanwhile)."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    database.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(database)
    partial = database.with_name(f".{database.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    engine = sqlalchemy.create_engine(f"sqlite:///{partial}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
    try:
        os.link(partial, database)
    except FileExistsError:
        pass  # another process made it first; use theirs
    except OSError:  # a file system without hard links
        if not database.exists():
            os.replace(partial, database)
    finally:
        partial.unlink(missing_ok=True)


def check_postgres(uri: str) -> None:
    """Connect to the PostgreSQL database once, writing nothing; raise a TrackingError that
    says what failed. (MLflow itself retries a failed connection for minutes.)"""
    import sqlalchemy

    url = sqlalchemy.engine.make_url(uri)
    where = f"{url.host}:{url.port or 5432}" if url.host else "its local socket"
    try:
        engine = sqlalchemy.create_engine(
            url,
            poolclass=sqlalchemy.pool.NullPool,
            connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
        )
    except ImportError as error:
        raise TrackingError(
            f"tracking URI {redact(uri)} needs the PostgreSQL driver ({error.name} is not "
            "installed): pip install 'steel-defect-study[server]'"
        ) from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.DBAPIError as error:
        raise TrackingError(_postgres_failure(str(error.orig), where, url)) from None
    finally:
        engine.dispose()


def _postgres_failure(message: str, where: str, url: URL) -> str:
    """One line for libpq's message about a failed connection (English messages are
    recognised; others are quoted)."""
    refused = ("Connection refused", "No such file or directory")  # TCP port, local socket
    missing_database = re.search(r'database "(.+?)" does not exist', message)
    missing_role = re.search(r'role "(.+?)" does not exist', message)
    if any(words in message for words in refused):
        return (
            f"cannot connect to PostgreSQL at {where}: connection refused; is the server running?"
        )
    if "failed to resolve host" in message or "could not translate host name" in message:
        return f"cannot connect to PostgreSQL at {where}: no such host {url.host!r}"
    if "timeout expired" in message:
        return (
            f"cannot connect to PostgreSQL at {where}: no answer within "
            f"{POSTGRES_CONNECT_TIMEOUT_S} s; check the host, the port and the firewall"
        )
    if "password authentication failed" in message or "no password supplied" in message:
        return (
            f"PostgreSQL at {where} refused user {url.username!r}: password authentication "
            "failed; check the user and the password (in the URI, PGPASSWORD or ~/.pgpass)"
        )
    if missing_role:
        name = missing_role.group(1)
        return (
            f"PostgreSQL at {where}: user {name!r} does not exist; create it with "
            f"createuser --pwprompt {name}"
        )
    if missing_database:
        name = missing_database.group(1)
        owner = f"--owner {url.username} " if url.username else ""
        return (
            f"PostgreSQL at {where}: database {name!r} does not exist; create it with "
            f"createdb {owner}{name}"
        )
    lines = message.strip().splitlines() or ["no reason given"]
    detail = re.sub(r"^connection failed: .*? failed: (FATAL: +)?", "", lines[0])
    return f"cannot use PostgreSQL at {where}: {detail}"


def check_uri(uri: str) -> None:
    """Fail fast, without writing anything, when the store at `uri` cannot be used."""
    display = redact(uri)
    scheme = urlsplit(uri).scheme
    if scheme in ("http", "https"):
        import requests

        try:
            answer = requests.get(uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S)
        except requests.RequestException as error:
            raise TrackingError(
                f"tracking server {display} cannot be reached "
                f"({type(error).__name__}); start it with `study server`, or pass the "
                "http(s)://HOST:PORT of a running MLflow tracking server as --tracking-uri"
            ) from None
        if answer.status_code in (401, 403):
            raise TrackingError(
                f"tracking server {display} refused the request (HTTP "
                f"{answer.status_code}); give valid credentials (MLFLOW_TRACKING_USERNAME "
                "and MLFLOW_TRACKING_PASSWORD) or another --tracking-uri"
            )
        if answer.status_code != 200:
            raise TrackingError(
                f"{display} does not answer like an MLflow tracking server (GET "
                f"/health gave HTTP {answer.status_code}); pass the http(s)://HOST:PORT of "
                "an MLflow tracking server as --tracking-uri"
            )
    elif scheme == "sqlite":
        database = sqlite_path(uri)
        if database is None:
            raise TrackingError(f"tracking URI {display}: expected sqlite:///PATH/mlflow.db")
        existing = next((p for p in (database, *database.parents) if p.exists()), None)
        if database.exists() and not database.is_file():
            raise TrackingError(f"tracking URI {display}: {database} is not a file")
        if existing is not None and not os.access(existing, os.W_OK):
            raise TrackingError(f"tracking URI {display}: {existing} is not writable")
    elif is_postgres(uri):
        check_postgres(uri)
    elif scheme in ("", "file"):
        raise TrackingError(
            f"tracking URI {display}: MLflow 3 does not accept a plain folder as a "
            "store; use sqlite:///PATH/mlflow.db or an http(s):// tracking server"
        )


@contextmanager
def no_progress_bar() -> Iterator[None]:
    """MLflow draws a progress bar for every download unless told otherwise. Set once around
    all the reads: the environment is shared by their threads."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous
