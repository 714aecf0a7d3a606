"""What the committed replication costs from a cold start: `study replicate
search_spaces/replication.yaml` (the activation study, 4 activations x 20 seeds, on NEU and on
ELPV, one backbone per seed) with no caches and a new store, then its replication report.

    python benchmarks/replication_cold.py [--weights none] [--keep DIR]

Run from the project's folder, with the data beside it in ../shared/data (the YAML's
`replicate:` list). The command runs as a user starts it, timed around it; where the time went
is read from the sweeps' parent runs. With --keep the stores, states and the report stay in DIR
(the report in DIR/reports/replication-neu+replication-elpv, which reports/replication is).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import Results

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "replication.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="none")
    parser.add_argument("--keep", type=Path, help="keep the store, states and report here")
    args = parser.parse_args()
    results = Results(__file__)
    with tempfile.TemporaryDirectory(prefix="replication-cold-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        results.print(
            f"{SPACE.name}, weights {args.weights}; a new store, empty state folder; "
            f"load average {os.getloadavg()[0]:.1f} before"
        )
        command = [
            sys.executable,
            "-m",
            "study.cli",
            "replicate",
            str(SPACE),
            "--set",
            f"model.weights={args.weights}",
            "--tracking-uri",
            uri,
            "--state-dir",
            str(folder / "state"),
            "--out",
            str(folder / "reports"),
            "--quiet",
        ]
        started = time.time()
        subprocess.run(command, check=True, cwd=REPO)
        took = time.time() - started
        for line in sweeps(uri, 1000 * started):
            results.print(line)
        caches = sorted((folder / "state").rglob("*.npz"))
        results.print(
            f"replication cold: {took:.0f} s ({took / 60:.1f} min), {len(caches)} cache files; "
            f"load average {os.getloadavg()[0]:.1f} after"
        )


def sweeps(uri: str, started_ms: float) -> list[str]:
    """Each data set's sweep: its set-up, its trials and its runs, from the parent runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    lines = []
    for name in ("replication-neu", "replication-elpv"):
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        (parent,) = [r for r in runs if r.data.tags.get("run_type") == "sweep"]
        trials = [r for r in runs if r.data.tags.get("run_type") == "trial"]
        first = min(r.info.start_time for r in trials)
        end = parent.info.end_time
        lines.append(
            f"{name}: {len(trials)} trials, {(end - first) / 1000:.0f} s from its first trial, "
            f"parent run {(end - parent.info.start_time) / 1000:.0f} s; "
            f"ended {(end - started_ms) / 1000:.0f} s after the command started"
        )
    return lines


if __name__ == "__main__":
    main()
