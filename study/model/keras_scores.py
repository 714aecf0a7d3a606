"""Keras's Precision, Recall and AUC metrics, computed with numpy.

The paper reports Keras's metrics on one-hot targets; creating and updating Keras metric
objects costs more than a frozen-phase trial's training, so these functions compute the same
numbers the same way: Precision and Recall count `score > 0.5` over every (image, class) cell,
and AUC is Keras's default (200 evenly spaced thresholds, ROC curve, trapezoidal interpolation)
with its bucketing of the scores. `tests/test_keras_scores.py` checks them against Keras.
"""

from __future__ import annotations

import numpy as np

THRESHOLD = 0.5  # keras.metrics.Precision and Recall's default
AUC_THRESHOLDS = 200  # keras.metrics.AUC's default num_thresholds


def precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """`keras.metrics.Precision()` after one update with one-hot `targets` and `scores`."""
    positive, predicted = _cells(targets, scores)
    return _ratio(np.sum(positive & predicted), np.sum(predicted))


def recall(targets: np.ndarray, scores: np.ndarray) -> float:
    """`keras.metrics.Recall()` after one update with one-hot `targets` and `scores`."""
    positive, predicted = _cells(targets, scores)
    return _ratio(np.sum(positive & predicted), np.sum(positive))


def auc(targets: np.ndarray, scores: np.ndarray) -> float:
    """`keras.metrics.AUC()` after one update with one-hot `targets` and `scores`."""
    truth = (targets.reshape(-1) != 0).astype(np.float32)
    clipped = np.clip(scores.reshape(-1).astype(np.float32), 0.0, 1.0)
    # A score belongs to the bucket of the highest threshold it exceeds (Keras's ceil - 1).
    buckets = np.ceil(clipped * np.float32(AUC_THRESHOLDS - 1)) - 1
    buckets = np.maximum(buckets, 0).astype(np.int64)

    def above(weights: np.ndarray) -> np.ndarray:
        counts = np.bincount(buckets, weights=weights, minlength=AUC_THRESHOLDS)
        return np.cumsum(counts[::-1])[::-1].astype(np.float32)

    true_positives, false_positives = above(truth), above(1 - truth)
    true_rate = _rates(true_positives, truth.sum() - true_positives)
    false_rate = _rates(false_positives, (1 - truth).sum() - false_positives)
    heights = (true_rate[:-1] + true_rate[1:]) / np.float32(2)
    return float(np.sum((false_rate[:-1] - false_rate[1:]) * heights, dtype=np.float32))


def _cells(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return targets.reshape(-1) != 0, scores.reshape(-1).astype(np.float32) > THRESHOLD


def _ratio(numerator: float, denominator: float) -> float:
    """Keras's divide_no_nan: 0 when nothing was counted."""
    return float(numerator / denominator) if denominator else 0.0


def _rates(hits: np.ndarray, misses: np.ndarray) -> np.ndarray:
    total = hits + misses
    return np.divide(hits, total, out=np.zeros_like(hits), where=total > 0)
