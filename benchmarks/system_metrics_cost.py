"""What recording system metrics costs: one smoke-sweep trial (the embedded sample at 64 px,
frozen phase only) logged with and without MLflow's system metrics, alternately, a few times.

    python benchmarks/system_metrics_cost.py [--repeats 5] [--image-size 64]

Prints every trial's wall time, the median with and without, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from results import Results

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "search_spaces" / "smoke.yaml"
results = Results(__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()

    from study import config as study_config
    from study.runs import session, tracked
    from study.tracking.store import Store

    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{folder}/mlflow.db")
        base = [f"data.image_size={args.image_size}", "fine_tune.epochs=0"]
        configs = {
            on: study_config.load(SMOKE, [*base, f"tracking.system_metrics={str(on).lower()}"])
            for on in (False, True)
        }
        prepared = session.prepare(configs[False], store, Path(folder), progress=False)
        experiment = store.experiment("system-metrics-cost")
        tracked.execute(configs[False], prepared, store, experiment, "warm-up")
        times: dict[bool, list[float]] = {False: [], True: []}
        for repeat in range(args.repeats):
            for on in (False, True) if repeat % 2 == 0 else (True, False):
                started = time.perf_counter()
                tracked.execute(configs[on], prepared, store, experiment, f"{on}-{repeat}")
                times[on].append(time.perf_counter() - started)
                state = "on" if on else "off"
                results.print(f"repeat {repeat}: system metrics {state}: {times[on][-1]:.2f} s")
    off, on = statistics.median(times[False]), statistics.median(times[True])
    results.print(f"median trial: without system metrics {off:.2f} s, with {on:.2f} s")
    results.print(f"ratio (with / without): {on / off:.3f}")


if __name__ == "__main__":
    main()
