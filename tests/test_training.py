"""Training on real NEU images at a small size, in process."""

import numpy as np
import pytest

from study import config
from study.caches import features
from study.caches.inputs import CacheInputs
from study.data import dataset as data
from study.errors import TrainingFailed
from study.model import nasnet as model
from study.runs import tracked
from study.training import evaluation, feeding, frozen_loop
from study.training import train as training

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
        CacheInputs(SIZE, config.Augmentation(), 2, 0),
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
    rescored = evaluation.evaluate(through_backbone, dataset.labels[test], dataset.class_names)
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


def test_end_to_end_frozen_phase_without_cache_trains(dataset, weights, no_generator_feeding):
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
    scores = evaluation.evaluate(probabilities, labels, ["a", "b", "c"])
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


def test_two_classes_have_an_auc():
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]])
    scores = evaluation.evaluate(probabilities, np.array([0, 0, 1, 1]), ["functional", "defective"])
    # defective scores 0.3 and 0.8 against 0.1 and 0.6: 3 of the 4 pairs ranked right
    assert scores.metrics["auc_ovr_macro"] == pytest.approx(3 / 4)
    assert scores.metrics["accuracy"] == 0.5


@pytest.mark.parametrize("keep_frozen", [True, False])
def test_fine_tuning_that_only_hurts_keeps_the_frozen_model(
    dataset, weights, cache, keep_frozen, no_generator_feeding
):
    """A learning rate far too large wrecks the network in one step: the frozen model is kept
    (and its scores are the final ones) unless keep_frozen_if_better is off, as in the paper."""
    cfg = config.validate(
        {
            **study_config().model_dump(),
            "fine_tune": {
                "epochs": 1,
                "batch_size": 16,
                "optimizer": "adam",
                "learning_rate": 0.05,
                "execution": "eager",
                "keep_frozen_if_better": keep_frozen,
            },
        }
    )
    parts = data.split(dataset, cfg.data.split, 0)
    result = training.train(cfg, dataset, parts, weights, cache)
    frozen, fine_tune = result.phases
    assert not fine_tune.improved
    assert fine_tune.history["val_loss"][0] > fine_tune.initial["val_loss"]
    frozen_val = result.evaluations["frozen"]["val"].metrics["loss"]
    assert fine_tune.initial["val_loss"] == pytest.approx(frozen_val, rel=1e-3)
    assert result.final_stage == ("frozen" if keep_frozen else "fine_tune")
    kept = result.evaluations[result.final_stage]["test"].metrics
    rescored = evaluation.evaluate(
        result.model.predict(data.to_model_input(dataset.images[parts["test"]]), verbose=0),
        dataset.labels[parts["test"]],
        dataset.class_names,
    )
    assert rescored.metrics["loss"] == pytest.approx(kept["loss"], rel=1e-3)


def test_each_seed_goes_through_the_cached_views_in_an_order_of_its_own():
    views = np.arange(10 * 4 * 1, dtype=np.float32).reshape(10, 4, 1)  # image i, view v -> 4i+v
    labels = np.zeros(10, dtype=np.int64)

    def views_seen(seed: int, epochs: int) -> np.ndarray:
        batches = feeding.CachedViews(views, labels, batch_size=3, seed=seed)
        seen = []
        for _ in range(epochs):
            epoch = np.concatenate([batches[i][0][:, 0] for i in range(len(batches))])
            seen.append(np.sort(epoch).astype(int) % 4)  # sorted by image: the view it drew
            batches.on_epoch_end()
        return np.array(seen)  # (epoch, image) -> view

    first = views_seen(seed=0, epochs=8)
    for image in range(10):  # every view once before any repeats
        assert sorted(first[:4, image]) == [0, 1, 2, 3]
        assert sorted(first[4:, image]) == [0, 1, 2, 3]
    assert not np.array_equal(first, views_seen(seed=1, epochs=8))
    assert np.array_equal(first, views_seen(seed=0, epochs=8))


def test_without_augmentation_the_frozen_phase_trains_on_clean_cached_features(
    dataset, weights, tmp_path
):
    cfg = study_config(augment=False)
    inputs = CacheInputs.for_features(cfg)
    assert inputs.views == 0
    cache = features.load_or_build(dataset, weights, inputs, directory=tmp_path)
    assert cache.views.shape == (len(dataset), 0, model.FEATURE_WIDTH)
    parts = data.split(dataset, cfg.data.split, 0)
    result = training.train(cfg, dataset, parts, weights, cache)
    train = result.evaluations["frozen"]["train"].metrics["accuracy"]
    assert train > 1 / len(dataset.class_names)  # it learned from the clean features


@pytest.mark.parametrize("cached", [True, False])
def test_feature_normalization_is_adapted_on_the_training_split(dataset, weights, cache, cached):
    cfg = study_config(epochs=1).with_values({"model.normalize_features": True})
    parts = data.split(dataset, cfg.data.split, 0)
    result = training.train(cfg, dataset, parts, weights, cache if cached else None)
    layer = result.head.get_layer(model.NORMALIZATION)
    train = cache.clean[parts["train"]]
    np.testing.assert_allclose(layer.mean.numpy().ravel(), train.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        layer.variance.numpy().ravel(), train.var(axis=0), rtol=1e-3, atol=1e-6
    )
    assert result.parameters["trainable_frozen"] == 106_306


def test_cached_views_picks_are_the_batches_in_their_order():
    views = np.arange(10 * 4 * 2, dtype=np.float32).reshape(10, 4, 2)
    labels = np.arange(10)
    iterated = feeding.CachedViews(views, labels, batch_size=3, seed=5)
    expected = []
    for _ in range(6):  # more epochs than views: a second round of view orders
        expected.append(np.concatenate([iterated[i][0] for i in range(len(iterated))]))
        iterated.on_epoch_end()
    picks = feeding.CachedViews(views, labels, batch_size=3, seed=5).picks(6)
    assert picks.shape == (6, 10, 2)
    for epoch, epoch_picks in zip(expected, picks, strict=True):
        np.testing.assert_array_equal(views[epoch_picks[:, 0], epoch_picks[:, 1]], epoch)


def test_the_logged_curves_have_one_point_per_epoch_run(dataset, weights, cache):
    cfg = study_config(epochs=40, learning_rate=0.01, early_stopping={"patience": 3})
    result = training.train(cfg, dataset, data.split(dataset, cfg.data.split, 0), weights, cache)
    phase = result.phases[0]
    assert phase.epochs_run < 40  # stopped early
    curves = {}
    for name, _, step in tracked.run_metrics(result):
        if name.startswith("frozen/"):
            curves.setdefault(name, []).append(step)
    assert set(curves) == {f"frozen/{key}" for key in frozen_loop.CURVES}
    for steps in curves.values():
        assert steps == list(range(phase.epochs_run))


@pytest.mark.parametrize("kind", ["augmented images", "clean images", "two-input views"])
def test_batch_pipeline_gives_the_batches_of_its_source_in_order(dataset, kind):
    """For images augmented on the fly or clean, and for cached views with two inputs (as the
    cells above a fine-tuning cut take them), over more epochs than there are views."""
    two_inputs = np.arange(10 * 3 * 2, dtype=np.float32).reshape(10, 3, 2)

    class TwoInputs:  # the shape of `activations.TrainingViews`: a tuple of inputs per batch
        shape = two_inputs.shape[:2]

        def __len__(self):
            return 10

        def __getitem__(self, key):
            return two_inputs[key], -two_inputs[key][:, :1]

    def source():
        if kind == "two-input views":
            return feeding.CachedViews(TwoInputs(), np.arange(10), batch_size=4, seed=5)
        settings = config.Augmentation() if kind == "augmented images" else None
        return data.AugmentedBatches(dataset.images, dataset.labels, 16, settings, seed=3)

    expected, iterated = [], source()
    for _ in range(4):
        expected += [iterated[i] for i in range(len(iterated))]
        iterated.on_epoch_end()
    found = list(feeding.batch_pipeline(source(), 4).as_numpy_iterator())
    assert len(found) == len(expected) == 4 * len(iterated)
    for want, got in zip(expected, found, strict=True):
        for want_part, got_part in zip(
            feeding.batch_arrays(want), feeding.batch_arrays(got), strict=True
        ):
            np.testing.assert_array_equal(got_part, want_part)


def test_an_augmented_batch_does_not_depend_on_the_batches_asked_for_before(dataset):
    def batches():
        return data.AugmentedBatches(
            dataset.images, dataset.labels, 16, config.Augmentation(), seed=3
        )

    in_order, skipping = batches(), batches()
    [in_order[i] for i in range(len(in_order))]
    in_order.on_epoch_end()
    skipping.on_epoch_end()
    for index in reversed(range(len(in_order))):
        np.testing.assert_array_equal(skipping[index][0], in_order[index][0])
    other_seed = data.AugmentedBatches(
        dataset.images, dataset.labels, 16, config.Augmentation(), seed=4
    )
    assert not np.array_equal(other_seed[0][0], batches()[0][0])
