"""Training batches: shuffled batches of cached views, and the tf.data pipeline that feeds any
batch source to Keras."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import tensorflow as tf


class CachedViews:
    """Shuffled batches of cached features (or activations, see `TrainingViews`), a batch source
    for `batch_pipeline`. Each image goes through its cached augmented views in an order of its
    own, drawn from the run's seed, and uses every view once before any repeats: runs with
    different seeds train on different views of each image."""

    def __init__(self, views: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
        self.views, self.labels, self.batch_size = views, labels, batch_size
        self.rng = np.random.default_rng(seed)
        self.epoch = -1
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.views) // self.batch_size)

    def __getitem__(self, index: int):
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.views[chosen, self.view_of[chosen]], self.labels[chosen]

    def picks(self, epochs: int) -> np.ndarray:
        """The (image, view) of every training example of the next `epochs` epochs, in the
        order `batch_pipeline` gives them: shape (epochs, images, 2). Uses up these epochs'
        draws."""
        picks = []
        for _ in range(epochs):
            picks.append(np.stack([self.order, self.view_of[self.order]], axis=1))
            self.on_epoch_end()
        return np.stack(picks)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        count, pool = self.views.shape[:2]
        if self.epoch % pool == 0:
            self.view_order = self.rng.permuted(np.tile(np.arange(pool), (count, 1)), axis=1)
        self.order = self.rng.permutation(count)
        self.view_of = self.view_order[:, self.epoch % pool]


class BatchSource(Protocol):
    """Batches of training data by index within an epoch, and the step to the next epoch;
    `labels` holds the label of every training example, once."""

    labels: np.ndarray

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple: ...

    def on_epoch_end(self) -> None: ...


def batch_arrays(batch: tuple) -> list[np.ndarray]:
    """A batch's arrays in one list: its inputs (one array or a tuple of them), then its labels."""
    inputs, labels = batch
    return [*inputs, labels] if isinstance(inputs, tuple) else [inputs, labels]


def batch_pipeline(batches: BatchSource, epochs: int) -> tf.data.Dataset:
    """The batches of `epochs` epochs of `batches`, in order, as a tf.data pipeline that asks
    for each through `tf.numpy_function` (one batch fetched ahead).

    Not a Keras PyDataset: Keras feeds one through `tf.data.Dataset.from_generator`, whose
    kernel sets glibc's M_TRIM_THRESHOLD to 128 KB for the whole process (TensorFlow logs
    "Memory patch applied"). That also stops glibc adapting its mmap threshold, so every tensor
    above it is mapped and unmapped afresh: `benchmarks/feeding_speed.py` measures epochs about
    twice as long, most of the difference kernel time."""
    count = len(batches)
    examples = batch_arrays(batches[0])
    several = len(examples) > 2
    epoch = 0

    def batch(step: np.int64) -> list[np.ndarray]:
        nonlocal epoch
        while epoch < step // count:
            batches.on_epoch_end()
            epoch += 1
        return batch_arrays(batches[int(step % count)])

    def fetch(step: tf.Tensor):
        tensors = tf.numpy_function(batch, [step], [tf.as_dtype(x.dtype) for x in examples])
        for tensor, example in zip(tensors, examples, strict=True):
            tensor.set_shape((None, *example.shape[1:]))
        return (tuple(tensors[:-1]) if several else tensors[0]), tensors[-1]

    options = tf.data.Options()
    options.autotune.enabled = False
    steps = tf.data.Dataset.range(epochs * count)
    return steps.map(fetch).prefetch(1).with_options(options)
