"""What a cache's content depends on besides the data and the backbone, and the key it is
filed under.

The feature cache (study.caches.features) and the activation cache (study.caches.activations)
hold what the backbone makes of every image, clean and in `views` augmented views; a study
config fixes the rest of their inputs, and `CacheInputs.for_features` and
`CacheInputs.for_activations` read them from it. `key` digests these with the data and the
backbone: the same dictionary, hashed the same way, as before the inputs were one value, so
that the caches already on disk are still found.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass

import keras

from study.config import Augmentation, StudyConfig
from study.data.dataset import Dataset
from study.model import runtimes
from study.model.nasnet import Weights

FORMAT_VERSION = 1


@dataclass(frozen=True)
class CacheInputs:
    """The settings a cache's content depends on: `cut` (the first cell above a fine-tuning
    cut) for the activation cache, which holds no pooled features; `runtime` and `pooling` for
    the feature cache (the activation cache is computed by TensorFlow, below any pooling)."""

    image_size: int
    augmentation: Augmentation
    views: int
    seed: int
    runtime: str = "tensorflow"
    pooling: str = "avg"
    cut: str | None = None

    @classmethod
    def for_features(cls, config: StudyConfig) -> CacheInputs:
        """The feature cache's inputs that a study config fixes."""
        return cls(
            image_size=config.data.image_size,
            augmentation=config.data.augmentation,
            views=config.features.views if config.frozen.augment else 0,
            seed=config.features.seed,
            runtime=config.features.runtime,
            pooling=config.model.pooling,
        )

    @classmethod
    def for_activations(cls, config: StudyConfig) -> CacheInputs:
        """The activation cache's inputs that a study config fixes: its cut is the config's
        first trainable cell."""
        return cls(
            image_size=config.data.image_size,
            augmentation=config.data.augmentation,
            views=config.features.views if config.fine_tune.augment else 0,
            seed=config.features.seed,
            cut=config.fine_tune.first_trainable,
        )

    def key(self, dataset: Dataset, weights: Weights) -> str:
        """A digest of everything the cached content depends on."""
        inputs = {
            "format": FORMAT_VERSION,
            "data": dataset.fingerprint,
            "files": len(dataset),
            "weights": weights.identity,
            "image_size": self.image_size,
            "augmentation": self.augmentation.model_dump(),
            "views": self.views,
            "seed": self.seed,
            "keras": keras.__version__,
            "runtime": self.runtime,
            "runtime_version": _version(self.runtime),
        }
        if self.cut is not None:
            inputs["cut"] = self.cut
        if self.pooling != "avg":  # caches from before max pooling are average-pooled
            inputs["pooling"] = self.pooling
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]


def _version(runtime: str) -> str:
    """The version of the package that runs `runtime` (Keras's is in the key already)."""
    try:
        return importlib.metadata.version(runtimes.package(runtime))
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
