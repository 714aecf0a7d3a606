"""Each runtime that can build the feature cache, on the same images, its costs measured apart:
the one-off cost before the first image, the forward pass's images per second, and the whole
build of the cache, with the largest absolute difference of its features from TensorFlow's;
then, with --seeds, the frozen phase of `activation.yaml` trained on each runtime's cache for
every seed, and its test accuracy against TensorFlow's cache by the report's own test.

    python benchmarks/feature_cache_runtimes.py [--data ../shared/data/neu] [--image-size 224]
        [--images 0] [--views 0 8] [--seeds 0 1 2 3 4] [--runtimes openvino ...]

For each runtime (tensorflow, onnxruntime, openvino, and openvino-bf16 when OpenVINO lists BF16
among the CPU's capabilities), in turn:

- one-off: `study.caches.features.backbone_predictor`, what a cache build does before its first
  image (building the backbone; for the other runtimes Keras's ONNX export, then ONNX
  Runtime's session or OpenVINO's compile of that file), then the first batch of 32 clean
  images on its own (TensorFlow traces its function there);
- forward pass, for each --views V: the images per second of the runtime's calls alone over
  the inputs of a cache with V augmented views per image (clean images first, then the views),
  timed around each call so that preparing and augmenting the inputs is left out;
- whole build, for each --views V: `study.caches.features.load_or_build` with the runtime into
  an empty folder, the product's own path (export, inputs, forward pass and the file written),
  and the largest absolute difference of its features from TensorFlow's cache of this run.

Every measurement prints the 1-minute load average before and after it. The `ratio:` line of
each --views V is TensorFlow's whole build over the fastest other runtime's, both of this run
(a runtime that fell back to TensorFlow is not counted). --images 0 (the default) takes every
image, which --seeds needs (the runs split the whole data set); --seeds trains on the caches of
the first --views.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import activation_sweep
import numpy as np
from results import Results

results = Results(__file__)

CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")
ONE_OFF = {  # what study.model.runtimes.predictor does before the first image, per runtime
    "tensorflow": "backbone",
    "onnxruntime": "backbone, ONNX export, session",
    "openvino": "backbone, ONNX export, OpenVINO compile",
    "openvino-bf16": "backbone, ONNX export, OpenVINO compile",
}


@dataclasses.dataclass
class Row:
    """One runtime's measurements: one-off s, first batch s, and per --views V the forward
    pass's images/s and the whole build's s (None when it fell back to TensorFlow)."""

    one_off: float
    first_batch: float
    forward: dict[int, float] = dataclasses.field(default_factory=dict)
    build: dict[int, float | None] = dataclasses.field(default_factory=dict)
    difference: dict[int, float] = dataclasses.field(default_factory=dict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser)
    parser.add_argument("--images", type=int, default=0, help="0: every image")
    parser.add_argument(
        "--views", type=int, nargs="+", default=[0, 8], help="augmented views per image"
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[])
    parser.add_argument(
        "--runtimes",
        nargs="+",
        help="the runtimes to measure (default: every one; tensorflow "
        "is always measured, as the reference)",
    )
    args = parser.parse_args()
    if args.seeds and args.images:
        parser.error("--seeds needs --images 0 (the runs split the whole data set)")

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
    pooling, augmentation = config.model.pooling, config.data.augmentation
    view_seed = config.features.seed  # the augmented views' seed
    results.print(
        f"{len(dataset)} images at {args.image_size} px, views {args.views}, weights "
        f"{weights.label}, {pooling} pooling, on {provenance.machine()['machine']}"
    )
    capabilities = openvino_capabilities()
    results.print(f"cpu flags: {cpu_flags()}; OpenVINO CPU capabilities: {capabilities}")

    rows: dict[str, Row] = {}
    reference: dict[int, features.FeatureCache] = {}
    trained_on: dict[str, features.FeatureCache] = {}
    chosen = runtimes.RUNTIMES if args.runtimes is None else {"tensorflow", *args.runtimes}
    for runtime in [runtime for runtime in runtimes.RUNTIMES if runtime in chosen]:
        if runtime == "openvino-bf16" and "BF16" not in capabilities.split():
            results.print(f"{runtime:<14} skipped: OpenVINO lists no BF16 on this CPU")
            continue
        with tempfile.TemporaryDirectory() as folder:
            load = os.getloadavg()[0]
            started = time.perf_counter()
            try:
                _, predict = features.backbone_predictor(
                    args.image_size, weights, pooling, runtime, Path(folder)
                )
            except features.RuntimeFailed as error:
                results.print(f"{runtime:<14} skipped: {error}")
                continue
            one_off = time.perf_counter() - started
            first = next(features.model_inputs(dataset, augmentation, 0, view_seed))
            started = time.perf_counter()
            np.asarray(predict(first), dtype=np.float32)
            row = Row(one_off, time.perf_counter() - started)
            results.print(
                f"{runtime:<14} one-off {row.one_off:.1f} s ({ONE_OFF[runtime]}), "
                f"then first batch of {len(first)} {row.first_batch:.1f} s; "
                f"{loads(load)}"
            )
            for views in args.views:
                load = os.getloadavg()[0]
                images, took = forward_pass(
                    predict, features.model_inputs(dataset, augmentation, views, view_seed)
                )
                row.forward[views] = images / took
                results.print(
                    f"{runtime:<14} forward pass, {views} views: {images} images in {took:.1f} s, "
                    f"{images / took:.2f} images/s; {loads(load)}"
                )
        del predict
        for views in args.views:
            with tempfile.TemporaryDirectory() as folder:
                load = os.getloadavg()[0]
                started = time.perf_counter()
                inputs = CacheInputs(
                    args.image_size, augmentation, views, view_seed, runtime, pooling
                )
                cache = features.load_or_build(
                    dataset, weights, inputs, Path(folder), progress=False
                )
                took = time.perf_counter() - started
            if runtime == "tensorflow":  # the first runtime measured
                reference[views] = cache
            difference = max(
                float(np.abs(cache.clean - reference[views].clean).max()),
                float(np.abs(cache.views - reference[views].views).max(initial=0)),
            )
            scale = float(np.abs(reference[views].clean).max())
            own = cache.runtime == runtime
            row.build[views] = took if own else None
            row.difference[views] = difference
            if views == args.views[0]:
                trained_on[runtime] = cache
            images = len(dataset) * (views + 1)
            results.print(
                f"{runtime:<14} whole build, {views} views: {took:.1f} s, "
                f"{images / took:.2f} images/s; max abs diff {difference:.2e} "
                f"(relative {difference / scale:.1e})"
                + ("" if own else f" (built by {cache.runtime})")
                + f"; {loads(load)}"
            )
        rows[runtime] = row

    results.print(
        f"{'views':>5} {'runtime':<14} {'one-off s':>9} {'first s':>8} {'forward img/s':>13} "
        f"{'build s':>8} {'max abs diff':>13}"
    )
    for views in args.views:
        for runtime, row in rows.items():
            build = row.build[views]
            results.print(
                f"{views:>5} {runtime:<14} {row.one_off:>9.1f} {row.first_batch:>8.1f} "
                f"{row.forward[views]:>13.2f} "
                f"{'fallback' if build is None else f'{build:.1f}':>8} "
                f"{row.difference[views]:>13.2e}"
            )
    for views in args.views:
        others = {
            r: row.build[views]
            for r, row in rows.items()
            if r != "tensorflow" and row.build[views] is not None
        }
        if "tensorflow" not in rows or not others:
            results.print(f"ratio: none for {views} views (no other runtime built its own cache)")
            continue
        best = min(others, key=lambda r: others[r])
        tensorflow = rows["tensorflow"].build[views]
        results.print(
            f"ratio: {tensorflow / others[best]:.2f}x ({views} views: tensorflow's whole build "
            f"{tensorflow:.1f} s / {best}'s {others[best]:.1f} s)"
        )

    if not args.seeds:
        return
    accuracy: dict[str, list[float]] = {runtime: [] for runtime in trained_on}
    for seed in args.seeds:
        seeded = config.with_values({"seed": seed})
        split = data.split(dataset, seeded.data.split, seed)
        for runtime, cache in trained_on.items():
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


def forward_pass(predict, batches) -> tuple[int, float]:
    """The images of `batches` and the seconds spent in `predict` on them (not in making them)."""
    images, took = 0, 0.0
    for batch in batches:
        started = time.perf_counter()
        np.asarray(predict(batch), dtype=np.float32)
        took += time.perf_counter() - started
        images += len(batch)
    return images, took


def loads(before: float) -> str:
    return f"load average {before:.2f} before, {os.getloadavg()[0]:.2f} after"


def cpu_flags() -> str:
    """Which of the bf16 and AMX flags /proc/cpuinfo lists."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    flags = next(
        (line.partition(":")[2].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    return ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in CPU_FLAGS)


def openvino_capabilities() -> str:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of the CPU (BF16 when it runs bf16 natively)."""
    try:
        import openvino

        return " ".join(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as error:  # not installed, or no CPU plugin
        return f"unknown ({type(error).__name__})"


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
