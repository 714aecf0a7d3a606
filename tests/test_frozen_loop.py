"""The frozen phase's own training loop (`frozen_loop`) against `model.fit`, on random features:
the same updates, scores, early stopping and restored weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from study import config
from study.model.nasnet import FEATURE_WIDTH, build_head
from study.training import feeding, frozen_loop

CLASSES, BATCH = 6, 32


def features(count: int, seed: int, label_noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Random features whose label raises one of the first CLASSES of them, and labels with a
    share `label_noise` redrawn at random (which the head then memorises: it overfits)."""
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(count, FEATURE_WIDTH)).astype(np.float32)
    labels = rng.integers(0, CLASSES, count)
    inputs[np.arange(count), labels] += 2
    noisy = rng.random(count) < label_noise
    labels[noisy] = rng.integers(0, CLASSES, noisy.sum())
    return inputs, labels


def compiled_head(
    dropout: float, optimizer: keras.optimizers.Optimizer | None = None
) -> keras.Model:
    head = build_head(CLASSES, "elu", dropout, 100, seed=3)
    head.compile(
        optimizer=optimizer or keras.optimizers.Adam(0.001),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    head.optimizer.build(head.trainable_variables)
    return head


def float32_betas(name: str) -> keras.optimizers.Optimizer:
    """Keras's Adam or Adamax with its betas rounded to float32 first, as the fused kernels take
    them (Keras computes 1 - beta from the Python float: 1 - 0.999 differs by 1.3e-5
    relative)."""
    kind = {"adam": keras.optimizers.Adam, "adamax": keras.optimizers.Adamax}[name]
    return kind(0.001, beta_1=float(np.float32(0.9)), beta_2=float(np.float32(0.999)))


def loop_fit(head, train, validation, epochs, stopping, sample_weights=None):
    orders = feeding.CachedViews(train[0][:, None], train[1], BATCH, seed=7)
    return frozen_loop.fit(
        head, head.loss, orders, validation, epochs, stopping, "frozen", None, sample_weights
    )


def stopping(monitor: str, patience: int | None, restore_best: bool = True):
    return config.EarlyStopping(monitor=monitor, patience=patience, restore_best=restore_best)


@pytest.mark.parametrize(
    ("dropout", "optimizer"), [(0.0, "adam"), (0.2, "adam"), (0.2, "adamax"), (0.2, "nadam")]
)
def test_curves_and_weights_equal_model_fit_on_the_same_batches(dropout, optimizer):
    """Same initial weights and batch order. Dropout too is the same: both call the model once
    per step, so its layers draw their masks from the same seed-generator states. Adam and
    Adamax take the loop's fused update (against `fit` with the betas it computes with), Nadam
    the optimizer's own `apply_gradients`."""

    def compiled():
        if optimizer == "nadam":
            return compiled_head(dropout, keras.optimizers.Nadam(0.001))
        return compiled_head(dropout, float32_betas(optimizer))

    train, validation = features(300, 0), features(80, 1)
    weights = np.random.default_rng(2).uniform(0.5, 2, len(train[1])).astype(np.float32)
    epochs, watch = 12, stopping("val_accuracy", 3)

    ours = compiled()
    assert frozen_loop.uses_fused_update(ours.optimizer, ours.trainable_variables) == (
        optimizer != "nadam"
    )
    history = loop_fit(ours, train, validation, epochs, watch, weights)

    theirs = compiled()
    picks = feeding.CachedViews(train[0][:, None], train[1], BATCH, seed=7).picks(epochs)
    batches = None
    for order in picks[:, :, 0]:  # each epoch's examples in order, batched within the epoch
        epoch = tf.data.Dataset.from_tensor_slices(
            (train[0][order], train[1][order], weights[order])
        )
        batches = epoch.batch(BATCH) if batches is None else batches.concatenate(epoch.batch(BATCH))
    fitted = theirs.fit(
        batches,
        epochs=epochs,
        steps_per_epoch=-(-len(train[1]) // BATCH),
        validation_data=validation,
        validation_batch_size=len(validation[1]),
        callbacks=[
            keras.callbacks.EarlyStopping("val_accuracy", patience=3, restore_best_weights=True)
        ],
        shuffle=False,
        verbose=0,
    )
    assert 3 < len(history["loss"]) < epochs  # it stopped early
    for key, values in fitted.history.items():
        np.testing.assert_allclose(history[key], values, rtol=1e-5, atol=1e-6, err_msg=key)
    for mine, keras_ in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(mine, keras_, rtol=1e-5, atol=1e-6)


def test_the_best_epoch_weights_are_restored():
    """With noisy training labels validation accuracy peaks after a few epochs: the restored
    weights are those after the best epoch, as a run stopped there leaves them."""
    train, validation = features(200, 3, label_noise=0.3), features(60, 4)
    head = compiled_head(0.0)
    history = loop_fit(head, train, validation, 30, stopping("val_accuracy", 5))
    best = int(np.argmax(history["val_accuracy"]))
    assert 0 < best < len(history["loss"]) - 1

    stopped_there = compiled_head(0.0)
    loop_fit(stopped_there, train, validation, best + 1, stopping("val_accuracy", None, False))
    for restored, expected in zip(head.get_weights(), stopped_there.get_weights(), strict=True):
        np.testing.assert_allclose(restored, expected, rtol=1e-6, atol=1e-7)
    rescored = frozen_loop.validation_scores(head, head.loss, *validation)
    assert float(rescored["accuracy"]) == history["val_accuracy"][best]
    assert float(rescored["loss"]) == pytest.approx(history["val_loss"][best], rel=1e-5)


@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy"])
def test_training_stops_patience_epochs_after_the_best(monitor):
    train, validation = features(200, 3, label_noise=0.3), features(60, 4)
    for patience in (2, 4):
        history = loop_fit(compiled_head(0.0), train, validation, 60, stopping(monitor, patience))
        watched = np.array(history[monitor])
        best = int(np.argmax(watched) if monitor == "val_accuracy" else np.argmin(watched))
        assert len(history["loss"]) == best + patience + 1
        assert all(len(values) == best + patience + 1 for values in history.values())


def test_without_patience_or_restoring_every_epoch_runs_and_the_last_weights_stay():
    train, validation = features(200, 3, label_noise=0.3), features(60, 4)
    head = compiled_head(0.0)
    history = loop_fit(head, train, validation, 25, stopping("val_loss", None, False))
    assert len(history["val_loss"]) == 25 > frozen_loop.EPOCHS_PER_CALL * 2
    assert np.argmin(history["val_loss"]) < 24  # the last epoch is not the best
    rescored = frozen_loop.validation_scores(head, head.loss, *validation)
    assert float(rescored["loss"]) == pytest.approx(history["val_loss"][-1], rel=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "adamax"])
def test_the_fused_update_is_keras_own_with_float32_betas(optimizer):
    """Five steps of the same gradients through Keras's Adam (Adamax) and `FusedUpdate`: the
    weights and the step count are Keras's (Adam: exactly; Adamax: to float32 rounding, its
    kernel orders the weight update's products otherwise) once Keras takes the betas as
    float32 values, and within float32 rounding of them with the betas as given."""
    kind = {"adam": keras.optimizers.Adam, "adamax": keras.optimizers.Adamax}[optimizer]
    fused_head, same_betas, given_betas = (
        compiled_head(0.0, kind(0.001)),
        compiled_head(0.0, float32_betas(optimizer)),
        compiled_head(0.0, kind(0.001)),
    )
    fused = frozen_loop.FusedUpdate(fused_head.optimizer, fused_head.trainable_variables)
    rng = np.random.default_rng(5)
    for _ in range(5):
        gradients = [
            rng.normal(size=v.shape).astype(np.float32) for v in fused_head.trainable_variables
        ]
        fused.apply([tf.constant(g) for g in gradients])
        for head in (same_betas, given_betas):
            head.optimizer.apply_gradients(zip(gradients, head.trainable_variables, strict=True))
    assert int(fused_head.optimizer.iterations) == 5
    moved = 0.0
    for mine, keras_, start in zip(
        fused_head.weights, same_betas.weights, compiled_head(0.0).weights, strict=True
    ):
        if optimizer == "adam":
            np.testing.assert_array_equal(mine, keras_)
        else:
            np.testing.assert_allclose(mine, keras_, rtol=1e-6, atol=1e-9)
        moved = max(moved, float(np.abs(np.asarray(mine) - np.asarray(start)).max()))
    assert moved > 1e-3  # five steps of lr 0.001 moved the weights
    for mine, keras_ in zip(fused_head.weights, given_betas.weights, strict=True):
        np.testing.assert_allclose(mine, keras_, rtol=1e-4, atol=1e-6)
