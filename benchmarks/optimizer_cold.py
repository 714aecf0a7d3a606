"""How long the optimizer study takes from a cold start: `study sweep
search_spaces/optimizer.yaml` (Adam and Adamax for fine-tuning x 20 seeds, one backbone per
seed, so 20 feature caches and 20 activation caches) with no caches and a new store.

    python benchmarks/optimizer_cold.py [--data ../shared/data/neu] [--weights none]
        [--keep DIR] [--workers N]

The sweep runs as a user starts it (the default number of workers unless --workers), with an
empty --state-dir and a new SQLite store, timed around the command: target at most 45 minutes
on 2 cores. Where the time went is read from the runs it logged, as benchmarks/study_cold.py
reads them; the caches are built by the first trial of each seed, so they count in the trials.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import activation_sweep
import study_cold
from results import Results

SPACE = activation_sweep.REPO / "search_spaces" / "optimizer.yaml"
TARGET_S = 45 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser)
    parser.add_argument("--keep", type=Path, help="keep the store and state here (a new folder)")
    parser.add_argument("--workers", help="study sweep --workers (default: the sweep's choice)")
    args = parser.parse_args()
    results = Results(__file__)
    results.print(
        f"data: {args.data} at {args.image_size} px, weights {args.weights}; a new store and an "
        f"empty state folder; load average {os.getloadavg()[0]:.1f} before"
    )
    with tempfile.TemporaryDirectory(prefix="optimizer-cold-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        options = [] if args.workers is None else ["--workers", args.workers]
        started = 1000 * time.time()
        took = activation_sweep.run(args, uri, str(folder / "state"), *options, space=SPACE)
        for line in study_cold.phases(uri, "optimizer", started, started + 1000 * took):
            results.print(line)
        caches = len(list((folder / "state").rglob("*.np[yz]")))
    results.print(
        f"optimizer.yaml cold: {took:.0f} s ({took / 60:.1f} min; target <= {TARGET_S} s), "
        f"{caches} cache files; load average {os.getloadavg()[0]:.1f} after"
    )


if __name__ == "__main__":
    main()
