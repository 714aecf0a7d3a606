"""Where a fine-tuning trial's time goes, and the study's path against plain `model.fit`.

    python benchmarks/fine_tune_trial_speed.py [--data ../shared/data/neu] [--image-size 224]
        [--epochs 5] [--cuts normal_9 normal_11 normal_12] [--repeats 2]

The trial is search_spaces/optimizer.yaml's fine-tuning phase (the cells from the YAML's cut
up, the head, clean images, Adamax with decay) on the cut's cached activations, with the frozen
phase skipped and early stopping off, so both paths run `--epochs` epochs of the same updates.
Printed, for the YAML's cut:
- set-up: the data, the two caches (pooled features, for the head's normalization; the
  activations at the cut), building the backbone;
- the study's trial (`training.train`), split into the fine-tuning epochs and what follows them
  (scoring every split), and plain `model.fit` on the same activations held in memory, same
  seed, same optimizer: `ratio: Nx` = plain fit's epochs / the study's epochs;
- one epoch taken apart on the model above the cut, per training step: the forward pass, forward
  and backward, the optimizer's update alone, a whole compiled step, and what Keras's epoch
  adds (per-step dispatch, feeding), and the validation pass each epoch;
- the forward-and-backward step at each of `--cuts` (what moving the cut buys) and, where the
  CPU has AVX512_BF16 or AMX, the same step under Keras's mixed_bfloat16 policy with how far
  its predictions move from float32's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import activation_sweep
from results import Results

SPACE = activation_sweep.REPO / "search_spaces" / "optimizer.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser)
    parser.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs on each path")
    parser.add_argument(
        "--cuts",
        nargs="+",
        default=["normal_9", "normal_11", "normal_12"],
        help="cuts whose training step is timed",
    )
    parser.add_argument("--repeats", type=int, default=2, help="timings per component (median)")
    args = parser.parse_args()
    results = Results(__file__)

    import keras
    import numpy as np

    from study import config as study_config
    from study.caches import activations, features
    from study.caches.inputs import CacheInputs
    from study.data import dataset as data
    from study.model import nasnet
    from study.training import train as training

    flags = cpu_flags()
    results.print(
        f"data {args.data} at {args.image_size} px, weights {args.weights}; {os.cpu_count()} "
        f"cores, CPU flags: {', '.join(flags) or 'no avx512_bf16 / amx'}; "
        f"load average {os.getloadavg()[0]:.1f} before"
    )
    overrides = [
        f"data.root={args.data}",
        f"data.image_size={args.image_size}",
        f"model.weights={args.weights}",
        "frozen.epochs=0",
        f"fine_tune.epochs={args.epochs}",
        f"fine_tune.early_stopping.patience={args.epochs}",
        "fine_tune.keep_frozen_if_better=false",
    ]
    config = study_config.load(SPACE, overrides)
    phase = config.fine_tune
    cut = phase.first_trainable
    seed = config.seed

    started = time.perf_counter()
    dataset = data.load(config.data.root, config.data.image_size)
    split = data.split(dataset, config.data.split, seed)
    weights = nasnet.resolve_weights(config.model.weights, config.model.backbone_init_seed(seed))
    load_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        feature_cache = features.load_or_build(
            dataset, weights, CacheInputs.for_features(config), Path(folder), progress=False
        )
        features_s = time.perf_counter() - started
        started = time.perf_counter()
        cache = activations.load_or_build(
            dataset, weights, CacheInputs.for_activations(config), Path(folder), progress=False
        )
        activations_s = time.perf_counter() - started
        results.print(
            f"set-up: data {load_s:.1f} s; feature cache {features_s:.1f} s and activation cache "
            f"at the cut before {cut} {activations_s:.1f} s ({len(dataset)} clean images)"
        )

        started = time.perf_counter()
        trial = training.train(
            config, dataset, split, weights, features=feature_cache, activations=cache
        )
        trial_s = time.perf_counter() - started
        study_s = trial.phases[0].wall_time_s
        study_accuracy = trial.evaluations["fine_tune"]["test"].metrics["accuracy"]

        # plain fit: the same model above the cut, the same head, seed and optimizer, on the
        # activations held in memory as float32 arrays
        started = time.perf_counter()
        backbone = nasnet.build_backbone(config.data.image_size, weights, config.model.pooling)
        build_s = time.perf_counter() - started
        model = above_cut_model(backbone, cut, config, dataset, feature_cache.clean[split["train"]])
        nasnet.set_trainable(backbone, cut, phase.batch_norm == "trainable")
        steps = -(-len(split["train"]) // phase.batch_size)
        compile_like_the_study(model, phase, steps)
        train_x, val_x = cache.inputs(split["train"]), cache.inputs(split["val"])
        train_y, val_y = dataset.labels[split["train"]], dataset.labels[split["val"]]
        keras.utils.set_random_seed(seed + 1)
        started = time.perf_counter()
        model.fit(
            train_x,
            train_y,
            batch_size=phase.batch_size,
            epochs=args.epochs,
            validation_data=(val_x, val_y),
            validation_batch_size=phase.batch_size,
            verbose=0,
        )
        fit_s = time.perf_counter() - started
        test_x = cache.inputs(split["test"])
        fit_accuracy = float(
            (
                model.predict(test_x, batch_size=64, verbose=0).argmax(1)
                == dataset.labels[split["test"]]
            ).mean()
        )
        results.print(
            f"the study's trial: {trial_s:.1f} s, of which {args.epochs} fine-tuning epochs "
            f"{study_s:.1f} s ({study_s / args.epochs:.1f} s per epoch, validation included) and "
            f"{trial_s - study_s:.1f} s before and after them (the model above the cut built, "
            f"every split scored); test accuracy {study_accuracy:.4f}"
        )
        results.print(
            f"plain model.fit, same {args.epochs} epochs: {fit_s:.1f} s "
            f"({fit_s / args.epochs:.1f} s per epoch); building the backbone {build_s:.1f} s; "
            f"test accuracy {fit_accuracy:.4f}"
        )
        results.print(f"ratio: {fit_s / study_s:.2f}x (plain fit / the study's path, same epochs)")

        # one epoch taken apart
        batch = tuple(x[: phase.batch_size] for x in train_x)
        labels = train_y[: phase.batch_size]
        parts = step_parts(model, batch, labels, args.repeats)
        validation_s = median_time(
            lambda: model.evaluate(val_x, val_y, batch_size=phase.batch_size, verbose=0),
            args.repeats,
        )
        epoch_s = median_time(
            lambda: model.fit(
                train_x,
                train_y,
                batch_size=phase.batch_size,
                epochs=1,
                validation_data=(val_x, val_y),
                validation_batch_size=phase.batch_size,
                verbose=0,
            ),
            args.repeats,
        )
        results.print(
            f"one more epoch of plain fit, traced already: {epoch_s:.2f} s (the first "
            f"{args.epochs} epochs include tracing the step: "
            f"{fit_s - args.epochs * epoch_s:.1f} s more than {args.epochs} such epochs)"
        )
        results.print(f"one epoch ({steps} steps of {phase.batch_size}) taken apart:")
        for name, seconds in parts.items():
            results.print(
                f"  {name}: {1000 * seconds:.1f} ms per step, {steps * seconds:.2f} s per epoch "
                f"({100 * steps * seconds / epoch_s:.0f}% of that epoch)"
            )
        rest = epoch_s - steps * parts["whole compiled step"] - validation_s
        results.print(
            f"  validation ({len(split['val'])} images) each epoch: {validation_s:.2f} s "
            f"({100 * validation_s / epoch_s:.0f}%)"
        )
        results.print(
            f"  what Keras's epoch adds (dispatch, feeding, callbacks): {rest:.2f} s "
            f"({100 * rest / epoch_s:.0f}%)"
        )
        scoring_s = median_time(
            lambda: [
                model.predict(cache.inputs(split[name]), batch_size=64, verbose=0)
                for name in ("train", "val", "test")
            ],
            args.repeats,
        )
        results.print(f"scoring every split after the phase: {scoring_s:.1f} s")

        # the step at other cuts, and in bf16
        for other in args.cuts:
            step = cut_step(backbone, other, config, phase, args.repeats)
            results.print(
                f"cut before {other}: forward and backward {1000 * step:.1f} ms per step, "
                f"{steps * step:.1f} s per epoch "
                f"({step / parts['forward and backward']:.2f}x the YAML's cut {cut})"
            )
        if flags:
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
            try:
                bf16_backbone = nasnet.build_backbone(
                    config.data.image_size, weights, config.model.pooling
                )
                bf16 = above_cut_model(
                    bf16_backbone, cut, config, dataset, feature_cache.clean[split["train"]]
                )
                bf16.set_weights(model.get_weights())
                compile_like_the_study(bf16, phase, steps)
                moved = np.abs(
                    bf16.predict(test_x, batch_size=64, verbose=0)
                    - model.predict(test_x, batch_size=64, verbose=0)
                ).max()
                bf16_step = step_parts(bf16, batch, labels, args.repeats)["forward and backward"]
            finally:
                keras.mixed_precision.set_global_policy("float32")
            results.print(
                f"mixed_bfloat16: forward and backward {1000 * bf16_step:.1f} ms per step against "
                f"float32's {1000 * parts['forward and backward']:.1f} ms "
                f"({parts['forward and backward'] / bf16_step:.2f}x); predicted probabilities "
                f"move by up to {moved:.3f}"
            )
    results.print(f"load average {os.getloadavg()[0]:.1f} after")


def above_cut_model(backbone, cut, config, dataset, train_features):
    """The cells from `cut` up and the head, on the cut's tensors: the model the study trains."""
    import keras

    from study.model import nasnet
    from study.training.train import configured_head

    head = configured_head(config, len(dataset.class_names))
    nasnet.adapt_head(head, train_features)
    _, top = nasnet.split_backbone(backbone, cut)
    inputs = [keras.Input(tensor.shape[1:]) for tensor in top.inputs]
    return keras.Model(inputs, head(top(inputs, training=False)))


def compile_like_the_study(model, phase, steps_per_epoch: int) -> None:
    import keras

    rate = keras.optimizers.schedules.ExponentialDecay(
        phase.learning_rate, steps_per_epoch, 1 - phase.decay_rate, staircase=True
    )
    model.compile(
        optimizer=keras.optimizers.get(
            {"class_name": phase.optimizer, "config": {"learning_rate": rate}}
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )


def step_parts(model, batch, labels, repeats: int) -> dict[str, float]:
    """Seconds per training step: the forward pass, forward and backward, the optimizer's update
    alone, and a whole compiled step (Keras's train_on_batch)."""
    import keras
    import tensorflow as tf

    loss = keras.losses.SparseCategoricalCrossentropy()
    variables = model.trainable_variables

    @tf.function
    def forward(x):
        return model(x, training=True)

    @tf.function
    def forward_backward(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        return tape.gradient(value, variables)

    gradients = forward_backward(batch, labels)
    if not model.optimizer.built:
        model.optimizer.build(variables)

    @tf.function
    def update(grads):
        model.optimizer.apply(grads, variables)

    batches = 5
    return {
        "forward": median_time(lambda: [forward(batch) for _ in range(batches)], repeats) / batches,
        "forward and backward": median_time(
            lambda: [forward_backward(batch, labels) for _ in range(batches)], repeats
        )
        / batches,
        "optimizer update": median_time(
            lambda: [update(gradients) for _ in range(batches)], repeats
        )
        / batches,
        "whole compiled step": median_time(
            lambda: [model.train_on_batch(batch, labels) for _ in range(batches)], repeats
        )
        / batches,
    }


def cut_step(backbone, cut, config, phase, repeats: int) -> float:
    """Forward and backward per step with the cells from `cut` up trainable, on random inputs of
    the cut's shapes (the step's cost does not depend on the values)."""
    import keras
    import numpy as np

    from study.model import nasnet

    _, top = nasnet.split_backbone(backbone, cut)
    nasnet.set_trainable(backbone, cut, phase.batch_norm == "trainable")
    inputs = [keras.Input(tensor.shape[1:]) for tensor in top.inputs]
    head = nasnet.build_head(
        6, config.model.activation, config.model.dropout, config.model.head_width, config.seed
    )
    model = keras.Model(inputs, head(top(inputs, training=False)))
    model.compile(optimizer="adamax", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    batch = tuple(
        rng.standard_normal((phase.batch_size, *tensor.shape[1:])).astype(np.float32)
        for tensor in top.inputs
    )
    labels = rng.integers(0, 6, phase.batch_size)
    return step_parts(model, batch, labels, repeats)["forward and backward"]


def median_time(work, repeats: int) -> float:
    """The median wall time of `work` over `repeats` calls, after one call to warm up."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cpu_flags() -> list[str]:
    """The bf16 flags of this CPU, from /proc/cpuinfo."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [flag for flag in ("avx512_bf16", "amx_bf16") if flag in words]


if __name__ == "__main__":
    main()
