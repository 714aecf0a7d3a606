"""Every inference runtime on one logged model, in one run: batch-1 ms per image, batch-32
images per second (median of timed steps on the model's test images, after warm-up), and the
accuracy on the test split of the run that trained it, with its change from TensorFlow's.

    python benchmarks/inference_runtimes.py models:/NAME@champion [--tracking-uri URI]

The last line names the best runtime: the fastest at batch 1 among those whose test accuracy is
within 0.5 points of TensorFlow's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from results import Results

from study.data.dataset import to_model_input
from study.model import runtimes
from study.serving import bench
from study.serving.export import parity_images
from study.tracking import logged_model, provenance
from study.tracking.store import Store

results = Results(__file__)

ACCURACY_MARGIN = 0.005  # at most 0.5 points of test accuracy from TensorFlow's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_uri", help="runs:/<run id>/model or models:/NAME@champion")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    store = Store(args.tracking_uri)
    classifier = logged_model.load(store.uri, args.model_uri)
    run_id = mlflow.models.get_model_info(args.model_uri).run_id
    images, classes = parity_images(store, run_id, classifier.image_size)
    inputs = to_model_input(images)
    truth = np.array([classifier.class_names.index(name) for name in classes])
    batch32 = np.resize(inputs, (32, *inputs.shape[1:]))  # the test images, repeated to 32
    results.print(
        f"{args.model_uri}: {classifier.image_size} px, {len(images)} test images, "
        f"on {provenance.machine()['machine']}"
    )
    results.print(
        f"{'runtime':<14} {'batch 1 ms/image':>17} {'batch 32 images/s':>18} {'accuracy':>9}"
    )
    rows = {}
    for runtime in runtimes.RUNTIMES:
        with tempfile.TemporaryDirectory() as folder:
            predict = runtimes.predictor(classifier.model, runtime, Path(folder))
            scores = np.concatenate(
                [predict(inputs[i : i + 32]) for i in range(0, len(inputs), 32)]
            )
            one = bench.time_steps(predict, inputs[:1], args.warmup, args.repeats)
            many = bench.time_steps(predict, batch32, args.warmup, args.repeats)
        accuracy = float((scores.argmax(axis=1) == truth).mean())
        rows[runtime] = (one.ms_per_image, 1000 / many.ms_per_image, accuracy)
        change = accuracy - rows["tensorflow"][2]
        results.print(
            f"{runtime:<14} {one.ms_per_image:>17.2f} {1000 / many.ms_per_image:>18.1f} "
            f"{accuracy:>9.4f} ({100 * change:+.2f} points)"
        )
    reference = rows["tensorflow"][2]
    kept = {r: v for r, v in rows.items() if abs(v[2] - reference) <= ACCURACY_MARGIN}
    best = min(kept, key=lambda runtime: kept[runtime][0])
    results.print(
        f"best: {best} batch 1 {kept[best][0]:.2f} ms/image, batch 32 {kept[best][1]:.1f} images/s"
    )


if __name__ == "__main__":
    main()
