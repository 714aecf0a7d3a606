"""Knobs of the loss, the head and the class balance: set from YAML, swept, and acting on
training with real NEU images at a small size."""

import numpy as np
import pytest

from study import config
from study.caches import features
from study.caches.inputs import CacheInputs
from study.data import dataset as data
from study.model import nasnet as model
from study.runs import session
from study.training import phases
from study.training import train as training
from study.tuning import tuner

from .conftest import copy_slice

SIZE = 48


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return data.load(copy_slice(tmp_path_factory.mktemp("neu"), per_class=8), SIZE)


@pytest.fixture(scope="module")
def weights():
    return model.resolve_weights("none")


@pytest.fixture(scope="module")
def cache(dataset, weights, tmp_path_factory):
    cfg = study_config()
    return features.load_or_build(
        dataset,
        weights,
        CacheInputs.for_features(cfg),
        directory=tmp_path_factory.mktemp("cache"),
    )


def study_config(**values):
    base = {
        "name": "t",
        "data": {"image_size": SIZE},
        "model": {"weights": "none"},
        "frozen": {"epochs": 3, "batch_size": 16},
        "features": {"views": 1},
    }
    return config.validate(base).with_values(values)


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray, smoothing: float) -> float:
    """Keras's categorical cross-entropy on smoothed one-hot targets, in numpy."""
    classes = probabilities.shape[1]
    targets = (1 - smoothing) * np.eye(classes)[labels] + smoothing / classes
    clipped = np.clip(probabilities / probabilities.sum(axis=1, keepdims=True), 1e-7, 1 - 1e-7)
    return float(np.mean(-(targets * np.log(clipped)).sum(axis=1)))


def test_label_smoothing_is_a_sweepable_setting_of_both_phases():
    swept = {"type": "choice", "values": [0.0, 0.1]}
    cfg = config.validate(
        {
            "name": "t",
            "fine_tune": {"epochs": 1, "label_smoothing": 0.2},
            "hyperparameters": {"frozen.label_smoothing": swept},
        }
    )
    assert cfg.fine_tune.label_smoothing == 0.2 and cfg.frozen.label_smoothing == 0.0
    assert tuner.search_space(cfg).get("frozen.label_smoothing") == 0.0
    assert cfg.with_values({"frozen.label_smoothing": 0.1}).flat()["frozen.label_smoothing"] == 0.1
    with pytest.raises(config.ConfigError, match=r"fine_tune.label_smoothing.*\(got 1\)"):
        config.validate({"name": "t", "fine_tune": {"label_smoothing": 1}})


def test_the_loss_of_a_phase_smooths_its_labels():
    labels = np.array([0, 2, 1, 2])
    probabilities = np.array(
        [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3], [0.5, 0.25, 0.25]], np.float32
    )
    for smoothing in (0.0, 0.1):
        phase = config.Phase(label_smoothing=smoothing)
        loss = float(phases.phase_loss(phase)(labels, probabilities))
        assert loss == pytest.approx(cross_entropy(labels, probabilities, smoothing), rel=1e-5)
    plain = cross_entropy(labels, probabilities, 0.0)
    assert cross_entropy(labels, probabilities, 0.1) != pytest.approx(plain, rel=1e-3)


def test_the_frozen_phase_trains_and_validates_on_the_smoothed_loss(dataset, weights, cache):
    cfg = study_config(**{"frozen.label_smoothing": 0.1})
    parts = data.split(dataset, cfg.data.split, cfg.seed)
    result = training.train(cfg, dataset, parts, weights, cache)
    # The head as training starts: built again from the same seed.
    head = model.build_head(len(dataset.class_names), "elu", 0.2, 100, cfg.seed)
    labels = dataset.labels[parts["val"]]
    start = head.predict(cache.clean[parts["val"]], verbose=0)
    phase = result.phases[0]
    assert phase.initial["val_loss"] == pytest.approx(cross_entropy(labels, start, 0.1), rel=1e-4)
    assert phase.initial["val_loss"] != pytest.approx(cross_entropy(labels, start, 0.0), rel=1e-3)
    assert phase.epochs_run == 3 and np.isfinite(phase.history["loss"]).all()


def test_max_pooling_gives_a_feature_cache_of_its_own(dataset, weights, cache, tmp_path):
    average = CacheInputs.for_features(study_config())
    pooled = CacheInputs.for_features(study_config(**{"model.pooling": "max"}))
    # Caches from before the knob hold average-pooled features under the same key: the key's
    # digest leaves average pooling out (test_features pins it to the dictionary it hashes).
    assert average.key(dataset, weights) == cache.key
    assert pooled.key(dataset, weights) != cache.key
    maxed = features.load_or_build(dataset, weights, pooled, directory=tmp_path)
    images = data.to_model_input(dataset.images[:8])
    by_max = model.build_backbone(SIZE, weights, "max").predict(images, verbose=0)
    np.testing.assert_allclose(maxed.clean[:8], by_max, rtol=1e-5, atol=1e-6)
    assert not np.allclose(maxed.clean, cache.clean, atol=1e-3)


def test_a_max_pooled_head_differs_from_the_average_pooled_one_with_as_many_parameters(
    dataset, weights
):
    head = model.build_head(len(dataset.class_names), "elu", 0.2, 100, 0)
    images = data.to_model_input(dataset.images[:8])
    outputs = {}
    for pooling in ("avg", "max"):
        backbone = model.build_backbone(SIZE, weights, pooling)
        classifier = model.build_classifier(backbone, head)
        backbone.trainable = False
        assert model.parameter_counts(classifier)[1] == 106_306
        outputs[pooling] = classifier.predict(images, verbose=0)
    assert not np.allclose(outputs["avg"], outputs["max"], atol=1e-4)


def test_training_builds_the_backbone_with_the_configured_pooling(dataset, weights):
    cfg = study_config(**{"model.pooling": "max", "frozen.epochs": 1})
    result = training.train(cfg, dataset, data.split(dataset, cfg.data.split, 0), weights, None)
    backbone = result.model.layers[1]
    assert type(backbone.layers[-1]).__name__ == "GlobalMaxPooling2D"
    assert result.parameters["trainable_frozen"] == 106_306


def test_a_sweep_over_pooling_gives_each_trial_the_feature_cache_of_its_pooling(
    dataset, weights, cache, tmp_path
):
    swept = {"model.pooling": {"type": "choice", "values": ["avg", "max"]}}
    cfg = config.validate({"name": "t", "hyperparameters": swept})
    assert tuner.search_space(cfg).get("model.pooling") == "avg"
    prepared = session.Prepared(dataset, weights, cache, state_dir=tmp_path, progress=False)
    assert prepared.features_for(study_config()) is cache
    maxed = prepared.features_for(study_config(**{"model.pooling": "max"}))
    assert maxed.key == CacheInputs.for_features(study_config(**{"model.pooling": "max"})).key(
        dataset, weights
    )
    assert (tmp_path / "features").is_dir() and not np.allclose(maxed.clean, cache.clean)
    assert prepared.features_for(study_config(**{"model.pooling": "max"})) is maxed


def imbalanced_split(dataset) -> dict[str, np.ndarray]:
    """Every image of the first class and two of each other class to train on, as a defect set
    that is mostly one class; the rest to validate on."""
    labels = dataset.labels
    train = np.concatenate(
        [np.flatnonzero(labels == c)[: None if c == 0 else 2] for c in np.unique(labels)]
    )
    rest = np.setdiff1d(np.arange(len(labels)), train)
    return {"train": train, "val": rest, "test": np.array([], dtype=int)}


def test_balanced_class_weights_are_n_over_classes_times_count_on_the_training_split(dataset):
    labels = dataset.labels[imbalanced_split(dataset)["train"]]
    balanced = config.Phase(class_weight="balanced")
    counts = np.bincount(labels)
    expected = {c: len(labels) / (len(counts) * counts[c]) for c in range(len(counts))}
    assert phases.phase_class_weight(balanced, labels) == pytest.approx(expected)
    assert phases.phase_class_weight(config.Phase(), labels) is None
    swept = {"fine_tune.class_weight": {"type": "choice", "values": ["none", "balanced"]}}
    cfg = config.validate({"name": "t", "fine_tune": {"epochs": 1}, "hyperparameters": swept})
    assert tuner.search_space(cfg).get("fine_tune.class_weight") == "none"
    with pytest.raises(config.ConfigError, match="frozen.class_weight"):
        config.validate({"name": "t", "frozen": {"class_weight": "inverse"}})


@pytest.mark.parametrize(
    ("class_weight", "cached"), [("none", True), ("balanced", True), ("balanced", False)]
)
def test_class_weights_reach_the_training_loss(dataset, weights, cache, class_weight, cached):
    """An epoch at a learning rate too small to move the head: its training loss is the
    start's cross-entropy, each image's weighted by its class, on cached features (one
    TensorFlow call per epoch) and end to end (`batch_pipeline`)."""
    parts = imbalanced_split(dataset)
    labels = dataset.labels[parts["train"]]
    cfg = study_config(
        **{"model.dropout": 0.0, "frozen.class_weight": class_weight, "frozen.augment": False}
    ).with_values({"frozen.epochs": 1, "frozen.batch_size": 64, "frozen.learning_rate": 1e-9})
    head = model.build_head(len(dataset.class_names), "elu", 0.0, 100, cfg.seed)
    start = head.predict(cache.clean[parts["train"]], verbose=0)
    per_image = -np.log(np.clip(start[np.arange(len(labels)), labels], 1e-7, 1))
    weights_of = phases.phase_class_weight(cfg.frozen, labels) or {}
    expected = np.mean([weights_of.get(label, 1.0) for label in labels] * per_image)

    result = training.train(cfg, dataset, parts, weights, cache if cached else None)
    assert result.phases[0].history["loss"][0] == pytest.approx(expected, rel=1e-4)
    if class_weight == "balanced":  # the minority classes' images weigh more
        assert expected != pytest.approx(per_image.mean(), rel=1e-2)
