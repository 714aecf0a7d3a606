import keras
import numpy as np
import pytest

from study.data import dataset as data
from study.errors import WeightsError
from study.model import nasnet as model


def paper_classifier(image_size=32, weights=None):
    backbone = model.build_backbone(image_size, weights or model.resolve_weights("none"))
    head = model.build_head(6, "elu", 0.2, 100, seed=0)
    return backbone, model.build_classifier(backbone, head)


def test_paper_head_has_the_papers_parameter_counts():
    backbone, classifier = paper_classifier()
    backbone.trainable = False
    assert model.parameter_counts(classifier) == (4_376_022, 106_306)
    backbone.trainable = True
    total, trainable = model.parameter_counts(classifier)
    assert total == 4_376_022
    # Every layer trains in phase 2; only batch-norm moving statistics are not gradient-trained.
    moving = sum(
        int(np.prod(w.shape)) for w in classifier.non_trainable_weights if "moving" in w.path
    )
    assert trainable + moving == total
    assert all(layer.trainable for layer in backbone.layers)


def test_an_explicit_weights_file_loads_and_changes_the_outputs(tmp_path):
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    trained = model.build_backbone(32, model.resolve_weights("none", init_seed=7))
    path = tmp_path / "backbone.weights.h5"
    trained.save_weights(path)

    weights = model.resolve_weights(str(path))
    assert weights.source == "file" and weights.md5 == model.file_md5(path)
    loaded = model.build_backbone(32, weights)
    default = model.build_backbone(32, model.resolve_weights("none"))
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), trained.predict(images, verbose=0), atol=1e-5
    )
    assert not np.allclose(loaded.predict(images, verbose=0), default.predict(images, verbose=0))


def test_missing_or_wrong_weights_files(tmp_path):
    with pytest.raises(WeightsError, match="does not exist; give imagenet, none, or the path"):
        model.resolve_weights(str(tmp_path / "absent.h5"))
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(WeightsError, match="is not a Keras weights file"):
        model.resolve_weights(str(text))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="cannot load .*junk.h5 into NASNet-Mobile"):
        model.build_backbone(32, model.resolve_weights(str(junk)))


def test_imagenet_offline_stops_with_the_file_md5_and_options(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(model, "IMAGENET_URL", "http://127.0.0.1:9/NASNet-mobile-no-top.h5")
    with pytest.raises(WeightsError) as caught:
        model.resolve_weights("imagenet")
    message = str(caught.value)
    for part in (
        "nasnet_mobile_no_top.h5",
        model.IMAGENET_MD5,
        str(tmp_path / "keras" / "models"),
        "model.weights=none",
        "download failed",
    ):
        assert part in message


def test_imagenet_from_the_keras_cache_is_checked_by_md5(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = model.keras_cache_file()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a download")
    with pytest.raises(WeightsError, match="has md5 .*not 1ed92395b5b598bdda52abe5c0dbfd63"):
        model.resolve_weights("imagenet")
    monkeypatch.setattr(model, "IMAGENET_MD5", model.file_md5(cached))
    assert model.resolve_weights("imagenet").path == cached


def test_random_weights_are_seeded():
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    first = model.build_backbone(32, model.resolve_weights("none", 3)).predict(images, verbose=0)
    again = model.build_backbone(32, model.resolve_weights("none", 3)).predict(images, verbose=0)
    np.testing.assert_array_equal(first, again)


def test_feature_normalization_is_adapted_saved_and_not_trained(tmp_path):
    images = data.to_model_input(data.load(None, 32).images)
    backbone = model.build_backbone(32, model.resolve_weights("none"))
    features = backbone.predict(images, verbose=0)
    head = model.build_head(6, "elu", 0.2, 100, seed=0, normalize=True)
    model.adapt_head(head, features)
    classifier = model.build_classifier(backbone, head)

    backbone.trainable = False
    total, trainable = model.parameter_counts(classifier)
    assert trainable == 106_306  # the mean and variance are statistics, not trained
    assert total == 4_376_022 + 2 * model.FEATURE_WIDTH + 1  # mean, variance, count

    layer = head.get_layer(model.NORMALIZATION)
    standardized = keras.Model(head.input, layer.output).predict(features, verbose=0)
    spread = features.std(axis=0) > 1e-3  # constant features stay constant
    np.testing.assert_allclose(standardized.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(standardized.std(axis=0)[spread], 1, atol=1e-2)

    path = tmp_path / "model.keras"
    classifier.save(path)
    np.testing.assert_allclose(
        keras.saving.load_model(path).predict(images, verbose=0),
        classifier.predict(images, verbose=0),
        atol=1e-5,
    )
