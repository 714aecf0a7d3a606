"""What feeding Keras through a PyDataset costs: the same training epochs of the whole
NASNet-Mobile classifier (every layer trainable, no augmentation), fed by
`feeding.batch_pipeline` and by a Keras PyDataset over the same batches, each in a fresh
process.

    python benchmarks/feeding_speed.py [--data ../shared/data/neu] [--image-size 128]
        [--images 320] [--epochs 3]

Keras feeds a PyDataset through `tf.data.Dataset.from_generator`, whose kernel sets glibc's
M_TRIM_THRESHOLD, and with it freezes glibc's mmap threshold where it stands, for the whole
process. How much that costs depends on what the process allocated and freed before, so each
feeding starts in a process of its own, as a `study` command does. Prints each feeding's mean
epoch time after the first (traced) epoch, the system CPU time per epoch, and `ratio: <N>x`
(PyDataset / batch_pipeline).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import activation_sweep
from results import Results

results = Results(__file__)

FEEDINGS = ("pipeline", "pydataset")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    activation_sweep.add_options(parser, image_size=128)
    parser.add_argument("--images", type=int, default=320, help="training images (from --data)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (>= 2)")
    parser.add_argument("--feeding", choices=FEEDINGS, help="measure this one, in this process")
    args = parser.parse_args()
    if args.feeding is None:
        times = {}
        for feeding in FEEDINGS:
            command = [sys.executable, __file__, *sys.argv[1:], "--feeding", feeding]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            lines = done.stdout.splitlines()
            results.print("\n".join(lines[:-1]))
            times[feeding] = float(lines[-1])
        results.print(
            f"ratio: {times['pydataset'] / times['pipeline']:.2f}x (PyDataset / batch_pipeline)"
        )
        return

    import keras
    import numpy as np

    from study.data import dataset as data
    from study.model import nasnet as model
    from study.training import feeding

    dataset = data.load(args.data, args.image_size)
    chosen = np.random.default_rng(0).permutation(len(dataset))[: args.images]
    images, labels = dataset.images[chosen], dataset.labels[chosen]
    weights = model.resolve_weights(args.weights)
    backbone = model.build_backbone(args.image_size, weights)
    classifier = model.build_classifier(
        backbone, model.build_head(len(dataset.class_names), "elu", 0.2, 100, 0)
    )
    model.set_trainable(backbone, None, batch_norm=False)
    classifier.compile(keras.optimizers.Adamax(1e-4), "sparse_categorical_crossentropy")
    if args.feeding == "pipeline":
        print(
            f"machine: {os.cpu_count()} cores; {len(images)} images of {args.data} at "
            f"{args.image_size} px, batch 32, every layer trainable, {args.epochs} epochs each"
        )

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started, self.cpu = time.perf_counter(), os.times()

        def on_epoch_end(self, epoch, logs=None):
            cpu = os.times()
            self.wall.append(time.perf_counter() - self.started)
            self.system.append(cpu.system - self.cpu.system)

    class AsPyDataset(keras.utils.PyDataset):
        def __init__(self, batches):
            super().__init__()
            self.batches = batches

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, index):
            return self.batches[index]

        def on_epoch_end(self):
            self.batches.on_epoch_end()

    batches = data.AugmentedBatches(images, labels, 32, None, seed=0)
    if args.feeding == "pipeline":
        name, fed = "batch_pipeline", feeding.batch_pipeline(batches, args.epochs)
    else:
        name, fed = "Keras PyDataset", AsPyDataset(batches)
    timer = Epochs()
    timer.wall, timer.system = [], []
    classifier.fit(
        fed,
        steps_per_epoch=len(batches),
        epochs=args.epochs,
        shuffle=False,
        callbacks=[timer],
        verbose=0,
    )
    epoch_s = float(np.mean(timer.wall[1:]))
    print(
        f"{name}: {epoch_s:.2f} s per epoch after the first (system CPU "
        f"{np.mean(timer.system[1:]):.2f} s per epoch; first epoch {timer.wall[0]:.1f} s)"
    )
    print(epoch_s)


if __name__ == "__main__":
    main()
