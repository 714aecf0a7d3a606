"""Trials per minute of one sweep run in its own process (`--workers 0`, one trial at a time) and
by the default `study sweep` chooses without --workers (2 local worker processes on 2 cores).

    python benchmarks/workers_throughput.py [--data ../shared/data/neu] [--seeds 20]
        [--state-dir DIR]

Runs `study sweep search_spaces/activation.yaml` (4 activations x --seeds seeds of frozen-phase
trials on cached features, model.weights=none at 224 px) with `--workers 0` and then without
--workers, each into a fresh tracking store, sharing one feature cache that is built first and
not timed (`--state-dir` reuses the one kept there, as benchmarks/seeds_speed.py does). Trials
per minute are counted twice: over the trials' own MLflow runs (first trial start to last trial
end, so start-up and shutdown do not count) and over the command's wall time (what a user
waits). Prints how many worker processes the default ran and the default's speed-up.
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
    parser.add_argument("--seeds", type=int, default=20, help="seeds per activation (4x trials)")
    parser.add_argument(
        "--state-dir", type=Path, help="reuse the feature cache kept here (default: a temp dir)"
    )
    args = parser.parse_args()
    seeds = "seeds=[" + ",".join(str(seed) for seed in range(args.seeds)) + "]"

    with tempfile.TemporaryDirectory() as scratch:
        # The sweeps' Keras Tuner state stays in scratch (--fresh would discard a real sweep's);
        # only the feature cache of --state-dir is shared.
        state = Path(scratch) / "state"
        if args.state_dir:
            kept = (args.state_dir / "features").resolve()
            kept.mkdir(parents=True, exist_ok=True)
            state.mkdir()
            (state / "features").symlink_to(kept)

        def sweep(store: str, *options: str) -> float:
            return activation_sweep.run(args, store, str(state), "--fresh", *options)

        warm = sweep(f"sqlite:///{scratch}/warm.db", "--set", "seeds=[0]", "--workers", "0")
        results.print(f"cache build or load + a 4-trial sweep in this process: {warm:.0f} s")
        rates = {}
        for name, options in (("--workers 0", ["--workers", "0"]), ("default", [])):
            store = f"sqlite:///{scratch}/{len(rates)}.db"
            wall = sweep(store, "--set", seeds, *options)
            trials, span, workers = trial_span(store)
            rates[name] = (trials / span * 60, trials / wall * 60)
            results.print(
                f"{name:11}: {trials} trials in {span:.0f} s of trial time ({wall:.0f} s wall), "
                f"{workers} = {rates[name][0]:.1f} trials/min ({rates[name][1]:.1f} over the "
                "wall time)"
            )
        (alone, alone_wall), (default, default_wall) = rates.values()
        results.print(
            f"default / --workers 0: {default / alone:.2f}x in trial time, "
            f"{default_wall / alone_wall:.2f}x in wall time"
        )


def trial_span(store: str) -> tuple[int, float, str]:
    """FINISHED trials, seconds from the first one's start to the last one's end, and who ran
    them."""
    import mlflow

    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["activation"])
    trials = runs[(runs["tags.run_type"] == "trial") & (runs["status"] == "FINISHED")]
    span = (trials["end_time"].max() - trials["start_time"].min()).total_seconds()
    workers = sorted(set(trials["tags.worker"]))
    ran = "in the sweep's process" if workers == ["tuner0"] else f"{len(workers)} worker processes"
    return len(trials), span, ran


if __name__ == "__main__":
    main()
