"""How much the feature cache buys: one frozen-phase trial through the backbone against the
same trial on cached features, measured in the same run, then the whole activation sweep.

    python benchmarks/frozen_trial_speed.py [--data ../shared/data/neu] [--image-size 224]

Prints the cache build time, both trial times and their ratio (target >= 100x), and the wall
time of `study sweep search_spaces/activation.yaml` from a cold start, cache build included
(target <= 10 minutes on 2 cores). Both trials train 20 epochs without early stopping.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import activation_sweep
from results import Results

results = Results(__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()

    from study import config as study_config
    from study.caches import features
    from study.caches.inputs import CacheInputs
    from study.data import dataset as data
    from study.model.nasnet import resolve_weights
    from study.training import train as training

    overrides = [
        f"data.root={args.data}",
        f"data.image_size={args.image_size}",
        f"model.weights={args.weights}",
        f"frozen.epochs={args.epochs}",
        "frozen.early_stopping.patience=null",
    ]
    config = study_config.load(activation_sweep.SPACE, overrides)
    results.print(f"machine: {os.cpu_count()} cores; data {args.data} at {args.image_size} px")

    started = time.perf_counter()
    dataset = data.load(config.data.root, config.data.image_size)
    results.print(f"load {len(dataset)} images: {time.perf_counter() - started:.1f} s")
    weights = resolve_weights(config.model.weights, config.model.backbone_init_seed(config.seed))
    split = data.split(dataset, config.data.split, config.seed)

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        cache = features.load_or_build(
            dataset, weights, CacheInputs.for_features(config), directory=Path(folder)
        )
        build_s = time.perf_counter() - started
        results.print(
            f"feature cache build ({config.features.views} views + 1 clean): {build_s:.1f} s"
        )

        started = time.perf_counter()
        cached = training.train(config, dataset, split, weights, cache)
        cached_s = time.perf_counter() - started
        results.print(f"frozen trial on cached features: {cached_s:.1f} s")

    started = time.perf_counter()
    direct = training.train(config, dataset, split, weights, None, verbose=2)
    direct_s = time.perf_counter() - started
    results.print(f"frozen trial through the backbone: {direct_s:.1f} s")

    for name, result in (("cached", cached), ("through backbone", direct)):
        scores = result.evaluations["frozen"]
        results.print(
            f"  {name}: val accuracy {scores['val'].metrics['accuracy']:.4f}, "
            f"test accuracy {scores['test'].metrics['accuracy']:.4f}"
        )
    results.print(f"ratio (through backbone / cached): {direct_s / cached_s:.0f}x (target >= 100x)")

    if not args.skip_sweep:
        with tempfile.TemporaryDirectory() as folder:
            sweep_s = activation_sweep.run(args, f"sqlite:///{folder}/m.db", folder)
        results.print(
            f"activation sweep (20 trials, cold cache): {sweep_s:.0f} s = {sweep_s / 60:.1f} min "
            "(target <= 10 min)"
        )


if __name__ == "__main__":
    main()
