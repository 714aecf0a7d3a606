"""How `study report` and `study ui` cope with a sweep of many trial runs, in SQLite and in
PostgreSQL: a sweep of study.yaml's shape is logged with N trial runs under one parent, then
the report over it and the UI's runs page (in headless Chromium) are timed.

    python benchmarks/many_runs.py [--runs 5000] [--epochs 100] [--stores sqlite postgres]
        [--work-dir /tmp/many_runs]

With --work-dir the stores are kept there (the SQLite file and the PostgreSQL cluster's folder),
and a store that already holds a finished sweep of --runs trial runs is timed again without
logging it anew (its generation line says so).

The runs are logged by the study's own code: one real trial of study.yaml (on the package's
60-image sample at 32 px, 3 frozen epochs) is swept first, then every synthetic trial repeats
its params, tags, dataset inputs and artifacts through `Store` (as `runs.execute` logs them),
with a configuration drawn from study.yaml's search space (3 seeds each), scores drawn around
a per-configuration quality, and per-epoch curves stretched to --epochs points. The parent run
gets the configurations table that the sweep's summary logs. PostgreSQL is a throwaway cluster
(`tests/postgres.py`, initdb and pg_ctl as user postgres on a free port).

Figures, per store: generation (runs per second), `study report` over the sweep (target: at most
60 s for 5,000 runs on 2 cores), the runs page until the parent run first shows (target: at
most 10 s), and expanding the parent until its first trial shows.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/ holds the PostgreSQL cluster and the browser helpers

from results import Results, cpu_model  # noqa: E402

from study import config as study_config  # noqa: E402
from study.tracking import outcome, server  # noqa: E402
from study.tracking.store import CONFIGURATIONS, NOTE_TAG, Store  # noqa: E402
from study.tuning.summary import configurations_table  # noqa: E402
from study.tuning.sweep import Sweep  # noqa: E402
from study.tuning.trials import trial_name  # noqa: E402
from tests import browser, postgres  # noqa: E402

results = Results(__file__)
STUDY = REPO / "search_spaces" / "study.yaml"
# study.yaml, small enough for one real trial in seconds: its knobs and tags, not its numbers.
TEMPLATE_SETTINGS = [
    "data.root=null",
    "data.image_size=32",
    "model.weights=none",
    "frozen.epochs=3",
    "features.views=1",
    "tuner.max_configs=1",
    "seeds=[0]",
]
SEEDS = (0, 1, 2)
RENDER_TIMEOUT_MS = 300_000


@dataclass
class Template:
    """What one real trial and its sweep logged."""

    config: study_config.StudyConfig
    parent_params: dict[str, str]
    parent_tags: dict[str, str]
    params: dict[str, str]
    tags: dict[str, str]
    finals: dict[str, float]  # metrics logged once (step 0)
    curves: list[str]  # metrics logged per epoch
    dataset: tuple[str, str, dict[str, str]]  # name, source, digest per context
    artifacts: Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000, help="trial runs under the parent")
    parser.add_argument("--epochs", type=int, default=100, help="points per per-epoch curve")
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the stores are kept; default: a temporary folder",
    )
    args = parser.parse_args()
    unknown = set(args.stores) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"--stores: unknown {sorted(unknown)}; valid: sqlite, postgres")

    machine = f"{cpu_model()}, {os.cpu_count()} cores"
    with ExitStack() as stack:
        work = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        template = real_trial(work / "template")
        for kind in args.stores:
            if kind == "sqlite":
                uri = f"sqlite:///{(work / 'sqlite' / 'mlflow.db').resolve()}"
            else:
                programs = postgres.binaries()
                if programs is None:
                    results.print("postgres: skipped, PostgreSQL is not installed (no initdb)")
                    continue
                kept = work / "postgres" / "cluster" if args.work_dir else None
                uri, _ = stack.enter_context(postgres.cluster(programs, kept))
            folder = work / kind
            folder.mkdir(parents=True, exist_ok=True)

            def say(figure: str, kind: str = kind) -> None:
                results.print(f"{kind}, {args.runs} runs: {figure} | {machine}")

            measure(template, uri, folder, args.runs, args.epochs, say)


def real_trial(folder: Path) -> Template:
    """Sweep one trial of study.yaml for real and read back what it logged."""
    config = study_config.load(STUDY, TEMPLATE_SETTINGS)
    store = Store(f"sqlite:///{folder.resolve()}/mlflow.db")
    summary = Sweep(config, store, folder / "state", say=lambda _: None, progress=False).run()
    client = MlflowClient(store.uri)
    parent = client.get_run(summary.parent_run_id)
    runs = store.runs(summary.experiment_id)
    trial = client.get_run(runs.loc[runs["tags.run_type"] == "trial", "run_id"].iloc[0])
    history = client.get_metric_history
    curves = [key for key in trial.data.metrics if len(history(trial.info.run_id, key)) > 1]
    inputs = trial.inputs.dataset_inputs
    digests = {
        tag.value: item.dataset.digest
        for item in inputs
        for tag in item.tags
        if tag.key == "mlflow.data.context"
    }
    first = inputs[0].dataset
    artifacts = store.download_artifact(trial.info.run_id, "", folder / "files")
    return Template(
        config=config,
        parent_params=parent.data.params,
        parent_tags={k: v for k, v in _own_tags(parent.data.tags).items() if k != NOTE_TAG},
        params=trial.data.params,
        tags=_own_tags(trial.data.tags),
        finals={k: v for k, v in trial.data.metrics.items() if k not in curves},
        curves=curves,
        dataset=(first.name, json.loads(first.source)["uri"], digests),
        artifacts=artifacts,
    )


def _own_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags the study sets (MLflow's own are set anew when a run is created)."""
    return {k: v for k, v in tags.items() if not k.startswith("mlflow.") or k == NOTE_TAG}


def measure(
    template: Template,
    uri: str,
    folder: Path,
    n_runs: int,
    epochs: int,
    say: Callable[[str], None],
) -> None:
    """Log the sweep into the store at `uri`, then time the report and the UI over it."""
    store = Store(uri)
    logged = logged_sweep(store, template, n_runs)
    if logged is None:
        started = time.perf_counter()
        experiment_id, parent_run_id, last_trial = log_sweep(store, template, n_runs, epochs)
        generated = time.perf_counter() - started
        say(f"generation {generated:.1f} s ({n_runs / generated:.1f} runs/s)")
    else:
        experiment_id, parent_run_id, last_trial = logged
        say(f"generation: none, the sweep logged earlier in {folder} is timed again")

    started = time.perf_counter()
    report = subprocess.run(
        [sys.executable, "-m", "study.cli", "report", "study", "--tracking-uri", uri]
        + ["--out", str(folder / "reports"), "--sweep", parent_run_id],
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - started
    if report.returncode != 0:
        raise SystemExit(f"study report failed:\n{report.stderr[-4000:]}")
    say(f"`study report` {took:.1f} s (target <= 60 s for 5,000 runs)")
    time_ui(uri, folder, experiment_id, template, last_trial, say)


def logged_sweep(store: Store, template: Template, n_runs: int) -> tuple[str, str, str] | None:
    """The experiment id, parent run id and last trial run's name of a finished sweep of
    `n_runs` trial runs that the store already holds, else None."""
    experiment_id = store.find_experiment(template.config.name)
    if experiment_id is None:
        return None
    runs = store.runs(experiment_id)
    parents = runs[(runs["tags.run_type"] == "sweep") & (runs["status"] == "FINISHED")]
    for parent_run_id in parents["run_id"]:
        trials = runs[runs["tags.mlflow.parentRunId"] == parent_run_id]
        if len(trials) == n_runs:
            last = trials.loc[trials["start_time"].idxmax(), "tags.mlflow.runName"]
            return experiment_id, parent_run_id, last
    return None


def log_sweep(store: Store, template: Template, n_runs: int, epochs: int) -> tuple[str, str, str]:
    """A parent run and `n_runs` trial runs logged as the sweep logs them; returns the
    experiment id, the parent's run id and the name of the last trial run."""
    config = template.config
    experiment_id = store.experiment(config.name, config.description)
    parent_run_id = store.create_run(
        experiment_id, f"{config.name} · {config.tuner.oracle} sweep", template.parent_tags
    )
    store.log(parent_run_id, params=template.parent_params)
    rng = np.random.default_rng(0)
    configurations = [draw(config, rng) for _ in range(-(-n_runs // len(SEEDS)))]
    name, source, digests = template.dataset
    for number in range(n_runs):
        values, quality = configurations[number // len(SEEDS)]
        seed = SEEDS[number % len(SEEDS)]
        trial_config = config.with_values({**values, "seed": seed})
        trial_id = str(number)
        tags = {**template.tags, "trial_id": trial_id, "seed": str(seed)}
        tags[NOTE_TAG] = f"Trial {trial_id} of sweep {config.name}: " + ", ".join(
            f"{key} = {value}" for key, value in values.items()
        )
        run_name = trial_name(config, trial_id, {**values, "seed": seed})
        with store.run(experiment_id, run_name, tags, parent_run_id) as run_id:
            params = {**template.params, **trial_config.flat(), **trial_config.knob_values()}
            store.log(run_id, params=params, metrics=metrics(template, quality, epochs, rng))
            store.log_datasets(run_id, name, source, digests)
            store.log_artifacts(run_id, template.artifacts)
    found = outcome.counted_runs(store.runs(experiment_id), parent_run_id)
    store.log_table(
        parent_run_id, configurations_table(found, config.tuner.objective), CONFIGURATIONS
    )
    store.end_run(parent_run_id, "FINISHED")
    return experiment_id, parent_run_id, run_name


def draw(config: study_config.StudyConfig, rng: np.random.Generator) -> tuple[dict, float]:
    """A configuration from study.yaml's search space, and how well it scores (0.85-0.99)."""
    values = {}
    for key, spec in config.hyperparameters.items():
        if spec.type == "choice":
            values[key] = spec.values[rng.integers(len(spec.values))]
        elif spec.type == "int":
            values[key] = int(np.exp(rng.uniform(np.log(spec.min), np.log(spec.max)))) // 2 * 2
        elif spec.type == "float" and spec.step:
            steps = int(round((spec.max - spec.min) / spec.step))
            values[key] = round(spec.min + spec.step * rng.integers(steps + 1), 6)
        elif spec.type == "float":
            values[key] = float(rng.uniform(spec.min, spec.max))
    return values, float(rng.uniform(0.85, 0.99))


def metrics(
    template: Template, quality: float, epochs: int, rng: np.random.Generator
) -> list[tuple[str, float, int]]:
    """The template's metrics: accuracies and error rates around `quality`, the others as the
    real trial logged them, and each curve `epochs` points long."""
    rows = []
    for key, value in template.finals.items():
        if key.endswith("accuracy"):
            value = float(np.clip(quality + rng.normal(0, 0.01), 0, 1))
        elif key.endswith("error_rate"):
            value = float(np.clip(1 - quality + rng.normal(0, 0.01), 0, 1))
        rows.append((key, value, 0))
    for key in template.curves:
        points = rng.uniform(0, 1, epochs)
        rows += [(key, float(point), epoch) for epoch, point in enumerate(points)]
    return rows


def time_ui(
    uri: str,
    folder: Path,
    experiment_id: str,
    template: Template,
    trial_name: str,
    say: Callable[[str], None],
) -> None:
    """`study ui` on a free port: seconds from opening the runs page until the parent run shows,
    and from clicking its expander until trial `trial_name` (the latest) shows."""
    from playwright.sync_api import sync_playwright

    ui, port, log = browser.start_ui(uri, folder)
    try:
        server.wait_until_up(server.command("ui", uri, "127.0.0.1", port), ui, log)
        address = server.runs_url(f"http://127.0.0.1:{port}", experiment_id)
        config = template.config
        with sync_playwright() as playwright:
            chromium = browser.launch(playwright)
            try:
                page = chromium.new_page(viewport={"width": 1600, "height": 1000})
                started = time.perf_counter()
                page.goto(address)
                parent = page.get_by_role("row").filter(
                    has_text=f"{config.name} · {config.tuner.oracle} sweep"
                )
                parent.wait_for(timeout=RENDER_TIMEOUT_MS)
                say(
                    f"UI runs page, parent first rendered {time.perf_counter() - started:.1f} s "
                    "(target <= 10 s)"
                )
                started = time.perf_counter()
                parent.locator('button[data-component-id*="runnamecellrenderer"]').click()
                trial = page.get_by_role("row").filter(has_text=trial_name)
                trial.wait_for(timeout=RENDER_TIMEOUT_MS)
                took = time.perf_counter() - started
                say(f"UI parent expanded, latest trial rendered {took:.1f} s")
                page.screenshot(path=folder / "ui_runs.png")
            finally:
                chromium.close()
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


if __name__ == "__main__":
    main()
