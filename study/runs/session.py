"""The prepared session: what every run of a study shares (the data, the first seed's backbone
and its caches), checked and built once before any run is written.

`prepare` does everything that can fail on bad input (data, weights, store) before anything is
written, then builds the feature cache of the study's first seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from study.caches import activations, features
from study.caches.inputs import CacheInputs
from study.config import StudyConfig
from study.data import dataset as data
from study.model.nasnet import Weights, resolve_weights
from study.tracking.store import Store


@dataclass
class Prepared:
    """What every run of a study shares, and the caches of the runs that differ from the
    prepared one in their backbone draw or pooling."""

    dataset: data.Dataset
    weights: Weights  # the first seed's backbone
    features: features.FeatureCache | None
    activations: activations.ActivationCache | None = None
    state_dir: Path | None = None
    progress: bool = True
    other_features: dict[str, features.FeatureCache] = field(default_factory=dict)  # by key
    other_activations: dict[str, activations.ActivationCache] = field(default_factory=dict)

    def weights_for(self, config: StudyConfig) -> Weights:
        """The backbone of this run: with random weights its seed's draw (or the pinned
        `model.init_seed`), else the prepared weights."""
        return replace(self.weights, init_seed=config.model.backbone_init_seed(config.seed))

    def features_for(self, config: StudyConfig) -> features.FeatureCache | None:
        """The feature cache of this run: the prepared one, or the cache of a run whose
        backbone draw or swept setting (`model.pooling`) changes what the cache holds, built
        on its first run and read from disk by the others (once per process)."""
        if self.features is None:
            return None
        self.activations_for(config)  # first: its pass over the images may fill this cache too
        weights = self.weights_for(config)
        inputs = CacheInputs.for_features(config)
        # The runtime is the one the prepared cache was computed on (it may have fallen back
        # to TensorFlow); it is not sweepable.
        key = replace(inputs, runtime=self.features.runtime).key(self.dataset, weights)
        if key == self.features.key:
            return self.features
        if key not in self.other_features:
            self.other_features[key] = features.load_or_build(
                self.dataset,
                weights,
                inputs,
                directory=Path(self.state_dir) / "features",
                progress=self.progress,
            )
        return self.other_features[key]

    def activations_for(self, config: StudyConfig) -> activations.ActivationCache | None:
        """The activation cache of this run's backbone, like `features_for`."""
        if self.activations is None:
            return None
        weights = self.weights_for(config)
        if weights == self.weights:
            return self.activations
        if weights.identity not in self.other_activations:
            self.other_activations[weights.identity] = activations.load_or_build(
                self.dataset,
                weights,
                CacheInputs.for_activations(config),
                directory=Path(self.state_dir) / "activations",
                progress=self.progress,
                alongside=None
                if self.features is None
                else _features_alongside(config, self.state_dir),
            )
        return self.other_activations[weights.identity]


def _features_alongside(config: StudyConfig, state_dir: Path) -> activations.FeaturesAlongside:
    """The feature cache of `config` for the activation cache's pass to fill as well."""
    folder = Path(state_dir) / "features"
    return activations.FeaturesAlongside(CacheInputs.for_features(config), folder)


def prepare(
    config: StudyConfig,
    store: Store,
    state_dir: Path,
    progress: bool = True,
    cache: bool = True,
    loaded: Callable[[data.Dataset], None] | None = None,
) -> Prepared:
    """Load and check every input, then build or load the feature cache and, for a fine-tuning
    cut, the activation cache of the first seed's backbone (unless `cache` is false: a process
    that runs no trial needs none). `loaded` is called with the data before the caches are
    built."""
    store.check()  # first: it takes a moment, where loading the data can take minutes
    first_seed = config.sweep_seeds[0]
    weights = resolve_weights(config.model.weights, config.model.backbone_init_seed(first_seed))
    dataset = data.load(
        config.data.root, config.data.image_size, config.data.skip_bad_files, config.data
    )
    if loaded:
        loaded(dataset)
    wants_features = cache and config.features.cache and config.frozen.epochs
    cut = config.fine_tune.first_trainable
    activation_cache = None
    if cache and config.features.cache and config.fine_tune.epochs and cut is not None:
        # first: one pass over the images can fill the feature cache as well
        activation_cache = activations.load_or_build(
            dataset,
            weights,
            CacheInputs.for_activations(config),
            directory=Path(state_dir) / "activations",
            progress=progress,
            alongside=_features_alongside(config, state_dir) if wants_features else None,
        )
    features_cache = None
    if wants_features:
        features_cache = features.load_or_build(
            dataset,
            weights,
            CacheInputs.for_features(config),
            directory=Path(state_dir) / "features",
            progress=progress,
        )
    return Prepared(dataset, weights, features_cache, activation_cache, state_dir, progress)
