import dataclasses
import hashlib
import importlib.metadata
import json
import os
import sys

import keras
import numpy as np
import pytest

from study import config, errors
from study.caches import features
from study.caches.inputs import CacheInputs
from study.data import dataset as data
from study.model import nasnet as model

from .conftest import copy_slice


def test_cache_is_reused_keyed_and_rebuilt_when_damaged(tmp_path):
    dataset = data.load(copy_slice(tmp_path / "neu", per_class=3), 32)
    weights = model.resolve_weights("none")
    augmentation = config.Augmentation()
    folder = tmp_path / "cache"

    def build():
        inputs = CacheInputs(32, augmentation, 2, 0)
        return features.load_or_build(dataset, weights, inputs, folder, progress=False)

    first = build()
    assert first.clean.shape == (18, model.FEATURE_WIDTH)
    assert first.views.shape == (18, 2, model.FEATURE_WIDTH)
    assert not np.allclose(first.views[:, 0], first.views[:, 1])
    stamp = os.stat(first.path).st_mtime_ns
    again = build()
    assert again.path == first.path and os.stat(first.path).st_mtime_ns == stamp
    np.testing.assert_array_equal(again.views, first.views)

    def key(dataset=dataset, weights=weights, **changed):
        inputs = CacheInputs(image_size=32, augmentation=augmentation, views=2, seed=0)
        return dataclasses.replace(inputs, **changed).key(dataset, weights)

    assert key() == first.key
    for changed in (
        {"views": 3},
        {"augmentation": config.Augmentation(zoom=0.1)},
        {"weights": model.resolve_weights("none", 1)},
        {"image_size": 48},
        {"seed": 1},
        {"dataset": dataclasses.replace(dataset, content_hashes=dataset.content_hashes[::-1])},
        {"pooling": "max"},
        {"cut": "normal_9"},
    ):
        assert key(**changed) != first.key, changed

    first.path.write_bytes(first.path.read_bytes()[:1000])  # a torn file
    rebuilt = build()
    np.testing.assert_allclose(rebuilt.views, first.views, atol=1e-5)
    assert not list(folder.glob("*.partial"))


def old_key(dataset, weights, image_size, augmentation, views, seed, runtime, cut, pooling):
    """The cache key as the code before `CacheInputs` computed it from its arguments."""
    inputs = {
        "format": 1,
        "data": dataset.fingerprint,
        "files": len(dataset),
        "weights": weights.identity,
        "image_size": image_size,
        "augmentation": augmentation.model_dump(),
        "views": views,
        "seed": seed,
        "keras": keras.__version__,
        "runtime": runtime,
        "runtime_version": importlib.metadata.version(runtime),  # tensorflow or openvino
    }
    if cut is not None:
        inputs["cut"] = cut
    if pooling != "avg":
        inputs["pooling"] = pooling
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]


def test_the_cache_key_digests_the_inputs_as_before_so_caches_on_disk_are_found():
    dataset = data.load(data.sample_root(), 32)
    weights = model.resolve_weights("none", 3)
    study = config.validate(
        {
            "name": "k",
            "data": {"image_size": 32, "augmentation": {"zoom": 0.1}},
            "model": {"weights": "none"},
            "features": {"views": 3, "seed": 2, "runtime": "openvino"},
            "fine_tune": {"epochs": 1, "trainable": {"from": "normal_9"}, "augment": True},
        }
    )
    zoom = config.Augmentation(zoom=0.1)
    cases = [
        (CacheInputs.for_features(study), (32, zoom, 3, 2, "openvino", None, "avg")),
        (
            CacheInputs.for_features(study.with_values({"model.pooling": "max"})),
            (32, zoom, 3, 2, "openvino", None, "max"),
        ),
        (CacheInputs.for_activations(study), (32, zoom, 3, 2, "tensorflow", "normal_9", "avg")),
        (
            CacheInputs(48, config.Augmentation(), 0, 0),
            (48, config.Augmentation(), 0, 0, "tensorflow", None, "avg"),
        ),
    ]
    for inputs, arguments in cases:
        assert inputs.key(dataset, weights) == old_key(dataset, weights, *arguments), inputs


def sample_cache(folder, runtime):
    dataset = data.load(data.sample_root(), 32)
    weights = model.resolve_weights("none")
    inputs = CacheInputs(32, config.Augmentation(), 1, 0, runtime=runtime)
    return features.load_or_build(dataset, weights, inputs, folder, progress=False)


def test_a_runtime_builds_its_own_cache_with_tensorflows_features(tmp_path):
    reference = sample_cache(tmp_path, "tensorflow")
    assert reference.runtime == "tensorflow"
    cache = sample_cache(tmp_path, "openvino")  # converts the backbone: about a minute
    assert cache.runtime == "openvino"
    assert cache.key != reference.key and cache.path != reference.path
    scale = np.abs(reference.clean).max()
    np.testing.assert_allclose(cache.clean, reference.clean, atol=1e-4 * scale)
    np.testing.assert_allclose(cache.views, reference.views, atol=1e-4 * scale)
    assert sample_cache(tmp_path, "openvino").path == cache.path  # reused, not rebuilt
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_an_unknown_runtime_is_refused_with_the_valid_ones(tmp_path):
    with pytest.raises(errors.ConfigError, match=r"features\.runtime: .*'openvino'.*'onnx'"):
        config.validate({"name": "x", "features": {"runtime": "onnx"}})
    with pytest.raises(errors.StudyError, match="'onnx' is unknown; choose one of tensorflow"):
        sample_cache(tmp_path, "onnx")


def test_tensorflow_builds_the_cache_when_the_runtime_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    cache = sample_cache(tmp_path, "openvino")
    assert cache.runtime == "tensorflow"
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "feature cache: runtime openvino failed (ModuleNotFoundError: import of openvino "
        "halted; None in sys.modules); using tensorflow"
    ]
    assert sample_cache(tmp_path, "tensorflow").path == cache.path  # TensorFlow's own file
    assert [path.name for path in tmp_path.glob("*.npz")] == [cache.path.name]


def test_backbone_predictor_is_what_a_build_runs_before_its_first_image(tmp_path, monkeypatch):
    """benchmarks/feature_cache_runtimes.py times it apart: it gives the cache's own features,
    and a runtime that is missing fails as the build's fallback expects."""
    dataset = data.load(data.sample_root(), 32)
    weights = model.resolve_weights("none")
    cache = sample_cache(tmp_path, "tensorflow")
    backbone, predict = features.backbone_predictor(32, weights, "avg", "tensorflow", tmp_path)
    assert int(backbone.count_params()) == cache.backbone_parameters
    clean = next(features.model_inputs(dataset, config.Augmentation(), 0, 0))
    np.testing.assert_allclose(predict(clean), cache.clean[: len(clean)], rtol=1e-5, atol=1e-6)
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    with pytest.raises(features.RuntimeFailed, match="ModuleNotFoundError: import of openvino"):
        features.backbone_predictor(32, weights, "avg", "openvino", tmp_path)
