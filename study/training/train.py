"""Two-phase training and evaluation.

Phase 1 ("frozen") trains the head with the backbone frozen: on cached features when a feature
cache is given, else end to end through the backbone. Phase 2 ("fine_tune") puts the same head
on the backbone, unfreezes it (all of it, or the cells from `fine_tune.trainable` up) and trains
with exponential decay and early stopping: end to end, or the cells above the cut on cached
activations when an activation cache is given. After each phase the restored model is
evaluated on every split.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.utils.class_weight import compute_class_weight

from study.caches.activations import ActivationCache, TrainingViews
from study.caches.features import FeatureCache
from study.config import StudyConfig
from study.data.dataset import AugmentedBatches, Dataset, to_model_input
from study.errors import TrainingFailed
from study.model import keras_scores
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
from study.objective import Objective
from study.schema.training import Phase
from study.training import frozen_loop

STAGES = ("frozen", "fine_tune")
SPLIT_METRICS = (
    "accuracy",
    "loss",
    "error_rate",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_keras",
    "recall_keras",
    "auc_ovr_macro",
    "auc_keras",
)
_PREDICT_BATCH = 64


@dataclass
class PhaseResult:
    name: str
    history: dict[str, list[float]]  # per epoch: loss, accuracy, val_loss, val_accuracy, lr
    best_epoch: int  # 0-based epoch whose weights were kept
    wall_time_s: float
    initial: dict[str, float]  # val_loss and val_accuracy before the phase's first epoch
    monitor: str  # the early-stopping monitor, which chose best_epoch

    @property
    def improved(self) -> bool:
        """Whether the kept epoch beats the model the phase started from on its monitor."""
        best, start = self.history[self.monitor][self.best_epoch], self.initial[self.monitor]
        return Objective.named(self.monitor).better(best, start)

    @property
    def epochs_run(self) -> int:
        return len(self.history["loss"])


@dataclass
class Evaluation:
    """One split scored by one model."""

    metrics: dict[str, float]
    confusion: np.ndarray  # rows: true class, columns: predicted class
    per_class: dict[str, dict[str, float]]  # class -> precision, recall, f1, support
    predicted: np.ndarray  # the predicted class index of each image, in the split's order


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
    head = build_head(
        len(dataset.class_names),
        config.model.activation,
        config.model.dropout,
        config.model.head_width,
        config.seed,
        normalize=config.model.normalize_features,
    )
    result = TrainingResult(class_names=dataset.class_names, head=head)
    needs_backbone = features is None or config.fine_tune.epochs > 0
    backbone = (
        build_backbone(config.data.image_size, weights, config.model.pooling)
        if needs_backbone
        else None
    )
    model = build_classifier(backbone, head) if backbone is not None else None

    def image_batches(phase: Phase, seed: int) -> AugmentedBatches:
        train = split["train"]
        augmentation = config.data.augmentation if phase.augment else None
        return AugmentedBatches(
            dataset.images[train], labels[train], phase.batch_size, augmentation, seed
        )

    def clean_images(indices: np.ndarray) -> np.ndarray:
        return to_model_input(dataset.images[indices])

    if config.model.normalize_features:  # on the training split's clean features
        train = split["train"]
        adapt_head(
            head,
            features.clean[train]
            if features is not None
            else backbone.predict(clean_images(train), batch_size=_PREDICT_BATCH, verbose=0),
        )

    if config.frozen.epochs:
        if features is not None:
            trained, inputs = head, features.clean.__getitem__
            train = split["train"]
            views = features.views[train] if config.frozen.augment else features.clean[train, None]
            batches = CachedViews(views, labels[train], config.frozen.batch_size, config.seed)
        else:
            trained, inputs = model, clean_images
            backbone.trainable = False
            batches = image_batches(config.frozen, config.seed)
        validation = (inputs(split["val"]), labels[split["val"]])
        # On cached features a step costs next to nothing: `frozen_loop` runs many epochs per
        # TensorFlow call, sparing `fit`'s per-step and per-epoch overhead.
        if features is not None and config.frozen.execution == "graph":
            fitter = _fit_cached
        else:
            fitter = _fit
        phase = fitter("frozen", trained, batches, validation, config.frozen, deadline, verbose)
        result.phases.append(phase)
        result.evaluations["frozen"] = _evaluate_splits(
            trained, inputs, split, dataset, whole=features is not None
        )

    first_trainable = config.fine_tune.first_trainable
    batch_norm = config.fine_tune.batch_norm == "trainable"
    if config.fine_tune.epochs:
        set_trainable(backbone, first_trainable, batch_norm)
        before = model.get_weights()
        if activations is not None:
            # The cells above the cut and the head, on the cut's cached activations: a model
            # made of the backbone's own layers, so training it trains `model`.
            _, top = split_backbone(backbone, first_trainable)
            cut = [keras.Input(tensor.shape[1:]) for tensor in top.inputs]
            trained = keras.Model(cut, head(top(cut, training=False)), name="above_cut_and_head")
            train = split["train"]
            views = TrainingViews(activations, train, config.fine_tune.augment)
            batches = CachedViews(
                views, labels[train], config.fine_tune.batch_size, config.seed + 1
            )
            validation = (activations.inputs(split["val"]), labels[split["val"]])
        else:
            trained = model
            validation = (clean_images(split["val"]), labels[split["val"]])
            batches = image_batches(config.fine_tune, config.seed + 1)
        phase = _fit("fine_tune", trained, batches, validation, config.fine_tune, deadline, verbose)
        result.phases.append(phase)
        # On cached activations, scored through the trained cells and head: what the full model
        # gives on the images, up to float16 rounding, without the frozen cells' cost.
        inputs = activations.inputs if activations is not None else clean_images
        result.evaluations["fine_tune"] = _evaluate_splits(trained, inputs, split, dataset)
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


def _compile(model: keras.Model, phase: Phase, steps_per_epoch: int, loss: keras.losses.Loss):
    """Compile `model` with the phase's optimizer (its learning rate decaying per epoch of
    `steps_per_epoch` steps) and `loss`, and build the optimizer's variables."""
    learning_rate = phase.learning_rate
    if phase.decay_rate > 0:
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            phase.learning_rate,
            decay_steps=steps_per_epoch,
            decay_rate=1 - phase.decay_rate,
            staircase=True,
        )
    model.compile(
        # Keras knows its optimizers by the lower-case names that config.Optimizer lists
        optimizer=keras.optimizers.get(
            {"class_name": phase.optimizer, "config": {"learning_rate": learning_rate}}
        ),
        loss=loss,
        metrics=["accuracy"],
        run_eagerly=phase.execution == "eager",
    )
    # Variables created while TensorFlow traces the training step make it trace the step a
    # second time, which for the whole network costs about a minute on a CPU: create the
    # optimizer's and the metrics' variables first.
    model.optimizer.build(model.trainable_variables)


def _fit(
    name: str,
    model: keras.Model,
    batches: BatchSource,
    validation: tuple[np.ndarray, np.ndarray],
    phase: Phase,
    deadline: float | None,
    verbose: int,
) -> PhaseResult:
    """Train one phase with `model.fit`."""
    _compile(model, phase, len(batches), phase_loss(phase))
    initial = model.evaluate(*validation, batch_size=phase.batch_size, verbose=0, return_dict=True)
    stopping = phase.early_stopping
    early_stop = keras.callbacks.EarlyStopping(
        monitor=stopping.monitor,
        patience=stopping.patience or phase.epochs,
        restore_best_weights=stopping.restore_best,
    )
    watch = _Watch(name, deadline)
    started = time.perf_counter()
    fit = model.fit(
        batch_pipeline(batches, phase.epochs),
        steps_per_epoch=len(batches),
        shuffle=False,  # the pipeline holds the epochs' own orders
        validation_data=validation,
        validation_batch_size=phase.batch_size,
        epochs=phase.epochs,
        class_weight=phase_class_weight(phase, batches.labels),
        callbacks=[watch, early_stop],
        verbose=verbose,
    )
    history = {key: [float(v) for v in values] for key, values in fit.history.items()}
    history["learning_rate"] = watch.learning_rates[: len(history["loss"])]
    return _phase_result(name, history, phase, started, initial)


def _fit_cached(
    name: str,
    head: keras.Model,
    batches: CachedViews,
    validation: tuple[np.ndarray, np.ndarray],
    phase: Phase,
    deadline: float | None,
    verbose: int,
) -> PhaseResult:
    """Train the head on cached features with `frozen_loop`: `fit`'s updates and scores,
    several epochs per TensorFlow call."""
    loss = phase_loss(phase)
    _compile(head, phase, len(batches), loss)
    initial = EagerValidation(*validation, loss).scores(head)
    class_weight = phase_class_weight(phase, batches.labels)
    started = time.perf_counter()
    history = frozen_loop.fit(
        head,
        loss,
        batches,
        validation,
        phase.epochs,
        phase.early_stopping,
        name,
        deadline,
        sample_weights=None
        if class_weight is None
        else np.array([class_weight[int(label)] for label in batches.labels], np.float32),
        verbose=verbose,
    )
    return _phase_result(name, history, phase, started, initial)


def _phase_result(
    name: str,
    history: dict[str, list[float]],
    phase: Phase,
    started: float,
    initial: dict[str, float],
) -> PhaseResult:
    """The phase's record: the kept epoch is the best on the monitor when the best weights
    were restored, else the last."""
    stopping = phase.early_stopping
    monitored = np.array(history[stopping.monitor])
    maximize = Objective.named(stopping.monitor).direction == "max"
    best = np.nanargmax(monitored) if maximize else np.nanargmin(monitored)
    return PhaseResult(
        name=name,
        history=history,
        best_epoch=int(best) if stopping.restore_best else len(monitored) - 1,
        wall_time_s=time.perf_counter() - started,
        initial={f"val_{key}": float(value) for key, value in initial.items()},
        monitor=stopping.monitor,
    )


def phase_loss(phase: Phase) -> keras.losses.Loss:
    """The loss a phase trains on, on integer labels: sparse categorical cross-entropy, or, with
    label smoothing (which Keras's sparse loss does not take), `SmoothedSparseCrossentropy`."""
    if phase.label_smoothing == 0:
        return keras.losses.SparseCategoricalCrossentropy()
    return SmoothedSparseCrossentropy(phase.label_smoothing)


def phase_class_weight(phase: Phase, labels: np.ndarray) -> dict[int, float] | None:
    """Keras's `class_weight` for a phase that trains on `labels`: none, or for "balanced"
    n_samples / (n_classes * count) per class present (scikit-learn's)."""
    if phase.class_weight == "none":
        return None
    classes = np.unique(labels)
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(label): float(weight) for label, weight in zip(classes, weights, strict=True)}


class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Keras's categorical cross-entropy with `label_smoothing` s on integer labels: the target
    of a label is (1 - s) times its one-hot vector plus s / classes."""

    def __init__(
        self, label_smoothing: float, name: str = "smoothed_sparse_crossentropy", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, labels, probabilities):
        labels = keras.ops.reshape(keras.ops.cast(labels, "int32"), (-1,))
        one_hot = keras.ops.one_hot(labels, keras.ops.shape(probabilities)[-1])
        return keras.losses.categorical_crossentropy(
            one_hot, probabilities, label_smoothing=self.label_smoothing
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


class EagerValidation:
    """Scores a split with one eager call of the model, as `model.evaluate` would score it: for
    a model whose call is a few matrix products (the head on cached features)."""

    def __init__(
        self, inputs: np.ndarray, labels: np.ndarray, loss: keras.losses.Loss | None = None
    ):
        self.inputs, self.labels = inputs, labels
        self.loss = loss or keras.losses.SparseCategoricalCrossentropy()

    def scores(self, model: keras.Model) -> dict[str, float]:
        """`loss` and `accuracy`."""
        scores = frozen_loop.validation_scores(model, self.loss, self.inputs, self.labels)
        return {key: float(value) for key, value in scores.items()}


class _Watch(keras.callbacks.Callback):
    """Records the learning rate and fails the phase on a NaN loss or a spent time budget."""

    def __init__(self, phase: str, deadline: float | None):
        super().__init__()
        self.phase, self.deadline = phase, deadline
        self.learning_rates: list[float] = []

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.learning_rates.append(
            float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        )

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingFailed(f"{self.phase} phase: loss became {float(loss)} at batch {batch}")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TrainingFailed(f"{self.phase} phase: the trial's time budget ran out")


def _evaluate_splits(model, inputs, split, dataset, whole: bool = False) -> dict[str, Evaluation]:
    """Score every split; `whole` predicts a split in one eager call (the head on cached
    features), which spares tracing Keras's predict function for a few matrix products."""
    scores = {}
    for name, indices in split.items():
        if len(indices) == 0:
            continue
        if whole:
            probabilities = keras.ops.convert_to_numpy(model(inputs(indices), training=False))
        else:
            probabilities = model.predict(inputs(indices), batch_size=_PREDICT_BATCH, verbose=0)
        scores[name] = evaluate(probabilities, dataset.labels[indices], dataset.class_names)
    return scores


def evaluate(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]) -> Evaluation:
    """Score predicted class probabilities against true labels.

    `*_macro` are scikit-learn's class-averaged forms; `precision_keras`, `recall_keras` and
    `auc_keras` are Keras's metrics on one-hot targets (threshold 0.5), the form the paper reports,
    computed with numpy (`keras_scores`).
    """
    n_classes = len(class_names)
    classes = np.arange(n_classes)
    predicted = probabilities.argmax(axis=1)
    one_hot = np.eye(n_classes, dtype=np.float32)[labels]
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    accuracy = accuracy_score(labels, predicted)
    metrics = {
        "accuracy": accuracy,
        "loss": log_loss(labels, np.clip(probabilities, 1e-7, 1.0), labels=classes),
        "error_rate": 1.0 - accuracy,
        "precision_macro": precision.mean(),
        "recall_macro": recall.mean(),
        "f1_macro": f1.mean(),
        "precision_keras": keras_scores.precision(one_hot, probabilities),
        "recall_keras": keras_scores.recall(one_hot, probabilities),
        "auc_keras": keras_scores.auc(one_hot, probabilities),
    }
    if np.all(support > 0):
        # With two classes scikit-learn scores the second class alone; its one-vs-rest AUC
        # equals the first's (the columns sum to 1), so that is the macro average too.
        scores = probabilities[:, 1] if n_classes == 2 else probabilities
        metrics["auc_ovr_macro"] = roc_auc_score(
            labels, scores, multi_class="ovr", average="macro", labels=classes
        )
    per_class = {
        name: {"precision": p, "recall": r, "f1": f, "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)
    }
    return Evaluation(
        metrics={key: float(value) for key, value in metrics.items()},
        confusion=confusion_matrix(labels, predicted, labels=classes),
        per_class=per_class,
        predicted=predicted,
    )
