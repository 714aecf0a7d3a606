"""Inference timing of the whole classifier (NASNet-Mobile backbone and head), as the paper's
Table 5 reports it, measured on this machine and logged as an MLflow run for the report.

Each batch size is warmed up first (the first calls trace the graph), then timed step by step:
one step is one inference call on random images on the chosen runtime (`study.model.runtimes`:
TensorFlow's `predict_on_batch`, ONNX Runtime or OpenVINO on Keras's ONNX export), which returns
the class probabilities to the host. The median step is the figure; the quartiles are its spread.
"""

from __future__ import annotations

import functools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import study
from study.config import StudyConfig
from study.errors import StudyError
from study.model import runtimes
from study.model.nasnet import (
    Weights,
    build_backbone,
    build_classifier,
    build_head,
    parameter_counts,
    resolve_weights,
)
from study.tracking import provenance
from study.tracking.store import Store

BATCH_SIZES = (32, 1)
NEU_CLASSES = 6


@dataclass(frozen=True)
class Timing:
    batch_size: int
    step_ms: tuple[float, ...]  # every timed step, in order

    @property
    def median_ms(self) -> float:
        return float(np.median(self.step_ms))

    @property
    def quartiles_ms(self) -> tuple[float, float]:
        q1, q3 = np.percentile(self.step_ms, [25, 75])
        return float(q1), float(q3)

    @property
    def ms_per_image(self) -> float:
        return self.median_ms / self.batch_size


@dataclass(frozen=True)
class Benchmark:
    image_size: int
    weights: Weights
    head: dict[str, object]  # n_classes, activation, dropout, head_width
    warmup: int
    repeats: int
    parameters: int
    timings: tuple[Timing, ...]
    machine: dict[str, str]
    runtime: str = "tensorflow"


@functools.cache
def measure(
    image_size: int,
    weights: Weights,
    n_classes: int = NEU_CLASSES,
    activation: str = "elu",
    dropout: float = 0.2,
    head_width: int = 100,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    warmup: int = 3,
    repeats: int = 20,
    runtime: str = "tensorflow",
) -> Benchmark:
    """Time inference steps of the full classifier at each batch size on random images, on
    `runtime` (one of `study.model.runtimes.RUNTIMES`)."""
    runtimes.check(runtime)
    if warmup < 1 or repeats < 1 or min(batch_sizes) < 1:
        raise StudyError(
            f"bench: warmup, repeats and batch sizes must be at least 1 "
            f"(got warmup {warmup}, repeats {repeats}, batch sizes {list(batch_sizes)})"
        )
    head = build_head(n_classes, activation, dropout, head_width, seed=0)
    model = build_classifier(build_backbone(image_size, weights), head)
    images = np.random.default_rng(0).uniform(-1, 1, (max(batch_sizes), image_size, image_size, 3))
    images = images.astype(np.float32)
    timings = []
    with tempfile.TemporaryDirectory() as folder:
        predict = runtimes.predictor(model, runtime, Path(folder))
        for batch_size in batch_sizes:
            timings.append(time_steps(predict, images[:batch_size], warmup, repeats))
    return Benchmark(
        image_size=image_size,
        weights=weights,
        head={
            "n_classes": n_classes,
            "activation": activation,
            "dropout": dropout,
            "head_width": head_width,
        },
        warmup=warmup,
        repeats=repeats,
        parameters=parameter_counts(model)[0],
        timings=tuple(timings),
        machine=provenance.machine(),
        runtime=runtime,
    )


def time_steps(predict: runtimes.Predict, batch: np.ndarray, warmup: int, repeats: int) -> Timing:
    """`repeats` timed calls of `predict` on `batch`, after `warmup` untimed ones."""
    for _ in range(warmup):
        predict(batch)
    steps = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict(batch)
        steps.append(1000 * (time.perf_counter() - started))
    return Timing(len(batch), tuple(steps))


def measure_config(
    config: StudyConfig,
    n_classes: int = NEU_CLASSES,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    warmup: int = 3,
    repeats: int = 20,
    runtime: str = "tensorflow",
) -> Benchmark:
    """`measure` with a study's image size, backbone weights (random: its seed's draw) and
    head."""
    init_seed = config.model.backbone_init_seed(config.seed)
    weights = resolve_weights(config.model.weights, init_seed)
    return measure(
        config.data.image_size,
        weights,
        n_classes,
        config.model.activation,
        config.model.dropout,
        config.model.head_width,
        batch_sizes,
        warmup,
        repeats,
        runtime,
    )


def log(benchmark: Benchmark, store: Store, experiment_name: str) -> str:
    """Log the benchmark as a FINISHED run (tag run_type=bench) in the named experiment;
    returns its run id. Each step's time is kept as the history `batch<N>/step_ms`."""
    experiment_id = store.experiment(experiment_name)
    weights = benchmark.weights
    tags = {
        "run_type": "bench",
        "study_version": study.__version__,
        "weights": weights.label,
        "weights_source": weights.source,
        "weights_id": weights.identity,
        **benchmark.machine,
        "runtime": benchmark.runtime,
    }
    params = {
        "image_size": benchmark.image_size,
        "weights": weights.source if weights.path is None else str(weights.path),
        **benchmark.head,
        "batch_sizes": ",".join(str(t.batch_size) for t in benchmark.timings),
        "warmup": benchmark.warmup,
        "repeats": benchmark.repeats,
        "runtime": benchmark.runtime,
    }
    metrics: list[tuple[str, float, int]] = [("parameters_total", benchmark.parameters, 0)]
    for timing in benchmark.timings:
        name = f"batch{timing.batch_size}"
        q1, q3 = timing.quartiles_ms
        metrics += [
            (f"{name}_ms_per_step", timing.median_ms, 0),
            (f"{name}_ms_per_step_q1", q1, 0),
            (f"{name}_ms_per_step_q3", q3, 0),
            (f"{name}_ms_per_image", timing.ms_per_image, 0),
        ]
        metrics += [(f"{name}/step_ms", ms, step) for step, ms in enumerate(timing.step_ms)]
    run_name = f"{experiment_name}-bench-{benchmark.image_size}px-{benchmark.runtime}"
    with store.run(experiment_id, run_name, tags) as run_id:
        store.log(run_id, params=params, metrics=metrics)
    return run_id


def summary(benchmark: Benchmark) -> str:
    """The timings in a few lines, for the terminal."""
    lines = [
        f"NASNet-Mobile classifier, {benchmark.image_size} px, {benchmark.parameters:,} "
        f"parameters, {benchmark.runtime} on {benchmark.machine['machine']}"
    ]
    for timing in benchmark.timings:
        q1, q3 = timing.quartiles_ms
        lines.append(
            f"batch {timing.batch_size}: {timing.median_ms:.1f} ms per step "
            f"(quartiles {q1:.1f}-{q3:.1f}, {benchmark.repeats} steps), "
            f"{timing.ms_per_image:.2f} ms per image"
        )
    return "\n".join(lines)
