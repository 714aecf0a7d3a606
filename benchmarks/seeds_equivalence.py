"""Does the study's frozen-phase loop score like plain `model.fit`? activation.yaml's frozen
phase on cached NEU features, both ways, over seeds.

    python benchmarks/seeds_equivalence.py [--seeds 10] [--image-size 224] [--state-dir DIR]

Each seed trains the head both ways on the seed's split from the seed's initial weights
(`seeds_speed.plain_fit` and `seeds_speed.study_trial`); `model.fit` shuffles with its own
draws, so the pair differs by batch order. Prints each method's test accuracy (mean, sd over
seeds), the mean paired difference (study - model.fit) with its 95% t interval, and the exact
sign-flip permutation p of that mean: the report's paired comparison over seeds.
"""

from __future__ import annotations

import argparse

import numpy as np
import seeds_speed
from results import Results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    seeds_speed.add_options(parser)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    results = Results(__file__)

    inputs = seeds_speed.prepare(args, results.print)
    plain, ours = [], []
    for seed in range(args.seeds):
        fitted = seeds_speed.plain_fit(inputs, seed)
        looped = seeds_speed.study_trial(inputs, seed)
        plain.append(fitted.test_accuracy)
        ours.append(looped.test_accuracy)
        results.print(
            f"seed {seed}: model.fit {fitted.test_accuracy:.4f} ({fitted.epochs} epochs), "
            f"study {looped.test_accuracy:.4f} ({looped.epochs} epochs)"
        )
    print_paired(results, plain, ours)


def print_paired(results: Results, plain: list[float], ours: list[float]) -> None:
    """Each way's test accuracy over seeds, and the paired difference (study - model.fit) with
    its t interval and sign-flip p: the report's paired comparison over seeds."""
    from study.report import stats

    plain, ours = np.array(plain), np.array(ours)
    for name, scores in (("model.fit", plain), ("study", ours)):
        results.print(
            f"{name + ':':10} test accuracy {scores.mean():.4f} ± {scores.std(ddof=1):.4f} (sd)"
        )
    test = stats.paired_comparison(ours, plain)
    results.print(
        f"paired difference (study - model.fit): {test.mean_difference:+.4f}, "
        f"95% t interval [{test.ci_low:+.4f}, {test.ci_high:+.4f}], "
        f"sign-flip p = {test.p_value:.3f} ({test.n} seeds)"
    )


if __name__ == "__main__":
    main()
