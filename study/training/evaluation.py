"""Scoring a trained model: every split's metrics, confusion matrix and per-class scores, from
its predicted class probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from study.model import keras_scores

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
PREDICT_BATCH = 64


@dataclass
class Evaluation:
    """One split scored by one model."""

    metrics: dict[str, float]
    confusion: np.ndarray  # rows: true class, columns: predicted class
    per_class: dict[str, dict[str, float]]  # class -> precision, recall, f1, support
    predicted: np.ndarray  # the predicted class index of each image, in the split's order


def evaluate_splits(model, inputs, split, dataset, whole: bool = False) -> dict[str, Evaluation]:
    """Score every split; `whole` predicts a split in one eager call (the head on cached
    features), which spares tracing Keras's predict function for a few matrix products."""
    scores = {}
    for name, indices in split.items():
        if len(indices) == 0:
            continue
        if whole:
            probabilities = keras.ops.convert_to_numpy(model(inputs(indices), training=False))
        else:
            probabilities = model.predict(inputs(indices), batch_size=PREDICT_BATCH, verbose=0)
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
