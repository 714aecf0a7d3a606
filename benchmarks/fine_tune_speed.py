"""What fine-tuning only the last stack on cached activations buys: one fine-tuning epoch of
the whole backbone against one of the cells from `--cut` up (normal_9: the last stack) on the
activation cache, measured in the same run.

    python benchmarks/fine_tune_speed.py [--data ../shared/data/neu] [--image-size 224]
        [--views 8] [--cut normal_9]

The study is search_spaces/optimizer.yaml with one fine-tuning epoch on augmented views and no
frozen phase. Prints the activation cache's build time and size on disk, both epochs' times
(Keras's fit: tracing, the epoch and its validation; the evaluation of every split that follows
is timed apart), and `ratio: <N>x` (all layers / from the cut; target >= 4).
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

SPACE = activation_sweep.REPO / "search_spaces" / "optimizer.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser)
    parser.add_argument("--views", type=int, default=8, help="augmented views in the cache")
    parser.add_argument("--cut", default="normal_9", help="the first trainable cell")
    args = parser.parse_args()

    from study import config as study_config
    from study.caches import activations
    from study.caches.inputs import CacheInputs
    from study.data import dataset as data
    from study.model.nasnet import resolve_weights
    from study.training import train as training

    overrides = [
        f"data.root={args.data}",
        f"data.image_size={args.image_size}",
        f"model.weights={args.weights}",
        f"features.views={args.views}",
        "frozen.epochs=0",
        "fine_tune.epochs=1",
        "fine_tune.keep_frozen_if_better=false",
        "fine_tune.augment=true",  # --views augmented views, as with ImageNet weights
    ]
    config = study_config.load(SPACE, overrides).with_values({"fine_tune.trainable": "all"})
    cut = config.with_values({"fine_tune.trainable": {"from": args.cut}})
    results.print(f"machine: {os.cpu_count()} cores; data {args.data} at {args.image_size} px")

    dataset = data.load(config.data.root, config.data.image_size)
    weights = resolve_weights(config.model.weights, config.model.backbone_init_seed(config.seed))
    split = data.split(dataset, config.data.split, config.seed)
    results.print(f"{len(dataset)} images, {len(split['train'])} for training")

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        cache = activations.load_or_build(
            dataset, weights, CacheInputs.for_activations(cut), directory=Path(folder)
        )
        build_s = time.perf_counter() - started
        size = cache.path.stat().st_size
        results.print(
            f"activation cache at the cut before {args.cut} ({args.views} views + 1 clean): "
            f"built in {build_s:.1f} s, {size / 1e9:.2f} GB on disk "
            f"({size / len(dataset) / (args.views + 1) / 1e3:.1f} kB per image and view)"
        )
        times = {}
        for name, study, cached in (
            (f"from {args.cut} on cached activations", cut, cache),
            ("all layers", config, None),
        ):
            started = time.perf_counter()
            result = training.train(study, dataset, split, weights, activations=cached)
            total_s = time.perf_counter() - started
            epoch_s = result.phases[0].wall_time_s
            times[name] = epoch_s
            scores = result.evaluations["fine_tune"]
            results.print(
                f"fine-tuning epoch, {name}: {epoch_s:.1f} s "
                f"(trainable parameters {result.parameters['trainable_fine_tune']:,}; "
                f"whole trial with evaluation {total_s:.1f} s; "
                f"val accuracy {scores['val'].metrics['accuracy']:.4f})"
            )
    ratio = times["all layers"] / times[f"from {args.cut} on cached activations"]
    results.print(f"ratio: {ratio:.1f}x (all layers / from {args.cut}; target >= 4)")


if __name__ == "__main__":
    main()
