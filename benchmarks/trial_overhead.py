"""Where a frozen-phase trial's wall time goes, on cached features: a small sweep runs in this
process with timers around each step of a trial, and the mean per trial is printed, then how
fit's time splits into its first epoch (which traces the training step) and the later ones.

    python benchmarks/trial_overhead.py [--data ../shared/data/neu] [--image-size 64]
        [--trials 8] [--state-dir /tmp/trial_overhead]

The feature cache is kept in --state-dir, so a second run (after a code change) measures the
trials alone under the same conditions; the MLflow store and the tuner state are new each run.
Steps indented under another are part of it; Keras's evaluate also runs inside fit (its
per-epoch validation), so those seconds count in both rows. Numbers grow when other processes
use the CPU: compare runs made under the same load.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import activation_sweep
from results import Results

results = Results(__file__)

# (label, module or class path, attribute, depth): each is timed wherever it is called.
STEPS = (
    ("data split", "study.data.dataset", "split", 0),
    ("training (train)", "study.training.train", "train", 0),
    ("head build", "study.training.train", "build_head", 1),
    ("compile", "keras.Model", "compile", 1),
    ("Keras evaluate (warm-up, and validation in fit)", "keras.Model", "evaluate", 1),
    ("fit (epochs, validation each epoch)", "keras.Model", "fit", 1),
    ("evaluation of train/val/test", "study.training.train", "evaluate_splits", 1),
    ("Keras predict", "keras.Model", "predict", 2),
    ("scores", "study.training.evaluation", "evaluate", 2),
    ("Keras Precision/Recall/AUC", "study.training.train", "_keras_metric", 3),
    ("Keras Precision/Recall/AUC", "study.model.keras_scores", "precision", 3),
    ("Keras Precision/Recall/AUC", "study.model.keras_scores", "recall", 3),
    ("Keras Precision/Recall/AUC", "study.model.keras_scores", "auc", 3),
    ("artifacts written (CSV, YAML)", "study.runs.tracked", "write_artifacts", 0),
    ("PNG encoding", "matplotlib.figure.Figure", "savefig", 1),
    ("MLflow: create run", "study.tracking.store.Store", "create_run", 0),
    ("MLflow: params, metrics, tags", "study.tracking.store.Store", "log", 0),
    ("MLflow: artifacts", "study.tracking.store.Store", "log_artifacts", 0),
    ("MLflow: end run", "study.tracking.store.Store", "end_run", 0),
    ("MLflow: search child runs", "study.tuning.sweep.Sweep", "child_runs", 0),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser, image_size=64)
    parser.add_argument("--trials", type=int, default=8, help="activations x seeds, up to 4 x n")
    parser.add_argument("--state-dir", default=str(Path(tempfile.gettempdir()) / "trial_overhead"))
    args = parser.parse_args()

    import importlib

    from study import config as study_config
    from study.tracking.store import Store
    from study.tuning.sweep import Sweep

    seeds = list(range(-(-args.trials // 4)))
    config = study_config.load(
        activation_sweep.SPACE,
        [
            f"data.root={args.data}",
            f"data.image_size={args.image_size}",
            f"model.weights={args.weights}",
            f"seeds={seeds}",
        ],
    )
    totals: dict[str, float] = defaultdict(float)
    for label, owner_path, attribute, _ in STEPS:  # steps this version of the code lacks: 0 s
        module_path, _, class_name = owner_path.rpartition(".")
        try:
            module = importlib.import_module(module_path if _is_class(class_name) else owner_path)
        except ImportError:
            continue
        owner = getattr(module, class_name) if _is_class(class_name) else module
        if hasattr(owner, attribute):
            setattr(owner, attribute, _timed(getattr(owner, attribute), label, totals))
    import keras

    epoch_walls: list[list[float]] = []  # per fit: each epoch's wall time
    keras.Model.fit = _with_epoch_timer(keras.Model.fit, epoch_walls)

    results.print(f"machine: {os.cpu_count()} cores; data {args.data} at {args.image_size} px")
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{folder}/mlflow.db")
        sweep = Sweep(config, store, Path(args.state_dir), say=lambda _: None, progress=False)
        started = time.perf_counter()
        sweep.run(fresh=True)  # builds the feature cache once, if --state-dir has none yet
        wall = time.perf_counter() - started
        trial_walls = sweep._progress.durations
    trials = len(trial_walls)
    per_trial = sum(trial_walls) / trials
    results.print(
        f"{trials} trials; per trial: {per_trial:.2f} s from the tuner's call to its report "
        f"(median {sorted(trial_walls)[trials // 2]:.2f} s); sweep wall {wall:.1f} s"
    )
    results.print(f"{'step (mean per trial)':<52} {'s':>7} {'share':>6}")
    for label, depth in dict.fromkeys((label, depth) for label, _, _, depth in STEPS):
        seconds = totals[label] / trials
        results.print(f"{'  ' * depth + label:<52} {seconds:>7.3f} {seconds / per_trial:>6.0%}")
    top = sum(totals[label] for label, *_, depth in STEPS if depth == 0) / trials
    other = per_trial - top
    results.print(
        f"{'other (Keras Tuner bookkeeping, Python)':<52} {other:>7.3f} {other / per_trial:>6.0%}"
    )
    firsts = [walls[0] for walls in epoch_walls if walls]
    later = [wall for walls in epoch_walls for wall in walls[1:]]
    results.print(
        f"fit: {len(later + firsts) / len(firsts):.1f} epochs per trial; the first epoch "
        f"(tracing the training step) {sum(firsts) / len(firsts):.3f} s, each later one "
        f"{sum(later) / len(later):.3f} s (median {sorted(later)[len(later) // 2]:.3f} s)"
    )


def _is_class(name: str) -> bool:
    return name[:1].isupper()


def _with_epoch_timer(fit, epoch_walls: list[list[float]]):
    """Keras's fit, recording each epoch's wall time (validation included) in a new list."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_walls[-1].append(time.perf_counter() - self.started)

    @functools.wraps(fit)
    def wrapper(model, *args, callbacks=None, **kwargs):
        epoch_walls.append([])
        return fit(model, *args, callbacks=[*(callbacks or []), EpochTimer()], **kwargs)

    return wrapper


def _timed(function, label: str, totals: dict[str, float]):
    """`function` adding its wall time to totals[label] (outermost call only when recursive)."""
    active = []

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if active:
            return function(*args, **kwargs)
        active.append(True)
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - started
            active.pop()

    return wrapper


if __name__ == "__main__":
    main()
