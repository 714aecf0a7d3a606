"""Does the study's fine-tuning path score like plain `model.fit`? optimizer.yaml's fine-tuning
phase (the cells from its cut up and the head, on cached activations, early stopping as the
YAML sets it) both ways, over seeds, each seed on its own random backbone.

    python benchmarks/fine_tune_equivalence.py [--data ../shared/data/neu] [--seeds 10]
        [--state-dir DIR]

The frozen phase is skipped, so both ways start from the seed's initial head. The study's
path is `training.train` (the activation cache fed by the study's batch pipeline); plain fit
is `model.fit` on the same activations held in memory, with Keras's EarlyStopping on the same
monitor and patience, restoring the best weights. Prints each way's test accuracy per seed
and over seeds, and the mean paired difference (study - model.fit) with its 95% t interval
and the exact sign-flip p: the report's paired comparison over seeds.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import activation_sweep
import fine_tune_trial_speed as trial_speed
import seeds_equivalence
from results import Results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--state-dir", type=Path, help="keep (and reuse) the caches here")
    args = parser.parse_args()
    results = Results(__file__)

    import keras

    from study import config as study_config
    from study.caches import activations, features
    from study.caches.inputs import CacheInputs
    from study.data import dataset as data
    from study.model import nasnet
    from study.training import train as training

    base = study_config.load(
        trial_speed.SPACE,
        [
            f"data.root={args.data}",
            f"data.image_size={args.image_size}",
            f"model.weights={args.weights}",
            "frozen.epochs=0",
            "fine_tune.keep_frozen_if_better=false",
        ],
    )
    dataset = data.load(base.data.root, base.data.image_size)
    results.print(
        f"{len(dataset)} images at {args.image_size} px, weights {args.weights}, fine-tuning "
        f"from {base.fine_tune.first_trainable}, {args.seeds} seeds"
    )
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.state_dir or Path(scratch)
        for seed in range(args.seeds):
            config = base.with_values({"seed": seed})
            phase = config.fine_tune
            split = data.split(dataset, config.data.split, seed)
            weights = nasnet.resolve_weights(
                config.model.weights, config.model.backbone_init_seed(seed)
            )
            cache = activations.load_or_build(
                dataset,
                weights,
                CacheInputs.for_activations(config),
                folder / "activations",
                progress=False,
                alongside=activations.FeaturesAlongside(
                    CacheInputs.for_features(config), folder / "features"
                ),
            )
            feature_cache = features.load_or_build(
                dataset, weights, CacheInputs.for_features(config), folder / "features", False
            )
            trial = training.train(
                config, dataset, split, weights, features=feature_cache, activations=cache
            )
            ours.append(trial.evaluations["fine_tune"]["test"].metrics["accuracy"])

            backbone = nasnet.build_backbone(config.data.image_size, weights, config.model.pooling)
            model = trial_speed.above_cut_model(
                backbone,
                phase.first_trainable,
                config,
                dataset,
                feature_cache.clean[split["train"]],
            )
            nasnet.set_trainable(backbone, phase.first_trainable, phase.batch_norm == "trainable")
            steps = -(-len(split["train"]) // phase.batch_size)
            trial_speed.compile_like_the_study(model, phase, steps)
            keras.utils.set_random_seed(seed + 1)
            stopping = phase.early_stopping
            fitted = model.fit(
                cache.inputs(split["train"]),
                dataset.labels[split["train"]],
                batch_size=phase.batch_size,
                epochs=phase.epochs,
                validation_data=(cache.inputs(split["val"]), dataset.labels[split["val"]]),
                callbacks=[
                    keras.callbacks.EarlyStopping(
                        monitor=stopping.monitor,
                        patience=stopping.patience or phase.epochs,
                        restore_best_weights=stopping.restore_best,
                    )
                ],
                verbose=0,
            )
            predicted = model.predict(cache.inputs(split["test"]), batch_size=64, verbose=0)
            plain.append(float((predicted.argmax(1) == dataset.labels[split["test"]]).mean()))
            results.print(
                f"seed {seed}: model.fit {plain[-1]:.4f} ({len(fitted.history['loss'])} epochs), "
                f"study {ours[-1]:.4f} ({trial.phases[0].epochs_run} epochs)"
            )
    seeds_equivalence.print_paired(results, plain, ours)


if __name__ == "__main__":
    main()
