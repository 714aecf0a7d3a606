"""One training phase: compile with the phase's optimizer, loss and learning-rate decay, fit
(with `model.fit`, or with `frozen_loop` for the head on cached features), and the record of
the epochs it ran and the one it kept."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from study.errors import TrainingFailed
from study.objective import Objective
from study.schema.training import Phase
from study.training import frozen_loop
from study.training.feeding import BatchSource, CachedViews, batch_pipeline


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


def fit(
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


def fit_cached(
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
