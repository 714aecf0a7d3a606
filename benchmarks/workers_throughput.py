"""Trials per minute of one sweep run in its own process (`--workers 0`, one trial at a time) and
by the default `study sweep` chooses without --workers (2 local worker processes on 2 cores).

    python benchmarks/workers_throughput.py [--data ../shared/data/neu] [--seeds 20]
        [--state-dir DIR] [--space search_spaces/optimizer.yaml]

Runs `study sweep search_spaces/activation.yaml` (4 activations x --seeds seeds of frozen-phase
trials on cached features, model.weights=none at 224 px), or the study --space names (for
example optimizer.yaml's fine-tuning trials on cached activations), with `--workers 0` and then
without --workers, each into a fresh tracking store, sharing the caches, which the first seed's
sweep builds untimed (`--state-dir` reuses those kept there, as benchmarks/seeds_speed.py does;
with one backbone per seed, keep every seed's caches there to time the trials alone). Trials
per minute are counted twice: over the trials' own MLflow runs (first trial start to last trial
end, so start-up and shutdown do not count) and over the command's wall time (what a user
waits). Prints how many worker processes the default ran and the default's speed-up.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import activation_sweep
import yaml
from results import Results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser)
    parser.add_argument("--seeds", type=int, default=20, help="seeds per setting")
    parser.add_argument(
        "--state-dir", type=Path, help="reuse the caches kept here (default: a temp dir)"
    )
    parser.add_argument(
        "--space",
        type=Path,
        default=activation_sweep.SPACE,
        help="the study swept (default: activation.yaml; another one's results file is "
        "workers_throughput_<its name>.txt)",
    )
    args = parser.parse_args()
    name = yaml.safe_load(args.space.read_text())["name"]
    results = Results(__file__, variant="" if name == "activation" else name)
    seeds = "seeds=[" + ",".join(str(seed) for seed in range(args.seeds)) + "]"

    with tempfile.TemporaryDirectory() as scratch:
        # The sweeps' Keras Tuner state stays in scratch (--fresh would discard a real sweep's);
        # only the caches of --state-dir are shared.
        state = Path(scratch) / "state"
        if args.state_dir:
            state.mkdir()
            for caches in ("features", "activations"):
                kept = (args.state_dir / caches).resolve()
                kept.mkdir(parents=True, exist_ok=True)
                (state / caches).symlink_to(kept)

        def sweep(store: str, *options: str) -> float:
            return activation_sweep.run(
                args, store, str(state), "--fresh", *options, space=args.space
            )

        results.print(f"{args.space.name}, {args.seeds} seeds per setting")
        warm = sweep(f"sqlite:///{scratch}/warm.db", "--set", "seeds=[0]", "--workers", "0")
        results.print(f"cache build or load + the first seed's sweep in this process: {warm:.0f} s")
        rates = {}
        for name, options in (("--workers 0", ["--workers", "0"]), ("default", [])):
            store = f"sqlite:///{scratch}/{len(rates)}.db"
            wall = sweep(store, "--set", seeds, *options)
            trials, span, workers = trial_span(store, name)
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


def trial_span(store: str, experiment: str) -> tuple[int, float, str]:
    """FINISHED trials, seconds from the first one's start to the last one's end, and who ran
    them."""
    import mlflow

    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=[experiment])
    trials = runs[(runs["tags.run_type"] == "trial") & (runs["status"] == "FINISHED")]
    span = (trials["end_time"].max() - trials["start_time"].min()).total_seconds()
    workers = sorted(set(trials["tags.worker"]))
    ran = "in the sweep's process" if workers == ["tuner0"] else f"{len(workers)} worker processes"
    return len(trials), span, ran


if __name__ == "__main__":
    main()
