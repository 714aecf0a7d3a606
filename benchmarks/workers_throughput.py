"""Trials per hour of one sweep run by 1 and by 2 local workers (Keras Tuner chief/worker).

    python benchmarks/workers_throughput.py [--data ../shared/data/neu] [--state-dir DIR]

Runs `study sweep search_spaces/activation.yaml --workers N` (20 frozen-phase trials on cached
features) for N = 1 and N = 2, each into a fresh tracking store, sharing one feature cache that
is built first and not timed. Throughput is measured from the trials' own MLflow runs (first
trial start to last trial end), so the start-up and the chief's shutdown do not count; the
commands' wall times are printed too. Target: >= 1.8x with 2 workers on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import activation_sweep
from results import Results

results = Results(__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser)
    parser.add_argument(
        "--state-dir", type=Path, help="reuse the feature cache kept here (default: a temp dir)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        # The sweeps' Keras Tuner state stays in scratch (--fresh would discard a real sweep's);
        # only the feature cache of --state-dir is shared.
        state = Path(scratch) / "state"
        if args.state_dir:
            kept = (args.state_dir / "features").resolve()
            kept.mkdir(parents=True, exist_ok=True)
            state.mkdir()
            (state / "features").symlink_to(kept)

        def sweep(workers: int, store: str) -> float:
            options = ["--fresh"] + (["--workers", str(workers)] if workers else [])
            return activation_sweep.run(args, store, str(state), *options)

        warm = sweep(0, f"sqlite:///{scratch}/warm.db")  # builds (or finds) the feature cache
        results.print(f"cache build or load + one in-process sweep: {warm:.0f} s")
        rates = {}
        for workers in (1, 2):
            store = f"sqlite:///{scratch}/workers{workers}.db"
            wall = sweep(workers, store)
            trials, span = trial_span(store)
            rates[workers] = trials / span * 3600
            results.print(
                f"{workers} worker(s): {trials} trials in {span:.0f} s of trial time "
                f"({wall:.0f} s wall) = {rates[workers]:.0f} trials/hour"
            )
        results.print(f"speed-up with 2 workers: {rates[2] / rates[1]:.2f}x (target >= 1.8x)")


def trial_span(store: str) -> tuple[int, float]:
    import mlflow

    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["activation"])
    trials = runs[(runs["tags.run_type"] == "trial") & (runs["status"] == "FINISHED")]
    span = (trials["end_time"].max() - trials["start_time"].min()).total_seconds()
    return len(trials), span


if __name__ == "__main__":
    main()
