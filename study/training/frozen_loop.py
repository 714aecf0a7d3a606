"""The frozen phase on cached features, trained a block of epochs per TensorFlow call.

On cached features the head's step is a few small matrix products, so `model.fit` spends most
of a trial on its own per-step and per-epoch Python (dispatch, callbacks, the validation
loop). Here one traced function runs `EPOCHS_PER_CALL` epochs with the batch loop inside, scores
the validation split inside the graph after each epoch, and keeps the early-stopping state
(best score, wait, the best epoch's weights) in variables, with Keras's `EarlyStopping`
semantics: the first epoch always counts as an improvement, later ones only when strictly
better, training stops once `patience` epochs in a row brought none, and with `restore_best`
the best epoch's weights are put back at the end. The updates are `fit`'s: the model's own
call, loss object, optimizer and epoch means, on the batches `fit` would get from the same
`EpochOrders`.

At batch 32 a step's time is mostly the number of ops TensorFlow dispatches and the passes over
the weights and the optimizer's state. A plain Adam or Adamax (`uses_fused_update`: no amsgrad,
clipping, weight decay, moving average, gradient accumulation, loss scale or constraints) is
applied with TensorFlow's fused `ResourceApplyAdam` / `ResourceApplyAdaMax` kernel on moments
the loop keeps (`FusedUpdate`), one op per variable instead of Keras's dozen. Adam's
arithmetic is Keras's `Adam.update_step`'s (m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2),
w -= m a / (sqrt(v) + eps), a = lr sqrt(1 - b2^t) / (1 - b1^t)) bit for bit, with one
difference: the kernel takes 1 - b in float32 from the float32 beta, Keras rounds 1 - b computed
from the Python float, so 1 - 0.999 differs by 1.3e-5 relative (as if beta_2 were 0.99900001).
Adamax's is Keras's (m += (g - m)(1 - b1), u = max(b2 u, |g|)) but for the weight update, which
the kernel computes as lr / (1 - b1^t) * (m / (u + eps)) where Keras divides lr m by
(1 - b1^t)(u + eps): the same up to float32 rounding. Any other optimizer goes through its own
`apply_gradients`.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from study.errors import TrainingFailed
from study.objective import Objective
from study.schema.training import EarlyStopping

# Epochs per TensorFlow call: the time budget is checked between calls, so it can overrun by
# this many epochs of the head (a fraction of a second on cached features).
EPOCHS_PER_CALL = 10
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


class EpochOrders(Protocol):
    """Cached views and the batch order of each epoch (`feeding.CachedViews`)."""

    views: np.ndarray  # (images, views, features)
    labels: np.ndarray  # (images,)
    batch_size: int

    def picks(self, epochs: int) -> np.ndarray: ...


def validation_scores(
    model: keras.Model, loss: keras.losses.Loss, inputs: tf.Tensor, labels: tf.Tensor
) -> dict[str, tf.Tensor]:
    """`loss` and `accuracy` of the whole split in one call of the model, as `model.evaluate`
    gives them; eager or inside a graph."""
    probabilities = model(inputs, training=False)
    right = keras.metrics.sparse_categorical_accuracy(labels, probabilities)
    return {"loss": loss(labels, probabilities), "accuracy": keras.ops.mean(right)}


def fit(
    model: keras.Model,
    loss: keras.losses.Loss,
    orders: EpochOrders,
    validation: tuple[np.ndarray, np.ndarray],
    epochs: int,
    stopping: EarlyStopping,
    phase: str,
    deadline: float | None = None,
    sample_weights: np.ndarray | None = None,
    verbose: int = 0,
) -> dict[str, list[float]]:
    """Train `model` (compiled: its optimizer is used and must be built) on `orders` for up to
    `epochs` epochs; returns the history, one value per epoch run for each of `CURVES`.
    `sample_weights` (one per image of `orders`) weigh the training loss as `fit`'s do (not
    the accuracy: a compiled metric, not a weighted one). Raises TrainingFailed on a
    non-finite training loss or a spent `deadline` (`time.monotonic()`), checked after each
    call."""
    loop = _Loop(model, loss, orders, validation, epochs, stopping, sample_weights)
    done = 0
    while done < epochs and not loop.stopped.numpy():
        count = min(EPOCHS_PER_CALL, epochs - done)
        loop.run(tf.constant(orders.picks(count), dtype=tf.int32))
        epochs_run = int(loop.epoch.numpy())
        rows = loop.history[:epochs_run].numpy()
        if verbose:
            for epoch in range(done, epochs_run):
                scores = ", ".join(f"{k} {v:.4f}" for k, v in zip(CURVES, rows[epoch], strict=True))
                print(f"{phase} epoch {epoch + 1}/{epochs}: {scores}")
        done = epochs_run
        last_loss = float(rows[-1, 0])
        if not math.isfinite(last_loss):
            raise TrainingFailed(f"{phase} phase: loss became {last_loss} in epoch {done}")
        if deadline is not None and time.monotonic() > deadline:
            raise TrainingFailed(f"{phase} phase: the trial's time budget ran out")
    if stopping.restore_best and done:
        for variable, best in zip(model.weights, loop.best_weights, strict=True):
            variable.assign(best)
    rows = loop.history[:done].numpy().astype(float)
    return {key: rows[:, column].tolist() for column, key in enumerate(CURVES)}


FUSED = (keras.optimizers.Adam, keras.optimizers.Adamax)  # the optimizers with a fused update


def uses_fused_update(optimizer: keras.optimizers.Optimizer, variables: list) -> bool:
    """Whether `optimizer`'s update is plain Adam's or Adamax's on float32 variables without
    constraints: what `_Loop` applies with a fused kernel (`FusedUpdate`)."""
    return (
        type(optimizer) in FUSED
        and not getattr(optimizer, "amsgrad", False)
        and optimizer.clipnorm is None
        and optimizer.clipvalue is None
        and optimizer.global_clipnorm is None
        and not optimizer.weight_decay
        and not optimizer.use_ema
        and not optimizer.gradient_accumulation_steps
        and optimizer.loss_scale_factor is None
        and all(v.dtype == "float32" and v.constraint is None for v in variables)
    )


class FusedUpdate:
    """`optimizer.apply_gradients` for an Adam or Adamax that `uses_fused_update`, one fused
    op per variable, on first and second moments of its own (zero at the start, as Keras's
    are), so it needs none of the optimizer's private state; the optimizer's step count
    (`iterations`) advances as Keras's own update would advance it."""

    def __init__(self, optimizer: keras.optimizers.Optimizer, variables: list):
        self.optimizer, self.variables = optimizer, variables
        self.adamax = type(optimizer) is keras.optimizers.Adamax
        self.moments = [
            tuple(tf.Variable(tf.zeros(v.shape), trainable=False) for _ in "mv") for v in variables
        ]

    def apply(self, gradients: list[tf.Tensor]) -> None:
        optimizer = self.optimizer
        step = tf.cast(optimizer.iterations + 1, tf.float32)
        beta_1 = tf.constant(optimizer.beta_1, tf.float32)
        beta_2 = tf.constant(optimizer.beta_2, tf.float32)
        beta_1_power = tf.pow(beta_1, step)
        beta_2_power = None if self.adamax else tf.pow(beta_2, step)
        learning_rate = tf.cast(optimizer.learning_rate, tf.float32)
        epsilon = tf.constant(optimizer.epsilon, tf.float32)
        for gradient, variable, (first, second) in zip(
            gradients, self.variables, self.moments, strict=True
        ):
            common = {
                "var": variable.value.handle,
                "m": first.handle,
                "v": second.handle,
                "beta1_power": beta_1_power,
                "lr": learning_rate,
                "beta1": beta_1,
                "beta2": beta_2,
                "epsilon": epsilon,
                "grad": tf.cast(gradient, tf.float32),
            }
            if self.adamax:
                tf.raw_ops.ResourceApplyAdaMax(**common)
            else:
                tf.raw_ops.ResourceApplyAdam(beta2_power=beta_2_power, **common)
        optimizer.iterations.assign_add(1)


class _Loop:
    """The traced training loop and its state: the history and the early-stopping variables."""

    def __init__(
        self,
        model: keras.Model,
        loss: keras.losses.Loss,
        orders: EpochOrders,
        validation: tuple[np.ndarray, np.ndarray],
        epochs: int,
        stopping: EarlyStopping,
        sample_weights: np.ndarray | None,
    ):
        self.model, self.loss, self.optimizer = model, loss, model.optimizer
        self.views = tf.constant(orders.views)
        self.labels = tf.constant(orders.labels)
        self.weights = None if sample_weights is None else tf.constant(sample_weights, tf.float32)
        self.batch_size = orders.batch_size
        self.val_inputs, self.val_labels = (tf.constant(part) for part in validation)
        self.objective = Objective.named(stopping.monitor)
        self.monitor = CURVES.index(stopping.monitor)
        self.patience = stopping.patience or epochs  # no patience: never stops early
        self.restore_best = stopping.restore_best
        self.variables = model.trainable_variables
        self.fused = (
            FusedUpdate(self.optimizer, self.variables)
            if uses_fused_update(self.optimizer, self.variables)
            else None
        )

        self.history = tf.Variable(tf.zeros((epochs, len(CURVES))), trainable=False)
        self.epoch = tf.Variable(0, trainable=False)
        self.wait = tf.Variable(0, trainable=False)
        self.best = tf.Variable(0.0, trainable=False)
        self.stopped = tf.Variable(False, trainable=False)
        self.best_weights = [tf.Variable(w, trainable=False) for w in model.weights]
        self.run = tf.function(
            self._epochs,
            input_signature=[tf.TensorSpec((None, len(orders.views), 2), tf.int32)],
        )

    def _epochs(self, picks: tf.Tensor) -> None:
        """Up to len(picks) epochs, each in the order of its picks ((image, view) per row)."""
        for epoch_picks in picks:
            if self.stopped:
                break
            self._epoch(epoch_picks)

    def _epoch(self, picks: tf.Tensor) -> None:
        learning_rate = tf.cast(self.optimizer.learning_rate, tf.float32)
        count = tf.shape(picks)[0]
        loss_sum, right_sum = tf.constant(0.0), tf.constant(0.0)
        for start in tf.range(0, count, self.batch_size):
            chosen = picks[start : start + self.batch_size]
            inputs = tf.gather_nd(self.views, chosen)
            labels = tf.gather(self.labels, chosen[:, 0])
            weights = None if self.weights is None else tf.gather(self.weights, chosen[:, 0])
            batch_loss, right = self._step(inputs, labels, weights)
            size = tf.cast(tf.shape(labels)[0], tf.float32)
            loss_sum += batch_loss * size  # fit's loss: the mean of batch losses by batch size
            right_sum += tf.reduce_sum(right)  # unweighted, as compile's `metrics` are
        validation = validation_scores(self.model, self.loss, self.val_inputs, self.val_labels)
        row = tf.stack(
            [
                loss_sum / tf.cast(count, tf.float32),
                right_sum / tf.cast(count, tf.float32),
                tf.cast(validation["loss"], tf.float32),
                tf.cast(validation["accuracy"], tf.float32),
                learning_rate,
            ]
        )
        self.history[self.epoch].assign(row)
        self._early_stopping(row[self.monitor])
        if not tf.math.is_finite(row[0]):
            self.stopped.assign(True)
        self.epoch.assign_add(1)

    def _step(
        self, inputs: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor | None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """One optimizer step, as `fit`'s train_step: the batch's loss and right predictions."""
        with tf.GradientTape() as tape:
            probabilities = self.model(inputs, training=True)
            loss = self.loss(labels, probabilities, sample_weight=weights)
            if self.model.losses:
                loss += tf.add_n(self.model.losses)
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, self.variables)
        if self.fused:
            self.fused.apply(gradients)
        else:
            self.optimizer.apply_gradients(zip(gradients, self.variables, strict=True))
        right = keras.metrics.sparse_categorical_accuracy(labels, probabilities)
        return tf.cast(loss, tf.float32), tf.cast(right, tf.float32)

    def _early_stopping(self, current: tf.Tensor) -> None:
        better = self.objective.better(current, self.best)
        self.wait.assign_add(1)
        if tf.logical_or(tf.equal(self.epoch, 0), better):
            self.best.assign(current)
            self.wait.assign(0)
            if self.restore_best:
                for best, variable in zip(self.best_weights, self.model.weights, strict=True):
                    best.assign(variable)
        elif tf.logical_and(self.wait >= self.patience, self.epoch > 0):
            self.stopped.assign(True)
