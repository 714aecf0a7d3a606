"""The runs frame and metric histories read straight from MLflow's tables (a SQLite or
PostgreSQL store), or page by page through its client (a tracking server): the frame
`mlflow.search_runs` gives, without its cost."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from study.tracking.backends import sqlalchemy_uri

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy
    from mlflow.tracking import MlflowClient

# `mlflow.search_runs`'s page and limit (SEARCH_MAX_RESULTS_PANDAS, NUM_RUNS_PER_PAGE_PANDAS)
_SEARCH_PAGE, _SEARCH_MAX_RESULTS = 10_000, 100_000
# MLflow's own tables (its SQLAlchemy store's schema; tests/test_private_apis.py checks them)
_RUN_VALUES = {"params": "params", "tags": "tags", "metrics": "latest_metrics"}


@contextmanager
def database_connection(uri: str) -> Iterator[sqlalchemy.Connection]:
    """A connection to the SQLite or PostgreSQL database at `uri` (a store's URI), closed with
    its engine at the end: nothing is pooled between calls."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(sqlalchemy_uri(uri), poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def runs_from_database(uri: str, experiment_id: str) -> pd.DataFrame:
    """The experiment's active runs as `mlflow.search_runs` gives them (the same columns,
    values and order: latest start first), read from MLflow's tables in the SQLite or
    PostgreSQL database at `uri` with four queries. `mlflow.search_runs` builds an ORM object
    per param, tag and metric of every run: about a minute for 5,000 runs of 190 columns."""
    import pandas as pd
    import sqlalchemy

    active = "SELECT run_uuid FROM runs WHERE experiment_id = :id AND lifecycle_stage = 'active'"
    where = {"id": int(experiment_id)}
    with database_connection(uri) as connection:
        info = pd.read_sql(
            sqlalchemy.text(
                "SELECT run_uuid AS run_id, experiment_id, status, artifact_uri, start_time,"
                " end_time FROM runs WHERE experiment_id = :id AND lifecycle_stage = 'active'"
            ),
            connection,
            params=where,
        )
        values = {}
        for kind, table in _RUN_VALUES.items():
            nan = ", is_nan" if kind == "metrics" else ""
            values[kind] = pd.read_sql(
                sqlalchemy.text(
                    f"SELECT run_uuid, key, value{nan} FROM {table} WHERE run_uuid IN ({active})"
                ),
                connection,
                params=where,
            )
    return _runs_frame(info, values)


def runs_through_client(client: MlflowClient, experiment_id: str) -> pd.DataFrame:
    """The experiment's active runs as `mlflow.search_runs` gives them, through MLflow's client
    (a tracking server), page by page as `mlflow.search_runs` reads them, without its global
    tracking URI."""
    import pandas as pd

    found, token = [], None
    while len(found) < _SEARCH_MAX_RESULTS:
        page = client.search_runs(
            [experiment_id],
            max_results=min(_SEARCH_PAGE, _SEARCH_MAX_RESULTS - len(found)),
            page_token=token,
        )
        found += page
        token = page.token
        if not token:
            break
    info = pd.DataFrame(
        [
            (r.info.run_id, r.info.experiment_id, r.info.status, r.info.artifact_uri)
            + (r.info.start_time, r.info.end_time)
            for r in found
        ],
        columns=["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"],
    )
    columns = ["run_uuid", "key", "value"]
    values = {
        kind: pd.DataFrame(
            [(r.info.run_id, k, v) for r in found for k, v in getattr(r.data, kind).items()],
            columns=columns,
        )
        for kind in ("params", "tags")
    }
    values["metrics"] = pd.DataFrame(
        [(r.info.run_id, k, v, math.isnan(v)) for r in found for k, v in r.data.metrics.items()],
        columns=[*columns, "is_nan"],
    )
    return _runs_frame(info, values)


def _runs_frame(info: pd.DataFrame, values: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """`mlflow.search_runs`'s frame from a table of runs and one of their (run_uuid, key,
    value) per kind: params, tags, and metrics (with `is_nan`)."""
    import pandas as pd

    info = info.sort_values(["start_time", "run_id"], ascending=[False, True], kind="stable")
    order = info["run_id"]
    # Built as mlflow.search_runs builds its frame, from lists with None for a missing value,
    # so that pandas gives every column the same type.
    data = {
        "run_id": order.tolist(),
        "experiment_id": info["experiment_id"].astype(str).tolist(),
        "status": info["status"].tolist(),
        "artifact_uri": info["artifact_uri"].tolist(),
        **{moment: _timestamps(info[moment]) for moment in ("start_time", "end_time")},
    }
    for kind, rows in values.items():
        if kind == "metrics":
            rows["value"] = rows["value"].astype(float).mask(rows["is_nan"].astype(bool))
        wide = rows.pivot(index="run_uuid", columns="key", values="value").reindex(order)
        if kind != "metrics":
            wide = wide.astype(object).where(wide.notna(), None)
        data |= {f"{kind}.{key}": items for key, items in wide.to_dict("list").items()}
    return pd.DataFrame(data)


def histories_from_database(uri: str, run_id: str, keys: Iterable[str]) -> dict[str, list[float]]:
    """The values the run logged under each of `keys`, by step (a key it never logged is left
    out), read from MLflow's `metrics` table in the SQLite or PostgreSQL database at `uri`.
    MLflow's `get_metric_history` orders by timestamp first, so the database walks the metric's
    points of every run: about a second per curve in a store of 5,000 runs."""
    import sqlalchemy

    query = sqlalchemy.text(
        "SELECT key, value, is_nan FROM metrics WHERE run_uuid = :run AND key IN :keys "
        "ORDER BY key, step, timestamp, value"
    ).bindparams(sqlalchemy.bindparam("keys", expanding=True))
    with database_connection(uri) as connection:
        rows = connection.execute(query, {"run": run_id, "keys": list(keys)}).all()
    found: dict[str, list[float]] = {}
    for key, value, is_nan in rows:
        found.setdefault(key, []).append(math.nan if is_nan else float(value))
    return found


def _timestamps(milliseconds: pd.Series) -> list:
    """Times in ms since the epoch as the UTC timestamps `mlflow.search_runs` gives (None for
    none)."""
    import pandas as pd

    converted = pd.to_datetime(milliseconds, unit="ms", utc=True)
    return [None if pd.isna(value) else value for value in converted]
