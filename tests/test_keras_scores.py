"""study.model.keras_scores gives Keras's Precision, Recall and AUC to 1e-6: on random scores, on
confident, tied and degenerate ones, and on a real head's softmax outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from study.model import keras_scores
from study.model.nasnet import build_head
from study.training import phases


def keras_value(metric: keras.metrics.Metric, targets: np.ndarray, scores: np.ndarray) -> float:
    metric.update_state(targets, scores)
    return float(metric.result())


def cases():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 300)
    one_hot = np.eye(6, dtype=np.float32)[labels]
    softmax = rng.dirichlet(np.ones(6) * 0.3, 300).astype(np.float32)
    confident = np.clip(one_hot + rng.normal(0, 0.02, one_hot.shape), 0, 1).astype(np.float32)
    on_thresholds = (rng.integers(0, 200, one_hot.shape) / 199).astype(np.float32)
    halves = np.full_like(one_hot, 0.5)
    head = build_head(6, "elu", 0.2, 32, seed=0)
    features = rng.normal(size=(300, head.input_shape[-1])).astype(np.float32)
    real = keras.ops.convert_to_numpy(head(features, training=False))
    return {
        "random softmax": (one_hot, softmax),
        "confident": (one_hot, confident),
        "scores on the thresholds": (one_hot, on_thresholds),
        "every score 0.5": (one_hot, halves),
        "no positive prediction": (one_hot, np.zeros_like(one_hot)),
        "real head outputs": (one_hot, real),
    }


@pytest.mark.parametrize("name", list(cases()))
def test_numpy_scores_equal_keras_metrics(name):
    targets, scores = cases()[name]
    for ours, theirs in (
        (keras_scores.precision, keras.metrics.Precision()),
        (keras_scores.recall, keras.metrics.Recall()),
        (keras_scores.auc, keras.metrics.AUC()),
    ):
        assert ours(targets, scores) == pytest.approx(
            keras_value(theirs, targets, scores), abs=1e-6
        ), f"{name}: {type(theirs).__name__}"


def test_eager_validation_scores_equal_keras_evaluate():
    rng = np.random.default_rng(1)
    head = build_head(6, "tanh", 0.3, 48, seed=2)
    head.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    features = rng.normal(size=(120, head.input_shape[-1])).astype(np.float32)
    labels = rng.integers(0, 6, 120)
    keras_scores_ = head.evaluate(features, labels, batch_size=120, verbose=0, return_dict=True)
    eager = phases.EagerValidation(features, labels).scores(head)
    assert eager == pytest.approx({k: keras_scores_[k] for k in eager}, abs=1e-6)
