"""The schema's model and training sections: the backbone and head, both training phases, the
feature cache and what a run records."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from study.schema.base import Strict
from study.vocabulary import CELLS, Runtime

Activation = Literal["elu", "relu", "tanh", "sigmoid", "selu", "gelu", "swish", "leaky_relu"]
Optimizer = Literal["adam", "adamax", "sgd", "rmsprop", "nadam", "adamw"]


class Model(Strict):
    weights: str = Field("imagenet", min_length=1, description="imagenet, none, or a file path")
    init_seed: int | None = Field(
        None,
        ge=0,
        description="pins one random backbone for every seed when weights is none; null: each "
        "seed's backbone draw (backbone_draws)",
    )
    backbone_draws: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="random backbones when weights is none and init_seed is null: null gives "
        "each seed its own (seed s on draw s); D makes seed s use draw s mod D, a NASNet "
        "initialised with init seed = draw",
    )
    activation: Activation = "elu"
    dropout: float = Field(0.2, ge=0, lt=1)
    head_width: int = Field(100, ge=1, le=8192)
    pooling: Literal["avg", "max"] = Field(
        "avg", description="how the backbone's last feature map becomes the head's input"
    )
    normalize_features: bool = Field(
        False, description="standardize the backbone's features with the training split's"
    )

    def backbone_draw(self, seed: int) -> int | None:
        """The random backbone that run seed `seed` uses (the seed itself, or seed mod
        backbone_draws); None when one backbone serves every seed (loaded weights, or a pinned
        init_seed)."""
        if self.weights != "none" or self.init_seed is not None:
            return None
        return seed if self.backbone_draws is None else seed % self.backbone_draws

    def backbone_init_seed(self, seed: int) -> int:
        """The seed that initialises the backbone of run seed `seed`: the pinned init_seed, or
        its draw (draw d is the backbone that `init_seed: d` pins)."""
        if self.init_seed is not None:
            return self.init_seed
        return self.backbone_draw(seed) or 0


class EarlyStopping(Strict):
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    patience: int | None = Field(None, ge=1, description="null: never stop early")
    restore_best: bool = True


class Phase(Strict):
    """A training phase; the defaults are phase 1's (backbone frozen, head trained)."""

    epochs: int = Field(20, ge=0, le=10_000, description="0 switches the phase off")
    batch_size: int = Field(32, ge=1, le=4096)
    optimizer: Optimizer = "adam"
    learning_rate: float = Field(1e-3, gt=0, le=10)
    decay_rate: float = Field(0.0, ge=0, lt=1, description="b in lr = a (1 - b)^epoch")
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="s: the loss's target is (1 - s) one-hot + s / classes"
    )
    class_weight: Literal["none", "balanced"] = Field(
        "none",
        description="balanced: each class weighs n_samples / (n_classes * its count) in the "
        "training loss, counted on the training split",
    )
    early_stopping: EarlyStopping = EarlyStopping()
    augment: bool = Field(
        True, description="train on augmented images (the paper); false: on the clean images"
    )
    execution: Literal["graph", "eager"] = Field(
        "graph",
        description="graph: TensorFlow traces the step once (about a minute for the whole "
        "network), then runs fast; eager: no tracing, slower steps; for runs of a few steps",
    )


class TrainableFrom(Strict):
    """The backbone's cells from `from` up (and the head) are fine-tuned; the rest stays frozen."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    first: str = Field(alias="from", description="the first trainable cell, e.g. normal_9")

    @field_validator("first")
    @classmethod
    def _known_cell(cls, value: str) -> str:
        if value not in CELLS:
            raise ValueError(
                "not a NASNet-Mobile cell; valid cells, first to last: " + ", ".join(CELLS)
            )
        return value


class FineTunePhase(Phase):
    """Phase 2: the backbone (or its top cells) trainable, exponential decay, early stopping."""

    epochs: int = Field(0, ge=0, le=10_000, description="0 switches the phase off")
    optimizer: Optimizer = "adamax"
    learning_rate: float = Field(1e-4, gt=0, le=10)
    decay_rate: float = Field(0.05, ge=0, lt=1, description="b in lr = a (1 - b)^epoch")
    early_stopping: EarlyStopping = EarlyStopping(patience=3)
    keep_frozen_if_better: bool = Field(
        True,
        description="keep phase 1's model unless a fine-tuning epoch beats it on the early-"
        "stopping monitor; false: always keep the fine-tuned model (the paper)",
    )
    trainable: TrainableFrom | Literal["all"] = Field(
        "all",
        description="all: the whole backbone (the paper); {from: CELL}: that cell and the ones "
        "above it, on cached activations of the cells below",
    )
    batch_norm: Literal["trainable", "frozen"] = Field(
        "trainable",
        description="trainable: the unfrozen cells' batch-norm scales and offsets train with "
        "them (the paper); frozen: they stay as loaded. Either way batch norm normalizes with "
        "its stored statistics (inference mode), which fine-tuning never changes",
    )

    @field_validator("trainable", mode="before")
    @classmethod
    def _all_or_cut(cls, value: Any) -> Any:
        if value == "all" or isinstance(value, dict | TrainableFrom):
            return value
        raise ValueError(
            f"give all or {{from: CELL}}, for example {{from: normal_9}} (got {value!r})"
        )

    @property
    def first_trainable(self) -> str | None:
        """The first trainable cell of the backbone; None: all of it."""
        return None if self.trainable == "all" else self.trainable.first


class Features(Strict):
    cache: bool = True
    views: int = Field(8, ge=1, le=256, description="augmented views per image in the cache")
    seed: int = Field(0, ge=0)
    runtime: Runtime = Field(
        "tensorflow",
        description="computes the cache's backbone features (study.model.runtimes); tensorflow "
        "when it fails",
    )


class Tracking(Strict):
    log_model: bool = False
    system_metrics: bool = Field(True, description="record CPU and memory use while a run trains")
