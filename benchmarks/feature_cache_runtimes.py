"""Each runtime that can build the feature cache, on the same images: the build time (converting
the backbone included), and the largest absolute difference of its features from TensorFlow's;
then, with --seeds, the frozen phase of `activation.yaml` trained on each runtime's cache for
every seed, and its test accuracy against TensorFlow's cache by the report's own test.

    python benchmarks/feature_cache_runtimes.py [--data ../shared/data/neu] [--image-size 224]
        [--images 192] [--views 0] [--seeds 0 1 2 3 4]

--images 0 takes every image (needed for --seeds: the runs split the whole data set).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import activation_sweep
import numpy as np
from results import Results

results = Results(__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser)
    parser.add_argument("--images", type=int, default=192, help="0: every image")
    parser.add_argument("--views", type=int, default=0, help="augmented views per image")
    parser.add_argument("--seeds", type=int, nargs="*", default=[])
    args = parser.parse_args()

    from study import config as study_config
    from study.caches import features
    from study.caches.inputs import CacheInputs
    from study.data import dataset as data
    from study.model import runtimes
    from study.model.nasnet import resolve_weights
    from study.report import stats
    from study.tracking import provenance
    from study.training import train as training

    config = study_config.load(
        activation_sweep.SPACE,
        [
            f"data.root={args.data}",
            f"data.image_size={args.image_size}",
            f"model.weights={args.weights}",
        ],
    )
    dataset = data.load(config.data.root, config.data.image_size)
    if args.images:
        dataset = subset(dataset, args.images)
    weights = resolve_weights(config.model.weights, config.model.backbone_init_seed(config.seed))
    results.print(
        f"{len(dataset)} images x {args.views + 1} views at {args.image_size} px, weights "
        f"{weights.label}, on {provenance.machine()['machine']}"
    )
    results.print(
        f"{'runtime':<14} {'build s':>8} {'images/s':>9} {'max abs diff':>13} {'relative':>9}"
    )
    caches = {}
    with tempfile.TemporaryDirectory() as folder:
        for runtime in runtimes.RUNTIMES:
            started = time.perf_counter()
            cache = features.load_or_build(
                dataset,
                weights,
                CacheInputs(
                    args.image_size,
                    config.data.augmentation,
                    args.views,
                    config.features.seed,
                    runtime=runtime,
                ),
                Path(folder),
                progress=False,
            )
            took = time.perf_counter() - started
            caches[runtime] = cache
            reference = caches["tensorflow"]
            difference = max(
                float(np.abs(cache.clean - reference.clean).max()),
                float(np.abs(cache.views - reference.views).max(initial=0)),
            )
            scale = float(np.abs(reference.clean).max())
            results.print(
                f"{runtime:<14} {took:>8.1f} {len(dataset) * (args.views + 1) / took:>9.1f} "
                f"{difference:>13.2e} {difference / scale:>9.1e}"
                + ("" if cache.runtime == runtime else f" (built by {cache.runtime})")
            )
    if not args.seeds:
        return
    accuracy: dict[str, list[float]] = {runtime: [] for runtime in caches}
    for seed in args.seeds:
        seeded = config.with_values({"seed": seed})
        split = data.split(dataset, seeded.data.split, seed)
        for runtime, cache in caches.items():
            result = training.train(seeded, dataset, split, weights, cache)
            accuracy[runtime].append(100 * result.evaluations["frozen"]["test"].metrics["accuracy"])
        results.print(
            f"seed {seed}: " + ", ".join(f"{r} {a[-1]:.2f} %" for r, a in accuracy.items())
        )
    for runtime, values in accuracy.items():
        spread = stats.spread(values)
        test = stats.paired_comparison(values, accuracy["tensorflow"])
        results.print(
            f"{runtime:<14} test accuracy {spread.mean:.2f} ± {spread.std:.2f} %; minus "
            f"tensorflow's {test.mean_difference:+.2f} points, 95% CI [{test.ci_low:+.2f}, "
            f"{test.ci_high:+.2f}] over seeds, sign-flip p = {test.p_value:.3f} ({test.n} seeds)"
        )


def subset(dataset, count: int):
    """`count` images spread evenly over the data set (it is ordered by class)."""
    keep = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).astype(int)
    return dataclasses.replace(
        dataset,
        files=[dataset.files[i] for i in keep],
        labels=dataset.labels[keep],
        images=dataset.images[keep],
        content_hashes=[dataset.content_hashes[i] for i in keep],
    )


if __name__ == "__main__":
    main()
