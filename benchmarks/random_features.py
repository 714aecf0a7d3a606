"""What the paper's head protocol costs on features that are not ImageNet's: the frozen phase
on random-backbone features (weights none) of the full NEU folder, the paper's protocol against
the settings the example search spaces use, and the steps between, for the same seeds.

    python benchmarks/random_features.py [--data ../shared/data/neu] [--image-size 128]

Prints each variant's validation accuracy (mean ± std; what a choice between them may use) and
test accuracy per seed with its mean ± std, and the epochs it ran.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import activation_sweep
from results import Results

results = Results(__file__)

VARIANTS = {
    "paper: augmented views, raw features, patience 3 on val_loss": {},
    "+ features normalized": {"model.normalize_features": True},
    "clean images, raw features": {"frozen.augment": False},
    "clean images, features normalized": {
        "frozen.augment": False,
        "model.normalize_features": True,
    },
    "clean, normalized, 100 epochs, patience 10 on val_accuracy": {
        "frozen.augment": False,
        "model.normalize_features": True,
        "frozen.epochs": 100,
        "frozen.early_stopping.monitor": "val_accuracy",
        "frozen.early_stopping.patience": 10,
    },
    "clean, normalized, 500 epochs, patience 50 on val_accuracy (example studies)": {
        "frozen.augment": False,
        "model.normalize_features": True,
        "frozen.epochs": 500,
        "frozen.early_stopping.monitor": "val_accuracy",
        "frozen.early_stopping.patience": 50,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser, image_size=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()

    from study import config as study_config
    from study.caches import features
    from study.caches.inputs import CacheInputs
    from study.data import dataset as data
    from study.model.nasnet import resolve_weights
    from study.report import stats
    from study.training import train as training

    base = study_config.load(
        activation_sweep.SPACE,
        [f"data.root={args.data}", f"data.image_size={args.image_size}", "model.weights=none"],
    ).with_values(activation_sweep.PAPER_PROTOCOL)
    dataset = data.load(base.data.root, base.data.image_size)
    weights = resolve_weights("none", base.model.backbone_init_seed(base.seed))
    results.print(f"{len(dataset)} images at {args.image_size} px, weights {weights.label}")
    with tempfile.TemporaryDirectory() as folder:
        for name, changes in VARIANTS.items():
            config = base.with_values(changes)
            cache = features.load_or_build(
                dataset, weights, CacheInputs.for_features(config), directory=Path(folder)
            )
            accuracies, validation, epochs = [], [], []
            for seed in args.seeds:
                seeded = config.with_values({"seed": seed})
                split = data.split(dataset, seeded.data.split, seed)
                result = training.train(seeded, dataset, split, weights, cache)
                scores = result.evaluations["frozen"]
                accuracies.append(100 * scores["test"].metrics["accuracy"])
                validation.append(100 * scores["val"].metrics["accuracy"])
                epochs.append(result.phases[0].epochs_run)
            spread, val = stats.spread(accuracies), stats.spread(validation)
            per_seed = " ".join(f"{value:.1f}" for value in accuracies)
            results.print(
                f"{name}: validation accuracy {val.mean:.2f} ± {val.std:.2f} %, "
                f"test accuracy {spread.mean:.2f} ± {spread.std:.2f} % "
                f"(seeds {per_seed}; epochs run {' '.join(map(str, epochs))})"
            )


if __name__ == "__main__":
    main()
