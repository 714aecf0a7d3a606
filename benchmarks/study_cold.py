"""How long the whole study takes from a cold start: `study sweep search_spaces/study.yaml`
(40 configurations x 3 seeds, 120 trials) with no feature cache and a new store.

    python benchmarks/study_cold.py [--data ../shared/data/neu] [--weights none] [--runs 3]
        [--keep DIR]

The sweep runs as a user starts it, with an empty --state-dir and a new SQLite store (in a
temporary folder, or kept in --keep), timed around the command: target at most 10 minutes on
2 cores. The Bayesian search takes another path in each run (its two workers report in varying
order), so --runs repeats the whole and prints the median. For each run, where the time went,
read from the runs it logged: the set-up before the sweep's parent run (data, the first
backbone draw's feature cache), the trials (two at a time; the caches of the other draws are
built by the trials that need them first), and what follows the last trial (each knob's
importance, the best configuration trained again with its model kept, and registered). With
--weights none, seed s uses backbone draw s mod 4: three caches.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import activation_sweep
from results import Results

SPACE = activation_sweep.REPO / "search_spaces" / "study.yaml"
TARGET_S = 600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser)
    parser.add_argument("--keep", type=Path, help="keep the stores and states here (a new folder)")
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="cold runs, one after another (the search's path, "
        "and so its time, differs from run to run)",
    )
    args = parser.parse_args()
    results = Results(__file__)
    results.print(
        f"data: {args.data} at {args.image_size} px, weights {args.weights}; each run with a new "
        "store and an empty state folder"
    )
    times = []
    with tempfile.TemporaryDirectory(prefix="study-cold-") as scratch:
        for number in range(1, args.runs + 1):
            folder = (args.keep or Path(scratch)) / f"run{number}"
            folder.mkdir(parents=True)
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            started = 1000 * time.time()
            took = activation_sweep.run(args, uri, str(folder / "state"), space=SPACE)
            for line in phases(uri, "study", started, started + 1000 * took):
                results.print(f"run {number}: {line}")
            results.print(f"run {number}: study.yaml cold: {took:.0f} s (target <= {TARGET_S} s)")
            times.append(took)
    within = sum(took <= TARGET_S for took in times)
    results.print(
        f"study.yaml cold: median {statistics.median(times):.0f} s over {len(times)} runs "
        f"(from {min(times):.0f} to {max(times):.0f} s; {within} of {len(times)} within the "
        f"target of {TARGET_S} s)"
    )


def phases(uri: str, experiment: str, started_ms: float, ended_ms: float) -> list[str]:
    """Where the sweep's time went, from the start and end of the runs it logged in
    `experiment`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("run_type") == "sweep"]
    (model,) = [r for r in runs if r.data.tags.get("run_type") == "model"]
    trials = [r for r in runs if r.data.tags.get("run_type") == "trial"]
    last_trial = max(r.info.end_time for r in trials)
    durations = [(r.info.end_time - r.info.start_time) / 1000 for r in trials]
    by_optimizer = {}
    for run, seconds in zip(trials, durations, strict=True):
        by_optimizer.setdefault(run.data.params.get("optimizer"), []).append(seconds)
    medians = ", ".join(
        f"{name} {statistics.median(values):.1f} s ({len(values)})"
        for name, values in sorted(by_optimizer.items())
    )
    return [
        "set-up (data, first draw's feature cache): "
        f"{(parent.info.start_time - started_ms) / 1000:.0f} s",
        f"trials: {(last_trial - parent.info.start_time) / 1000:.0f} s for {len(trials)} runs, "
        f"{statistics.median(durations):.1f} s median per run (by optimizer: {medians})",
        f"after the last trial: {(ended_ms - last_trial) / 1000:.0f} s (the sweep ends "
        f"{(parent.info.end_time - last_trial) / 1000:.0f} s, importance "
        f"{(model.info.start_time - parent.info.end_time) / 1000:.0f} s, the best model trained "
        f"again {(model.info.end_time - model.info.start_time) / 1000:.0f} s, registered and "
        f"the process ended {(ended_ms - model.info.end_time) / 1000:.0f} s)",
    ]


if __name__ == "__main__":
    main()
