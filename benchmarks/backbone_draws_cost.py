"""What one random backbone per seed costs against four shared draws: activation.yaml (4
activations x 20 seeds, random backbone weights) from a cold start, once with
`model.backbone_draws=4` (seed s on draw s mod 4: four feature caches) and once with the default
(each seed its own backbone: twenty caches).

    python benchmarks/backbone_draws_cost.py [--data ../shared/data/neu] [--keep DIR]

Each sweep runs as a user starts it, with an empty --state-dir and a new SQLite store (in a
temporary folder, or kept in --keep: the per-seed store is the one reports/activation is built
from). Prints each sweep's wall time, the CPU time of its processes (user + system, less moved
by other load on the machine than the wall time) and the load average around it, the feature
caches it built, and the ratios.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
from pathlib import Path

import activation_sweep
from results import Results

DESIGNS = {"4 draws": ("--set", "model.backbone_draws=4"), "one per seed": ()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser)
    parser.add_argument("--keep", type=Path, help="keep the stores and states here (a new folder)")
    args = parser.parse_args()
    results = Results(__file__)
    results.print(
        f"data: {args.data} at {args.image_size} px, weights {args.weights}; activation.yaml "
        "(80 trials), each design with a new store and an empty state folder"
    )
    took, cpu = {}, {}
    with tempfile.TemporaryDirectory(prefix="draws-cost-") as scratch:
        for number, (design, options) in enumerate(DESIGNS.items(), start=1):
            folder = (args.keep or Path(scratch)) / f"design{number}"
            folder.mkdir(parents=True)
            state = folder / "state"
            before, load = _children_cpu(), os.getloadavg()[0]
            took[design] = activation_sweep.run(
                args, f"sqlite:///{folder / 'mlflow.db'}", str(state), *options
            )
            cpu[design] = _children_cpu() - before
            caches = len(list(state.rglob("*.npz")))
            results.print(
                f"{design}: {took[design]:.0f} s cold, {cpu[design]:.0f} CPU s, {caches} cache "
                f"files (.npz); load average {load:.1f} before, {os.getloadavg()[0]:.1f} after"
            )
    for name, spent in (("wall", took), ("CPU", cpu)):
        extra = spent["one per seed"] - spent["4 draws"]
        results.print(
            f"one backbone per seed costs {extra:+.0f} {name} s ({extra / 16:+.1f} s per extra "
            f"backbone); ratio: {spent['one per seed'] / spent['4 draws']:.2f}x"
        )


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (and theirs) so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


if __name__ == "__main__":
    main()
