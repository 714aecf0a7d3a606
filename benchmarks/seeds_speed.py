"""What a seed costs: one frozen-phase trial of activation.yaml on cached features, through plain
`model.fit` (what a user would write) and through the study's training, then optionally the
whole activation sweep at 20 seeds.

    python benchmarks/seeds_speed.py [--data ../shared/data/neu] [--image-size 224]
        [--state-dir DIR] [--seed 0] [--sweep [--tracking-uri URI]]

Both trials train the same head (same seed, so the same initial weights and split, features
standardized on the training split) at activation.yaml's settings (up to 500 epochs, patience
50 on validation accuracy, best weights restored), scored on the test split, after an untimed
2-epoch run of each that pays the process's first TensorFlow calls. `model.fit` shuffles with
its own draws, so the two runs stop at different epochs and score differently by the seed's
luck, not by method (`benchmarks/seeds_equivalence.py` compares the methods over seeds). The
feature cache is built with the study's own code in `--state-dir` (minutes at 224 px, once)
and reused, also by the sweep that `--sweep` runs: `study sweep activation.yaml` with seeds
0-19 (80 runs), printed as `80 runs in S s`, into a throwaway store or `--tracking-uri` (to
make the activation report from). The trials' last line is `ratio: Nx`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import activation_sweep
from results import Results

if TYPE_CHECKING:  # the study's modules load TensorFlow: imported once the options parse
    from study.caches.features import FeatureCache
    from study.config import StudyConfig
    from study.data.dataset import Dataset
    from study.model.nasnet import Weights

SEEDS = 20
DEFAULT_STATE = Path(tempfile.gettempdir()) / "seeds-speed-state"


@dataclass
class Trial:
    seconds: float
    epochs: int
    test_accuracy: float


@dataclass
class Inputs:
    """What every trial of the benchmark shares."""

    config: StudyConfig
    dataset: Dataset
    weights: Weights
    cache: FeatureCache


def add_options(parser: argparse.ArgumentParser) -> None:
    """`activation_sweep`'s options and --state-dir."""
    activation_sweep.add_options(parser)
    parser.add_argument(
        "--state-dir",
        default=str(DEFAULT_STATE),
        help="where the feature cache is kept between runs (features/ inside it)",
    )


def prepare(args: argparse.Namespace, say: Callable[[str], None]) -> Inputs:
    """Say the machine and commit; load NEU and the feature cache (built if missing)."""
    from study import config as study_config
    from study.caches import features
    from study.caches.inputs import CacheInputs
    from study.data import dataset as data
    from study.model.nasnet import resolve_weights
    from study.tracking import provenance

    overrides = [
        f"data.root={args.data}",
        f"data.image_size={args.image_size}",
        f"model.weights={args.weights}",
    ]
    config = study_config.load(activation_sweep.SPACE, overrides)
    say(f"machine: {provenance.machine()['machine']}")
    commit = provenance.source_tags().get("mlflow.source.git.commit", "not a git checkout")
    say(f"commit: {commit}")
    say(f"data: {args.data} at {args.image_size} px, weights {args.weights}")
    dataset = data.load(
        config.data.root, config.data.image_size, config.data.skip_bad_files, config.data
    )
    weights = resolve_weights(config.model.weights, config.model.backbone_init_seed(config.seed))
    started = time.perf_counter()
    cache = features.load_or_build(
        dataset,
        weights,
        CacheInputs.for_features(config),
        directory=Path(args.state_dir) / "features",
    )
    say(f"feature cache in {args.state_dir}: ready in {time.perf_counter() - started:.1f} s")
    frozen, stopping = config.frozen, config.frozen.early_stopping
    say(
        f"trial: batch {frozen.batch_size}, up to {frozen.epochs} epochs, patience "
        f"{stopping.patience} on {stopping.monitor}, best weights restored"
    )
    return Inputs(config, dataset, weights, cache)


def plain_fit(inputs: Inputs, seed: int, epochs: int | None = None) -> Trial:
    """The frozen phase as a user would write it with `model.fit`: the study's head at `seed`
    on the seed's split, `model.fit` shuffling the training features itself."""
    import keras

    from study.data import dataset as data
    from study.model.nasnet import adapt_head, build_head

    config = inputs.config
    frozen, stopping = config.frozen, config.frozen.early_stopping
    started = time.perf_counter()
    split = data.split(inputs.dataset, config.data.split, seed)
    x = {name: inputs.cache.clean[indices] for name, indices in split.items()}
    y = {name: inputs.dataset.labels[indices] for name, indices in split.items()}
    head = build_head(
        len(inputs.dataset.class_names),
        config.model.activation,
        config.model.dropout,
        config.model.head_width,
        seed,
        normalize=config.model.normalize_features,
    )
    adapt_head(head, x["train"])
    head.compile(
        optimizer=keras.optimizers.Adam(frozen.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    fitted = head.fit(
        x["train"],
        y["train"],
        batch_size=frozen.batch_size,
        epochs=epochs or frozen.epochs,
        validation_data=(x["val"], y["val"]),
        callbacks=[
            keras.callbacks.EarlyStopping(
                stopping.monitor, patience=stopping.patience, restore_best_weights=True
            )
        ],
        verbose=0,
    )
    test = head.evaluate(x["test"], y["test"], verbose=0, return_dict=True)["accuracy"]
    return Trial(time.perf_counter() - started, len(fitted.history["loss"]), test)


def study_trial(inputs: Inputs, seed: int, epochs: int | None = None) -> Trial:
    """The same trial through the study's training (`training.train`), as a sweep runs it."""
    from study.data import dataset as data
    from study.training import train as training

    started = time.perf_counter()
    config = inputs.config.with_values(
        {"seed": seed, "frozen.epochs": epochs or inputs.config.frozen.epochs}
    )
    split = data.split(inputs.dataset, config.data.split, seed)
    result = training.train(config, inputs.dataset, split, inputs.weights, inputs.cache)
    test = result.evaluations["frozen"]["test"].metrics["accuracy"]
    return Trial(time.perf_counter() - started, result.phases[0].epochs_run, test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", action="store_true", help=f"also time {SEEDS} seeds' sweep")
    parser.add_argument("--tracking-uri", help="the sweep's store (default: a throwaway one)")
    args = parser.parse_args()
    results = Results(__file__)

    inputs = prepare(args, results.print)
    plain_fit(inputs, args.seed, epochs=2), study_trial(inputs, args.seed, epochs=2)  # warm-up
    plain = plain_fit(inputs, args.seed)
    ours = study_trial(inputs, args.seed)
    for name, trial in (("model.fit", plain), ("study", ours)):
        results.print(
            f"seed {args.seed}, {name + ':':10} {trial.seconds:6.1f} s, {trial.epochs} epochs "
            f"({1000 * trial.seconds / trial.epochs:.0f} ms per epoch run), "
            f"test accuracy {trial.test_accuracy:.4f}"
        )
    per_epoch = (plain.seconds / plain.epochs) / (ours.seconds / ours.epochs)
    results.print(f"per epoch run: {per_epoch:.1f}x (the two runs stop at different epochs)")
    results.print(f"ratio: {plain.seconds / ours.seconds:.1f}x")

    if args.sweep:
        seeds = "[" + ",".join(str(seed) for seed in range(SEEDS)) + "]"
        with tempfile.TemporaryDirectory() as folder:
            store = args.tracking_uri or f"sqlite:///{folder}/m.db"
            sweep_s = activation_sweep.run(
                args, store, args.state_dir, "--fresh", "--set", f"seeds={seeds}"
            )
        results.print(f"{4 * SEEDS} runs in {sweep_s:.0f} s")


if __name__ == "__main__":
    main()
