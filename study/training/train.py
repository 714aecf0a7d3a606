"""Two-phase training and evaluation.

Phase 1 ("frozen") trains the head with the backbone frozen: on cached features when a feature
cache is given, else end to end through the backbone. Phase 2 ("fine_tune") puts the same head
on the backbone, unfreezes it (all of it, or the cells from `fine_tune.trainable` up) and trains
with exponential decay and early stopping: end to end, or the cells above the cut on cached
activations when an activation cache is given. After each phase the restored model is
evaluated on every split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from study.caches.activations import ActivationCache, TrainingViews
from study.caches.features import FeatureCache
from study.config import StudyConfig
from study.data.dataset import AugmentedBatches, Dataset, to_model_input
from study.model.nasnet import (
    Weights,
    adapt_head,
    build_backbone,
    build_classifier,
    build_head,
    parameter_counts,
    set_trainable,
    split_backbone,
)
from study.schema.data import Data
from study.schema.training import Phase
from study.training import phases
from study.training.evaluation import PREDICT_BATCH, Evaluation, evaluate_splits
from study.training.feeding import BatchSource, CachedViews
from study.training.phases import PhaseResult

STAGES = ("frozen", "fine_tune")


@dataclass
class TrainingResult:
    class_names: list[str]
    phases: list[PhaseResult] = field(default_factory=list)
    evaluations: dict[str, dict[str, Evaluation]] = field(default_factory=dict)  # stage -> split
    parameters: dict[str, int] = field(default_factory=dict)
    head: keras.Model | None = None
    model: keras.Model | None = None  # the full model, when one was built
    kept: str | None = None  # the stage whose model is the final one

    @property
    def final_stage(self) -> str:
        return self.kept or self.phases[-1].name


@dataclass
class InputPath:
    """What a phase trains on one input path (images, cached features or cached activations):
    the model it trains, that model's inputs for images by index, and its training batches."""

    trained: keras.Model
    inputs: Callable[[np.ndarray], np.ndarray | tuple]
    batches: BatchSource


def train(
    config: StudyConfig,
    dataset: Dataset,
    split: dict[str, np.ndarray],
    weights: Weights,
    features: FeatureCache | None = None,
    verbose: int = 0,
    time_budget_s: float | None = None,
    activations: ActivationCache | None = None,
) -> TrainingResult:
    """Run the configured phases and evaluate after each; raises TrainingFailed. `activations`
    (for a fine-tuning cut) lets phase 2 skip the frozen cells below the cut."""
    deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
    labels = dataset.labels
    head = configured_head(config, len(dataset.class_names))
    result = TrainingResult(class_names=dataset.class_names, head=head)
    needs_backbone = features is None or config.fine_tune.epochs > 0
    backbone = (
        build_backbone(config.data.image_size, weights, config.model.pooling)
        if needs_backbone
        else None
    )
    model = build_classifier(backbone, head) if backbone is not None else None

    if config.model.normalize_features:  # on the training split's clean features
        train = split["train"]
        adapt_head(
            head,
            features.clean[train]
            if features is not None
            else backbone.predict(
                _clean_images(dataset)(train), batch_size=PREDICT_BATCH, verbose=0
            ),
        )

    if config.frozen.epochs:
        if features is not None:
            path = _on_features(head, features, config.frozen, labels, split, config.seed)
        else:
            backbone.trainable = False
            path = _on_images(model, config.frozen, config.data, dataset, split, config.seed)
        validation = (path.inputs(split["val"]), labels[split["val"]])
        # On cached features a step costs next to nothing: `frozen_loop` runs many epochs per
        # TensorFlow call, sparing `fit`'s per-step and per-epoch overhead.
        if features is not None and config.frozen.execution == "graph":
            fitter = phases.fit_cached
        else:
            fitter = phases.fit
        phase = fitter(
            "frozen", path.trained, path.batches, validation, config.frozen, deadline, verbose
        )
        result.phases.append(phase)
        result.evaluations["frozen"] = evaluate_splits(
            path.trained, path.inputs, split, dataset, whole=features is not None
        )

    first_trainable = config.fine_tune.first_trainable
    batch_norm = config.fine_tune.batch_norm == "trainable"
    if config.fine_tune.epochs:
        set_trainable(backbone, first_trainable, batch_norm)
        before = model.get_weights()
        if activations is not None:
            path = _on_activations(
                backbone,
                first_trainable,
                head,
                activations,
                config.fine_tune,
                labels,
                split,
                config.seed + 1,
            )
        else:
            path = _on_images(model, config.fine_tune, config.data, dataset, split, config.seed + 1)
        validation = (path.inputs(split["val"]), labels[split["val"]])
        phase = phases.fit(
            "fine_tune", path.trained, path.batches, validation, config.fine_tune, deadline, verbose
        )
        result.phases.append(phase)
        # On cached activations, scored through the trained cells and head: what the full model
        # gives on the images, up to float16 rounding, without the frozen cells' cost.
        result.evaluations["fine_tune"] = evaluate_splits(path.trained, path.inputs, split, dataset)
        if config.fine_tune.keep_frozen_if_better and config.frozen.epochs and not phase.improved:
            model.set_weights(before)  # fine-tuning made it no better on validation
            result.kept = "frozen"

    if model is None:
        head_total, head_trainable = parameter_counts(head)
        result.parameters = {
            "total": features.backbone_parameters + head_total,
            "trainable_frozen": head_trainable,
        }
    else:
        backbone.trainable = False
        total, trainable_frozen = parameter_counts(model)
        set_trainable(backbone, first_trainable, batch_norm)
        result.parameters = {
            "total": total,
            "trainable_frozen": trainable_frozen,
            "trainable_fine_tune": parameter_counts(model)[1],
        }
        result.model = model
    return result


def configured_head(config: StudyConfig, n_classes: int) -> keras.Model:
    """The head `config.model` describes, initialised from the run's seed."""
    return build_head(
        n_classes,
        config.model.activation,
        config.model.dropout,
        config.model.head_width,
        config.seed,
        normalize=config.model.normalize_features,
    )


def _clean_images(dataset: Dataset) -> Callable[[np.ndarray], np.ndarray]:
    return lambda indices: to_model_input(dataset.images[indices])


def _on_images(
    model: keras.Model,
    phase: Phase,
    data: Data,
    dataset: Dataset,
    split: dict[str, np.ndarray],
    seed: int,
) -> InputPath:
    """End to end through the backbone: augmented training images (clean ones when the phase
    does not augment), clean images to score."""
    train = split["train"]
    augmentation = data.augmentation if phase.augment else None
    batches = AugmentedBatches(
        dataset.images[train], dataset.labels[train], phase.batch_size, augmentation, seed
    )
    return InputPath(model, _clean_images(dataset), batches)


def _on_features(
    head: keras.Model,
    features: FeatureCache,
    phase: Phase,
    labels: np.ndarray,
    split: dict[str, np.ndarray],
    seed: int,
) -> InputPath:
    """The head alone, on the backbone's cached features: the augmented views (the clean one
    when the phase does not augment) to train, the clean features to score."""
    train = split["train"]
    views = features.views[train] if phase.augment else features.clean[train, None]
    batches = CachedViews(views, labels[train], phase.batch_size, seed)
    return InputPath(head, features.clean.__getitem__, batches)


def _on_activations(
    backbone: keras.Model,
    first_trainable: str,
    head: keras.Model,
    activations: ActivationCache,
    phase: Phase,
    labels: np.ndarray,
    split: dict[str, np.ndarray],
    seed: int,
) -> InputPath:
    """The cells above the fine-tuning cut and the head, on the cut's cached activations: a
    model made of the backbone's own layers, so training it trains the full model."""
    _, top = split_backbone(backbone, first_trainable)
    cut = [keras.Input(tensor.shape[1:]) for tensor in top.inputs]
    trained = keras.Model(cut, head(top(cut, training=False)), name="above_cut_and_head")
    train = split["train"]
    views = TrainingViews(activations, train, phase.augment)
    batches = CachedViews(views, labels[train], phase.batch_size, seed)
    return InputPath(trained, activations.inputs, batches)
