"""Does training the head on cached features give the model that training through the backbone
gives? The frozen phase of the paper's protocol (`activation.yaml` with the paper's augmentation
and early stopping, 20 cached views) on NEU, once on the feature cache and once end to end
through the frozen backbone with fresh augmentation every epoch, for the same seeds (same split,
same head initialisation), in one run.

    python benchmarks/cache_fidelity.py [--data ../shared/data/neu] [--image-size 128]

Prints each seed's test error both ways, their means and spreads, and the cached-minus-direct
difference by the report's own test (Nadeau-Bengio corrected resampled t-test over the seeds).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import activation_sweep
import yaml
from results import Results

results = Results(__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser, image_size=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    from study import config as study_config
    from study.caches import features
    from study.caches.inputs import CacheInputs
    from study.data import dataset as data
    from study.model.nasnet import resolve_weights
    from study.report import stats
    from study.training import train as training

    overrides = [
        f"data.root={args.data}",
        f"data.image_size={args.image_size}",
        f"model.weights={args.weights}",
    ]
    config = study_config.load(activation_sweep.SPACE, overrides)
    config = config.with_values({**activation_sweep.PAPER_PROTOCOL, "features.views": 20})
    pairs = (item.split("=", 1) for item in args.set)  # --set KEY=VALUE, values as YAML
    config = config.with_values({key: yaml.safe_load(value) for key, value in pairs})
    dataset = data.load(config.data.root, config.data.image_size)
    weights = resolve_weights(config.model.weights, config.model.backbone_init_seed(config.seed))
    results.print(
        f"{len(dataset)} images at {args.image_size} px, weights {weights.label}, "
        f"{config.features.views} cached views, {config.frozen.epochs} epochs"
    )
    errors: dict[str, list[float]] = {"cached": [], "direct": []}
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        cache = features.load_or_build(
            dataset, weights, CacheInputs.for_features(config), directory=Path(folder)
        )
        results.print(f"feature cache build: {time.perf_counter() - started:.0f} s")
        for seed in args.seeds:
            seeded = config.with_values({"seed": seed})
            split = data.split(dataset, seeded.data.split, seed)
            for name, source in (("cached", cache), ("direct", None)):
                started = time.perf_counter()
                result = training.train(seeded, dataset, split, weights, source)
                error = 100 * result.evaluations["frozen"]["test"].metrics["error_rate"]
                errors[name].append(error)
                took = time.perf_counter() - started
                results.print(f"seed {seed} {name:>6}: test error {error:.2f} % ({took:.0f} s)")
    for name, values in errors.items():
        spread = stats.spread(values)
        results.print(f"{name}: test error {spread.mean:.2f} ± {spread.std:.2f} % (n = {spread.n})")
    test = stats.paired_comparison(errors["cached"], errors["direct"])
    results.print(
        f"cached - direct: {test.mean_difference:+.2f} points, 95% CI "
        f"[{test.ci_low:+.2f}, {test.ci_high:+.2f}] over seeds, sign-flip p = {test.p_value:.3f} "
        f"({test.n} seeds)"
    )


if __name__ == "__main__":
    main()
