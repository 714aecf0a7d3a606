"""`study report`: read an experiment's runs from MLflow, make the report, write it under
`<out_dir>/<experiment>/` and log the same files to the sweep's run (artifact folder `report`).

This module is the only part of the report that talks to the store; everything it fetches goes
through `analysis` and `document`, which are pure.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pandas as pd

from study.files import atomic_file, atomic_write_text, slug
from study.report import document, paper, render, tables
from study.report.analysis import analyse
from study.report.importance import importance_metrics, start_importance
from study.report.sections.replication import file_prefix
from study.report.selection import ReportError, select
from study.tracking.store import NOTE_TAG, PREDICTIONS, REPORT_NOTE, Store, sqlite_path

if TYPE_CHECKING:
    from study.tuning.summary import SweepSummary
    from study.tuning.sweep import Sweep

CURVES = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
CONFUSION = "confusion_matrix.csv"
OUTCOMES = "outcomes.csv.gz"  # every included run's result on each test image
ARTIFACT_READERS = 8  # threads that read the runs' artifacts
OWN_FILES = ("report.md", "report.html", "*.csv", "*.png", "*.csv.gz")  # what a rebuild may replace
T = TypeVar("T")


def build_report(
    experiment_name: str,
    store: Store,
    out_dir: Path,
    sweep_run_id: str | None = None,
    objective: str | None = None,
) -> Path:
    """Write the report of one experiment (one sweep of it: the latest, or `sweep_run_id`);
    returns the folder that holds report.md, report.html, the CSV tables and the figures.

    `objective` ranks configurations (default: the sweep's `tuner.objective` param, else
    val_accuracy). Raises ReportError when the store or the experiment does not exist.
    """
    experiment_id = _experiment_id(store, experiment_name)
    runs = store.runs(experiment_id)
    reference = paper.load()
    outcomes = fetch_outcomes(store, select(runs, sweep_run_id).runs)
    analysis = analyse(experiment_name, runs, reference, sweep_run_id, objective, outcomes)
    details = fetch_details(store, analysis.best, analysis.best_runs)
    report = document.compose(analysis, details, reference)
    folder = Path(out_dir) / slug(experiment_name)
    per_image = outcomes.frame(analysis.selection.runs["run_id"])
    data = {OUTCOMES: _gzip_csv(per_image)} if len(per_image) else {}
    write(report, folder, f"Report: {experiment_name}", data)
    if analysis.selection.parent_run_id is not None:
        store.log_artifacts(analysis.selection.parent_run_id, folder, under="report")
        if "importance" in analysis.tables:
            log_importance(store, analysis.selection.parent_run_id, analysis.tables["importance"])
        link_report(store, analysis.selection.parent_run_id, folder, experiment_name)
    return folder


def build_replication_report(
    experiment_names: list[str], store: Store, out_dir: Path, objective: str | None = None
) -> Path:
    """Write the replication report of one study run as several experiments, one per data set
    (each experiment's latest sweep), under `<out_dir>/<name1>+<name2>...`; returns the folder.
    Raises ReportError, writing nothing, for an unknown or repeated experiment, one without
    finished runs, or experiments that declared different questions."""
    repeated = sorted({name for name in experiment_names if experiment_names.count(name) > 1})
    if repeated:
        raise ReportError(f"experiment {repeated[0]!r} is named twice; name each data set once")
    reference = paper.load()
    analyses, data = [], {}
    for name in experiment_names:
        runs = store.runs(_experiment_id(store, name))
        outcomes = fetch_outcomes(store, select(runs).runs)
        analysis = analyse(name, runs, reference, objective=objective, outcomes=outcomes)
        analyses.append(analysis)
        per_image = outcomes.frame(analysis.selection.runs["run_id"])
        if len(per_image):
            data[f"{file_prefix(name)}_{OUTCOMES}"] = _gzip_csv(per_image)
    report = document.compose_replication(analyses, list(data))
    folder = Path(out_dir) / "+".join(file_prefix(name) for name in experiment_names)
    write(report, folder, f"Replication: {', '.join(experiment_names)}", data)
    return folder


def link_report(store: Store, run_id: str, folder: Path, experiment_name: str) -> None:
    """Name the report in the sweep run's description: its paragraph that starts with
    `REPORT_NOTE` (the sweep's summary writes how to build it) now says where it was written."""
    note = store.get_run(run_id).tags.get(NOTE_TAG, "")
    kept = [part for part in note.split("\n\n") if part and not part.startswith(REPORT_NOTE)]
    where = (
        f"{REPORT_NOTE}{(folder / 'report.html').resolve()} (and report.md beside it), also in "
        f"this run's artifacts under report/; `study report {experiment_name} --sweep {run_id}` "
        "rebuilds it."
    )
    store.log(run_id, tags={NOTE_TAG: "\n\n".join([*kept, where])})


def sweep_importance(
    store: Store, runs: pd.DataFrame, sweep_run_id: str, objective: str
) -> pd.DataFrame | None:
    """Each knob's importance over the sweep's included runs (as the report computes it from
    `runs`, the experiment's), logged on the sweep's run as `importance.*` metrics; None when
    fewer than two knobs varied."""
    selection = select(runs, sweep_run_id)
    knobs = tables.report_knobs(selection.runs, selection.swept)
    found = start_importance(selection.runs, knobs, objective)()
    if not found:
        return None
    log_importance(store, sweep_run_id, found["importance"])
    return found["importance"]


class SweepImportance:
    """A sweep's end, as a `Sweep.run` callback: which knob mattered (`say_importance`), once
    the sweep completed a trial."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say

    def __call__(self, sweep: Sweep, summary: SweepSummary) -> None:
        if summary.completed:  # the sweep is recorded as ended: its trials are safe to read
            say_importance(sweep.store, summary, sweep.config.tuner.objective, self.say)


def say_importance(
    store: Store, summary: SweepSummary, objective: str, say: Callable[[str], None]
) -> None:
    """Which knob mattered, on the sweep's parent run as `importance.*` metrics, and said."""
    table = sweep_importance(store, summary.runs, summary.parent_run_id, objective)
    if table is not None:
        shown = ", ".join(f"{row.knob} {row.importance:.3f}" for row in table.itertuples())
        say(
            "importance of each knob (fANOVA share of a forest's variance; the knob tests are "
            f"the report's): {shown}"
        )


def log_importance(store: Store, run_id: str, table: pd.DataFrame) -> None:
    """The importance table as metrics `importance.<knob>` (the fANOVA share)."""
    store.log(run_id, metrics=[(k, v, 0) for k, v in importance_metrics(table).items()])


def fetch_outcomes(store: Store, runs: pd.DataFrame) -> tables.Outcomes:
    """Each run's per-image correctness on the test split, from its `predictions.csv`, as
    `tables.Outcomes` (a row per run, a column per test image); runs that logged
    none are left out. Every run's is read, not only the best configuration's: the
    configurations table compares each configuration with the best image by image."""
    found = _artifact_files(store, runs["artifact_uri"], PREDICTIONS, _test_outcomes)
    per_run = {
        run_id: outcomes
        for run_id, outcomes in zip(runs["run_id"], found, strict=True)
        if outcomes is not None
    }
    return tables.Outcomes.from_runs(per_run)


def _test_outcomes(path: Path) -> pd.DataFrame:
    """The test images of a `predictions.csv`: file, class, predicted and correct (0/1), read
    with the csv module: pandas' set-up per file cost seconds over thousands of runs."""
    with open(path, newline="") as handle:
        rows = [
            (row["file"], row["class"], row["predicted"], int(row["correct"]))
            for row in csv.DictReader(handle)
            if row["split"] == "test"
        ]
    return pd.DataFrame(rows, columns=["file", "class", "predicted", "correct"])


def fetch_details(
    store: Store, shown: pd.Series | None, runs: pd.DataFrame
) -> document.BestRunDetails:
    """The per-epoch curves of the run `shown` (the best configuration's median seed), and the
    confusion matrices of all `runs` (the best configuration's seeds) added up."""
    if shown is None:
        return document.BestRunDetails({}, None, 0)
    stages = ("frozen", "fine_tune")
    logged = store.histories(shown["run_id"], [f"{s}/{c}" for s in stages for c in CURVES])
    histories = {}
    for stage in stages:
        curves = {c: logged[f"{stage}/{c}"] for c in CURVES if f"{stage}/{c}" in logged}
        if curves:
            histories[stage] = curves
    matrices = _artifact_files(
        store, runs["artifact_uri"], CONFUSION, lambda path: pd.read_csv(path, index_col=0)
    )
    matrices = [matrix for matrix in matrices if matrix is not None]
    pooled = sum(matrices[1:], matrices[0]) if matrices else None
    return document.BestRunDetails(histories, pooled, len(matrices))


def write(
    report: document.Report, folder: Path, title: str, data: dict[str, bytes] | None = None
) -> None:
    """Write every file of the report (and `data`: file name -> bytes), and remove report
    files an earlier build left that this one did not write."""
    folder.mkdir(parents=True, exist_ok=True)
    data = data or {}
    written = {"report.md", "report.html", *report.csv, *report.figures, *data}
    for name, table in report.csv.items():
        atomic_write_text(folder / name, table.to_csv(index=False, lineterminator="\n"))
    for name, content in {**report.figures, **data}.items():
        with atomic_file(folder / name) as handle:
            handle.write(content)
    atomic_write_text(folder / "report.md", render.markdown(report.blocks))
    atomic_write_text(folder / "report.html", render.page(report.blocks, title, report.figures))
    for pattern in OWN_FILES:
        for path in folder.glob(pattern):
            if path.name not in written:
                path.unlink()


def _gzip_csv(table: pd.DataFrame) -> bytes:
    """The table as CSV, gzip-compressed with no time stamp: a rebuild writes the same bytes."""
    text = table.to_csv(index=False, lineterminator="\n").encode()
    return gzip.compress(text, mtime=0)


def _experiment_id(store: Store, name: str) -> str:
    database = sqlite_path(store.uri)
    if database is not None and not database.is_file():
        raise ReportError(
            f"no MLflow store at {database}; pass --tracking-uri to the sweep's store"
        )
    store.check()
    found = store.find_experiment(name)
    if found is None:
        names = store.experiment_names()
        raise ReportError(
            f"no experiment {name!r} in {store.display_uri} (experiments: {', '.join(names)})"
        )
    return found


def _artifact_files(
    store: Store, artifact_uris: Iterable[str], name: str, read: Callable[[Path], T]
) -> list[T | None]:
    """Each run's artifact `name` as `read` reads it (None for a run that has none), read by
    ARTIFACT_READERS threads."""
    return store.read_artifacts(artifact_uris, name, read, ARTIFACT_READERS)
