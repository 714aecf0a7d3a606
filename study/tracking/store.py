"""The MLflow store: the study's questions to MLflow as named methods, and run lifecycles.

The default store is SQLite at `mlruns/mlflow.db` under the working directory, with artifacts
beside it; `MLFLOW_TRACKING_URI` or `--tracking-uri` point elsewhere (another SQLite file, a
PostgreSQL database, or an `mlflow server`). Every run this module starts ends FINISHED, FAILED
or KILLED.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from study.errors import TrackingError
from study.files import slug
from study.tracking.backends import (
    check_uri,
    create_sqlite_store,
    is_postgres,
    no_progress_bar,
    resolve_uri,
    sqlite_path,
)
from study.tracking.provenance import redact, source_tags
from study.tracking.run_tables import (
    histories_from_database,
    runs_from_database,
    runs_through_client,
)

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")

PARENT_TAG = "mlflow.parentRunId"
ERROR_TAG = "error"
PREDICTIONS = "predictions.csv"  # artifact: the final model's prediction for each image
NOTE_TAG = "mlflow.note.content"  # the description of a run or an experiment in the MLflow UI
REPORT_NOTE = "Report: "  # starts the paragraph of a sweep's description that names its report
CONFIGURATIONS = "configurations.json"  # a sweep's configurations, best first (a table)
# MLflow 3's UI shows an experiment with this tag as model training (runs, not GenAI traces).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
_BATCH = {"params": 100, "tags": 100, "metrics": 1000}
# How SQLite and PostgreSQL word the loss of a race to insert a dataset (also through a server)
_DATASET_RACE = (
    "UNIQUE constraint failed: datasets",
    'duplicate key value violates unique constraint "dataset_pk"',
)
_DATASET_ATTEMPTS = 3
# Trials last seconds: MLflow's default of one system-metrics sample per 10 s records none.
SYSTEM_METRICS_INTERVAL_S = 1.0


@dataclass(frozen=True)
class LoggedRun:
    """A run as the study reads it back."""

    run_id: str
    status: str  # RUNNING, FINISHED, FAILED or KILLED
    deleted: bool
    params: dict[str, str]
    metrics: dict[str, float]  # each metric's latest value
    tags: dict[str, str]


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str


@dataclass(frozen=True)
class ModelVersion:
    """A version of a model in the Model Registry."""

    name: str
    version: str
    run_id: str
    tags: dict[str, str]


def _logged_run(run) -> LoggedRun:
    return LoggedRun(
        run.info.run_id,
        run.info.status,
        run.info.lifecycle_stage == "deleted",
        dict(run.data.params),
        dict(run.data.metrics),
        dict(run.data.tags),
    )


def _model_version(found) -> ModelVersion:
    return ModelVersion(found.name, str(found.version), found.run_id, dict(found.tags))


def _tags_filter(tags: dict[str, str]) -> str:
    """An MLflow filter string matching runs with these tags (values of letters, digits and
    `-_.`: ids, run types, hashes)."""
    return " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())


class Store:
    """One MLflow tracking store: the study's questions to MLflow, as named methods. MLflow's
    client and its filter strings stay inside this class.

    Experiments: `experiment`, `find_experiment`, `experiment_names`, `recent_experiments`.
    Runs: `create_run`, `run`, `end_run`, `reopen_run`, `get_run`, `child_runs`,
    `latest_running_run`, `orphaned_runs`, `runs` (the runs frame), `histories`.
    Logging: `log`, `log_datasets`, `log_text`, `log_artifact`, `log_artifacts`, `log_table`.
    Artifacts: `download_artifact`, `artifact_names`, `read_artifacts`.
    Model Registry: `find_model_version`, `model_version_by_alias`, `set_model_version_tags`,
    `set_alias`. Nothing is written to the store before `experiment()` is called."""

    def __init__(self, uri: str | None = None):
        self.uri = resolve_uri(uri)
        self._client = None

    @property
    def display_uri(self) -> str:
        return redact(self.uri)

    @property
    def _mlflow(self):
        """MLflow's client of this store: it never leaves this class."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self.initialize()
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def initialize(self) -> None:
        """Create a new SQLite store's tables, whole (`create_sqlite_store`), before anything
        else opens it (MLflow's server would create them step by step)."""
        database = sqlite_path(self.uri)
        if database is not None and not database.exists():
            create_sqlite_store(database)

    @property
    def is_database(self) -> bool:
        """Whether the runs live in a SQLite or PostgreSQL database this process reads itself
        (not behind a tracking server)."""
        return sqlite_path(self.uri) is not None or is_postgres(self.uri)

    def histories(self, run_id: str, keys: Iterable[str]) -> dict[str, list[float]]:
        """The values the run logged under each of `keys`, by step; a key it never logged is
        left out."""
        if self.is_database:
            return histories_from_database(self.uri, run_id, keys)
        found = {}
        for key in keys:
            points = self._mlflow.get_metric_history(run_id, key)
            if points:
                found[key] = [m.value for m in sorted(points, key=lambda m: m.step)]
        return found

    def check(self) -> None:
        """Fail fast, without writing anything, when the store cannot be used."""
        check_uri(self.uri)

    def experiment(self, name: str, description: str = "") -> str:
        """The id of the named experiment, created if needed, tagged as model training and
        described by `description` (when given)."""
        tags = {**EXPERIMENT_KIND, **({NOTE_TAG: description} if description else {})}
        found = self._mlflow.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"experiment {name!r} is deleted in {self.display_uri}; restore it in the "
                    "MLflow UI or rename the study"
                )
            for key, value in tags.items():
                if found.tags.get(key) != value:
                    self._mlflow.set_experiment_tag(found.experiment_id, key, value)
            return found.experiment_id
        location = None
        database = sqlite_path(self.uri)
        if database is not None:
            location = (database.resolve().parent / "artifacts" / slug(name)).as_uri()
        return self._mlflow.create_experiment(name, artifact_location=location, tags=tags)

    def find_experiment(self, name: str) -> str | None:
        """The id of the named experiment, None when there is none (or it is deleted)."""
        found = self._mlflow.get_experiment_by_name(name)
        if found is None or found.lifecycle_stage == "deleted":
            return None
        return found.experiment_id

    def experiment_names(self) -> list[str]:
        return sorted(e.name for e in self._mlflow.search_experiments())

    def recent_experiments(self) -> list[Experiment]:
        """The experiments that hold runs, the one with the latest run first."""
        latest = []
        for experiment in self._mlflow.search_experiments():
            found = self._mlflow.search_runs(
                [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
            )
            if found:
                named = Experiment(experiment.experiment_id, experiment.name)
                latest.append((found[0].info.start_time, named))
        return [experiment for _, experiment in sorted(latest, key=lambda p: p[0], reverse=True)]

    def create_run(
        self, experiment_id: str, name: str, tags: dict[str, str], parent_run_id: str | None = None
    ) -> str:
        tags = {**source_tags(), **tags}
        if parent_run_id:
            tags[PARENT_TAG] = parent_run_id
        return self._mlflow.create_run(experiment_id, run_name=name, tags=tags).info.run_id

    def end_run(self, run_id: str, status: str, error: str | None = None) -> None:
        if error:
            self._mlflow.set_tag(run_id, ERROR_TAG, error[:5000])
        self._mlflow.set_terminated(run_id, status)

    def reopen_run(self, run_id: str) -> None:
        """Mark an ended run RUNNING again (a resumed sweep's parent run)."""
        self._mlflow.update_run(run_id, status="RUNNING")

    def get_run(self, run_id: str) -> LoggedRun:
        return _logged_run(self._mlflow.get_run(run_id))

    def child_runs(self, experiment_id: str, parent_run_id: str, **tags: str) -> list[LoggedRun]:
        """The runs of `parent_run_id` (a sweep's trials) that carry `tags`."""
        query = _tags_filter({**tags, PARENT_TAG: parent_run_id})
        return [_logged_run(run) for run in self._mlflow.search_runs([experiment_id], query)]

    def latest_running_run(self, experiment_id: str, **tags: str) -> str | None:
        """The RUNNING run with `tags` that started last, None when there is none."""
        query = f"{_tags_filter(tags)} and attributes.status = 'RUNNING'"
        found = self._mlflow.search_runs(
            [experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
        )
        return found[0].info.run_id if found else None

    def orphaned_runs(self, experiment_id: str, run_type: str, tags: dict[str, str]) -> list[str]:
        """The RUNNING runs of `run_type` that carry `tags` (compared here: their values may
        hold any character) and have no child run."""
        query = f"{_tags_filter({'run_type': run_type})} and attributes.status = 'RUNNING'"
        orphans = []
        for run in self._mlflow.search_runs([experiment_id], query):
            if any(run.data.tags.get(key) != value for key, value in tags.items()):
                continue
            children = _tags_filter({PARENT_TAG: run.info.run_id})
            if not self._mlflow.search_runs([experiment_id], children, max_results=1):
                orphans.append(run.info.run_id)
        return orphans

    def runs(self, experiment_id: str) -> pd.DataFrame:
        """Every run of the experiment as `mlflow.search_runs` gives it: read from the database
        for a SQLite or PostgreSQL store (`runs_from_database`, the same frame in a fraction of
        the time), through MLflow's client otherwise (a tracking server)."""
        if self.is_database:
            return runs_from_database(self.uri, experiment_id)
        return runs_through_client(self._mlflow, experiment_id)

    @contextmanager
    def run(
        self,
        experiment_id: str,
        name: str,
        tags: dict[str, str],
        parent_run_id: str | None = None,
        system_metrics: bool = False,
    ) -> Iterator[str]:
        """A run that ends FINISHED, FAILED (with the error logged) or KILLED (Ctrl-C), and
        records CPU and memory use (MLflow's system metrics) while it is open if asked to."""
        run_id = self.create_run(experiment_id, name, tags, parent_run_id)
        try:
            with self._system_metrics(run_id, system_metrics):
                yield run_id
        except (KeyboardInterrupt, SystemExit):
            self.end_run(run_id, "KILLED", "interrupted")
            raise
        except BaseException as error:
            self.end_run(run_id, "FAILED", f"{type(error).__name__}: {error}")
            raise
        self.end_run(run_id, "FINISHED")

    @contextmanager
    def _system_metrics(self, run_id: str, on: bool) -> Iterator[None]:
        if not on:
            yield
            return
        import logging

        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no line per run
        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, tracking_uri=self.uri
        )
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()
            # MLflow's monitor publishes a sample only after a whole interval, so a trial shorter
            # than that would have none: publish what it collected since, and one sample now.
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()

    def log(
        self,
        run_id: str,
        params: dict[str, object] | None = None,
        metrics: list[tuple[str, float, int]] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Log many values in few requests. Metrics are (key, value, step)."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        items = {
            "params": [Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
            "metrics": [Metric(k, float(v), now, step) for k, v, step in metrics or []],
            "tags": [RunTag(k, str(v)) for k, v in (tags or {}).items()],
        }
        # One request carries up to MLflow's limit of each kind at once.
        calls = max(-(-len(entries) // _BATCH[kind]) for kind, entries in items.items())
        for call in range(calls):
            self._mlflow.log_batch(
                run_id,
                **{
                    kind: entries[call * _BATCH[kind] : (call + 1) * _BATCH[kind]]
                    for kind, entries in items.items()
                },
            )

    def log_datasets(self, run_id: str, name: str, source: str, digests: dict[str, str]) -> None:
        """One MLflow dataset input per context (train, validation, test): a name, the data's
        digest in that context, and where it comes from (a folder)."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.exceptions import MlflowException
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        with warnings.catch_warnings():  # MLflow registers its local-folder source twice
            warnings.simplefilter("ignore", UserWarning)
            origin = resolve_dataset_source(source)
        inputs = [
            DatasetInput(
                MetaDataset(origin, name=name, digest=digest)._to_mlflow_entity(),
                tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)],
            )
            for context, digest in digests.items()
        ]
        for attempt in range(_DATASET_ATTEMPTS):
            try:
                self._mlflow.log_inputs(run_id, datasets=inputs)
                return
            except MlflowException as error:
                # Two runs logging the same new dataset into one store at once: the later
                # insert loses the race, but the dataset exists now and another attempt links
                # it to this run.
                lost_race = any(words in str(error) for words in _DATASET_RACE)
                if not lost_race or attempt == _DATASET_ATTEMPTS - 1:
                    raise

    def log_artifacts(self, run_id: str, folder: Path, under: str | None = None) -> None:
        """The files of `folder` as the run's artifacts, in its artifact folder `under`."""
        self._mlflow.log_artifacts(run_id, str(folder), under)

    def log_artifact(self, run_id: str, path: Path) -> None:
        self._mlflow.log_artifact(run_id, str(path))

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self._mlflow.log_text(run_id, text, name)

    def log_table(self, run_id: str, table: pd.DataFrame, name: str) -> None:
        """`table` as the run's artifact `name` (JSON), shown as a table in the MLflow UI.

        Written as `MlflowClient.log_table` writes one, but replacing the artifact of an
        earlier call rather than appending to it, so a resumed sweep's table is whole."""
        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            table.to_json(path, orient="split", index=False, date_format="iso")
            self._mlflow.log_artifact(run_id, str(path))
        logged = json.loads(
            self._mlflow.get_run(run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]")
        )
        entry = {"path": name, "type": "table"}
        if entry not in logged:
            self._mlflow.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps([*logged, entry]))

    def download_artifact(self, run_id: str, name: str, folder: Path) -> Path:
        """The run's artifact `name`, downloaded into `folder` (read in place when local),
        without MLflow's progress bar."""
        with no_progress_bar():
            return Path(self._mlflow.download_artifacts(run_id, name, str(folder)))

    def artifact_names(self, run_id: str) -> list[str]:
        """The paths of the run's top-level artifacts."""
        return [item.path for item in self._mlflow.list_artifacts(run_id)]

    def read_artifacts(
        self,
        artifact_uris: Iterable[str],
        name: str,
        read: Callable[[Path], T],
        threads: int,
    ) -> list[T | None]:
        """Each run's artifact `name` as `read` reads it (None for a run that has none), in
        `threads` threads: a read waits on the disk or the artifact server more than it runs
        Python."""
        with no_progress_bar(), ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda uri: self._read_artifact(uri, name, read), artifact_uris))

    def _read_artifact(self, artifact_uri: str, name: str, read: Callable[[Path], T]) -> T | None:
        """The run's artifact `name` as `read` reads it, None when it has none. Read from the
        run's artifact URI (from the runs as searched) rather than by run id, which would look
        the run up in the store again for each file: ten times slower over thousands of runs. A
        local artifact folder is read in place; any other is downloaded to a temporary folder
        first."""
        from mlflow.exceptions import MlflowException
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        from mlflow.utils.file_utils import local_file_uri_to_path
        from mlflow.utils.uri import is_local_uri

        if is_local_uri(artifact_uri, is_tracking_or_registry_uri=False):
            path = Path(local_file_uri_to_path(artifact_uri)) / name
            return read(path) if path.is_file() else None
        with tempfile.TemporaryDirectory() as folder:
            try:
                repository = get_artifact_repository(artifact_uri, tracking_uri=self.uri)
                path = repository.download_artifacts(name, folder)
            except (MlflowException, OSError):
                return None
            return read(Path(path))

    # -- the Model Registry ---------------------------------------------------------------------

    def find_model_version(self, name: str, tag: str, value: str) -> ModelVersion | None:
        """A version of model `name` whose tag `tag` is `value`, None when there is none."""
        found = self._mlflow.search_model_versions(f"name = '{name}' and tags.{tag} = '{value}'")
        return _model_version(found[0]) if found else None

    def model_version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version of model `name` that `alias` names, None when none does."""
        from mlflow.exceptions import MlflowException

        try:
            return _model_version(self._mlflow.get_model_version_by_alias(name, alias))
        except MlflowException:
            return None

    def set_model_version_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._mlflow.set_model_version_tag(name, version, key, value)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._mlflow.set_registered_model_alias(name, alias, version)
