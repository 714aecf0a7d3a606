"""Does the study's frozen-phase loop score like plain `model.fit`? activation.yaml's frozen
phase on cached NEU features, both ways, over seeds.

    python benchmarks/seeds_equivalence.py [--seeds 10] [--image-size 224] [--state-dir DIR]

Each seed trains the head both ways on the seed's split from the seed's initial weights
(`seeds_speed.plain_fit` and `seeds_speed.study_trial`); `model.fit` shuffles with its own
draws, so the pair differs by batch order. Prints each method's test accuracy (mean, sd over
seeds), the mean paired difference (study - model.fit) with its 95% t interval, and the exact
sign-flip permutation p of that mean (every one of the 2^seeds sign patterns).
"""

from __future__ import annotations

import argparse

import numpy as np
import seeds_speed
from scipy import stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    seeds_speed.add_options(parser)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()

    inputs = seeds_speed.prepare(args)
    plain, ours = [], []
    for seed in range(args.seeds):
        fitted = seeds_speed.plain_fit(inputs, seed)
        looped = seeds_speed.study_trial(inputs, seed)
        plain.append(fitted.test_accuracy)
        ours.append(looped.test_accuracy)
        print(
            f"seed {seed}: model.fit {fitted.test_accuracy:.4f} ({fitted.epochs} epochs), "
            f"study {looped.test_accuracy:.4f} ({looped.epochs} epochs)"
        )
    plain, ours = np.array(plain), np.array(ours)
    for name, scores in (("model.fit", plain), ("study", ours)):
        print(f"{name + ':':10} test accuracy {scores.mean():.4f} ± {scores.std(ddof=1):.4f} (sd)")
    difference = ours - plain
    interval = stats.t.interval(
        0.95, len(difference) - 1, loc=difference.mean(), scale=stats.sem(difference)
    )
    flips = stats.permutation_test(
        (difference,),
        np.mean,
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
    )
    print(
        f"paired difference (study - model.fit): {difference.mean():+.4f}, "
        f"95% t interval [{interval[0]:+.4f}, {interval[1]:+.4f}], "
        f"sign-flip p = {flips.pvalue:.3f} ({len(difference)} seeds)"
    )


if __name__ == "__main__":
    main()
