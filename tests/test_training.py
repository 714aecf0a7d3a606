"""Training on real NEU images at a small size, in process."""

import numpy as np
import pytest

from study import config, data, features, model, training
from study.errors import TrainingFailed

from .conftest import copy_slice

SIZE = 48


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return data.load(copy_slice(tmp_path_factory.mktemp("neu"), per_class=10), SIZE)


@pytest.fixture(scope="module")
def weights():
    return model.resolve_weights("none")


@pytest.fixture(scope="module")
def cache(dataset, weights, tmp_path_factory):
    return features.load_or_build(
        dataset,
        weights,
        SIZE,
        config.Augmentation(),
        2,
        0,
        tmp_path_factory.mktemp("cache"),
        progress=False,
    )


def study_config(**frozen):
    return config.validate(
        {
            "name": "t",
            "data": {"image_size": SIZE},
            "model": {"weights": "none"},
            "frozen": {"epochs": 6, "batch_size": 16, **frozen},
            "features": {"views": 2},
        }
    )


def test_cached_head_on_the_backbone_matches_the_cached_evaluation(dataset, weights, cache):
    cfg = study_config()
    parts = data.split(dataset, cfg.data.split, 0)
    result = training.train(cfg, dataset, parts, weights, cache)
    assert result.model is None and result.parameters["total"] == 4_269_716 + 106_306

    full = model.build_classifier(model.build_backbone(SIZE, weights), result.head)
    test = parts["test"]
    through_backbone = full.predict(data.to_model_input(dataset.images[test]), verbose=0)
    np.testing.assert_allclose(
        through_backbone, result.head.predict(cache.clean[test], verbose=0), atol=1e-5
    )
    rescored = training.evaluate(through_backbone, dataset.labels[test], dataset.class_names)
    for key, value in result.evaluations["frozen"]["test"].metrics.items():
        assert rescored.metrics[key] == pytest.approx(value, abs=1e-4), key


def test_restored_weights_are_the_best_validation_epoch(dataset, weights, cache):
    cfg = study_config(epochs=8, learning_rate=0.01, early_stopping={"patience": 2})
    result = training.train(cfg, dataset, data.split(dataset, cfg.data.split, 0), weights, cache)
    phase = result.phases[0]
    best = int(np.argmin(phase.history["val_loss"]))
    assert phase.best_epoch == best
    kept = result.evaluations["frozen"]["val"].metrics["loss"]
    assert kept == pytest.approx(phase.history["val_loss"][best], rel=1e-3)
    assert len(phase.history["learning_rate"]) == phase.epochs_run


def test_end_to_end_frozen_phase_without_cache_trains(dataset, weights):
    cfg = study_config(epochs=2)
    result = training.train(cfg, dataset, data.split(dataset, cfg.data.split, 0), weights, None)
    assert result.parameters == {
        "total": 4_376_022,
        "trainable_frozen": 106_306,
        "trainable_fine_tune": 4_339_284,
    }
    assert set(result.evaluations["frozen"]) == {"train", "val", "test"}


def test_nan_loss_fails_the_training(dataset, weights, cache):
    poisoned = features.FeatureCache(
        cache.key, cache.path, cache.clean, cache.views.copy(), cache.backbone_parameters
    )
    poisoned.views[:, :, 0] = np.nan
    cfg = study_config()
    with pytest.raises(TrainingFailed, match="loss became nan"):
        training.train(cfg, dataset, data.split(dataset, cfg.data.split, 0), weights, poisoned)


def test_time_budget_fails_the_training(dataset, weights, cache):
    cfg = study_config()
    with pytest.raises(TrainingFailed, match="time budget ran out"):
        training.train(
            cfg, dataset, data.split(dataset, cfg.data.split, 0), weights, cache, time_budget_s=1e-6
        )


def test_evaluation_metrics_by_hand():
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 1, 2])
    scores = training.evaluate(probabilities, labels, ["a", "b", "c"])
    assert scores.metrics["accuracy"] == 0.75
    assert scores.metrics["error_rate"] == 0.25
    assert scores.metrics["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.7, 0.3, 0.8])))
    # macro precision: a 1/2, b 1/1, c 1/1
    assert scores.metrics["precision_macro"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert scores.metrics["recall_macro"] == pytest.approx((1 + 0.5 + 1) / 3)
    # Keras form: every probability above 0.5 is a positive: 0.9, 0.7, 0.6 (wrong), 0.8
    assert scores.metrics["precision_keras"] == pytest.approx(3 / 4)
    assert scores.metrics["recall_keras"] == pytest.approx(3 / 4)
    assert scores.confusion.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert scores.per_class["b"]["support"] == 2
