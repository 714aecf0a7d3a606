"""The activation cache of a fine-tuning cut, and fine-tuning the cells above the cut on it."""

import os

import keras
import numpy as np
from mlflow.tracking import MlflowClient

from study import config
from study.caches import activations, features
from study.caches.inputs import CacheInputs
from study.data import dataset as data
from study.model import nasnet as model
from study.training import train as training

from .conftest import copy_slice
from .test_train_command import train_on

CUT = "normal_9"


def test_every_configurable_cut_splits_the_backbone_exactly():
    backbone = model.build_backbone(32, model.resolve_weights("none"))
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    pooled = keras.ops.convert_to_numpy(backbone(images))
    for cell in config.CELLS:
        below, top = model.split_backbone(backbone, cell)
        through = keras.ops.convert_to_numpy(top(below(images)))
        np.testing.assert_allclose(through, pooled, atol=1e-6, err_msg=cell)


def test_cache_is_reused_and_holds_what_the_backbone_computes(tmp_path):
    dataset = data.load(copy_slice(tmp_path / "neu", per_class=2), 32)
    weights = model.resolve_weights("none")
    augmentation = config.Augmentation()

    def build(first_cell=CUT):
        inputs = CacheInputs(32, augmentation, 2, 0, cut=first_cell)
        return activations.load_or_build(dataset, weights, inputs, tmp_path / "a", progress=False)

    cache = build()
    assert cache.records.shape == (3, 12) and cache.views == 2
    assert cache.records.dtype.names == tuple(model.cut_layers(CUT))
    stamp = os.stat(cache.path).st_mtime_ns
    again = build()
    assert again.path == cache.path and os.stat(cache.path).st_mtime_ns == stamp
    assert isinstance(again.records, np.memmap)
    assert build("normal_12").key != cache.key  # another cut, another file

    # Each view holds what the frozen cells below the cut make of that view's images.
    below, _ = model.split_backbone(model.build_backbone(32, weights), CUT)
    batches = list(features.model_inputs(dataset, augmentation, 2, 0))  # 12 images: one batch
    for view, images in enumerate(batches):
        expected = below.predict_on_batch(images)
        for got, want in zip(cache.inputs(np.arange(12), view), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-3)


def test_one_pass_fills_the_feature_cache_as_its_own_build_would(tmp_path):
    dataset = data.load(copy_slice(tmp_path / "neu", per_class=2), 32)
    weights = model.resolve_weights("none", init_seed=3)
    feature_inputs = CacheInputs(32, config.Augmentation(), 0, 0)
    alongside = activations.FeaturesAlongside(feature_inputs, tmp_path / "joint" / "features")
    assert alongside.wanted(dataset, weights, CacheInputs(32, config.Augmentation(), 0, 0, cut=CUT))
    assert not alongside.wanted(  # other views: another pass
        dataset, weights, CacheInputs(32, config.Augmentation(), 2, 0, cut=CUT)
    )
    activations.load_or_build(
        dataset,
        weights,
        CacheInputs(32, config.Augmentation(), 0, 0, cut=CUT),
        tmp_path / "joint" / "activations",
        progress=False,
        alongside=alongside,
    )
    filled = list((tmp_path / "joint" / "features").glob("*.npz"))
    assert len(filled) == 1
    stamp = os.stat(filled[0]).st_mtime_ns
    found = features.load_or_build(
        dataset, weights, feature_inputs, tmp_path / "joint" / "features", progress=False
    )
    assert found.path == filled[0] and os.stat(filled[0]).st_mtime_ns == stamp  # not rebuilt
    assert not alongside.wanted(dataset, weights, CacheInputs(32, config.Augmentation(), 0, 0))
    own = features.load_or_build(dataset, weights, feature_inputs, tmp_path / "own", progress=False)
    assert found.key == own.key and found.runtime == own.runtime == "tensorflow"
    assert found.backbone_parameters == own.backbone_parameters
    np.testing.assert_allclose(found.clean, own.clean, rtol=1e-5, atol=1e-6)


def test_fine_tuning_above_the_cut_trains_the_full_model_and_no_batch_norm(
    tmp_path, no_generator_feeding
):
    dataset = data.load(copy_slice(tmp_path / "neu", per_class=5), 32)
    study = config.validate(
        {
            "name": "cut",
            "data": {"image_size": 32},
            "model": {"weights": "none"},
            "frozen": {"epochs": 0},
            "fine_tune": {
                "epochs": 1,
                "batch_size": 8,
                "learning_rate": 0.01,
                "trainable": {"from": CUT},
                "batch_norm": "frozen",
                "keep_frozen_if_better": False,
                "execution": "eager",
            },
            "features": {"views": 2},
        }
    )
    weights = model.resolve_weights("none")
    split = data.split(dataset, study.data.split, study.seed)
    inputs = CacheInputs.for_activations(study)
    cache = activations.load_or_build(
        dataset, weights, inputs, directory=tmp_path / "a", progress=False
    )
    result = training.train(study, dataset, split, weights, activations=cache)

    backbone = next(layer for layer in result.model.layers if isinstance(layer, keras.Model))
    untouched = model.build_backbone(32, weights)
    _, top = model.split_backbone(backbone, CUT)
    above = {layer.name for layer in top.layers}
    changed = {
        layer.name
        for layer, fresh in zip(backbone.layers, untouched.layers, strict=True)
        if any(
            not np.array_equal(w, f)
            for w, f in zip(layer.get_weights(), fresh.get_weights(), strict=True)
        )
    }
    assert changed and changed <= above  # trained above the cut, frozen below it
    batch_norms = {
        layer.name
        for layer in backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert not changed & batch_norms  # fine_tune.batch_norm: frozen

    # The full model on the images scores what the trained top and head do on the cache.
    everything = np.arange(len(dataset))
    on_images = result.model.predict(data.to_model_input(dataset.images), verbose=0)
    on_cache = result.head.predict(top.predict(cache.inputs(everything), verbose=0), verbose=0)
    np.testing.assert_allclose(on_images, on_cache, atol=2e-3)
    assert result.parameters["trainable_fine_tune"] == model.parameter_counts(result.model)[1]


def test_train_with_a_cut_logs_a_complete_run(neu_slice, tmp_path):
    sets = ["fine_tune.epochs=1", "fine_tune.trainable={from: normal_12}", "features.views=1"]
    done, run, client = train_on(neu_slice, tmp_path, *sets, "tracking.log_model=true")
    assert run.info.status == "FINISHED"
    assert run.data.params["fine_tune.trainable.from"] == "normal_12"
    cache_key = run.data.tags["activation_cache"]
    assert (tmp_path / "s" / "activations" / f"{cache_key}.npy").is_file()
    metrics = run.data.metrics
    assert 0 <= metrics["fine_tune_test_accuracy"] <= 1
    assert metrics["parameters_trainable_fine_tune"] < metrics["parameters_total"]
    history = client.get_metric_history(run.info.run_id, "fine_tune/val_loss")
    assert len(history) == 1
    logged = {a.path for a in MlflowClient(client.tracking_uri).list_artifacts(run.info.run_id)}
    assert "model.keras" in logged
