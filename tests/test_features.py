import dataclasses
import os

import numpy as np

from study import config, data, features, model

from .conftest import copy_slice


def test_cache_is_reused_keyed_and_rebuilt_when_damaged(tmp_path):
    dataset = data.load(copy_slice(tmp_path / "neu", per_class=3), 32)
    weights = model.resolve_weights("none")
    augmentation = config.Augmentation()
    folder = tmp_path / "cache"

    def build():
        return features.load_or_build(
            dataset, weights, 32, augmentation, 2, 0, folder, progress=False
        )

    first = build()
    assert first.clean.shape == (18, model.FEATURE_WIDTH)
    assert first.views.shape == (18, 2, model.FEATURE_WIDTH)
    assert not np.allclose(first.views[:, 0], first.views[:, 1])
    stamp = os.stat(first.path).st_mtime_ns
    again = build()
    assert again.path == first.path and os.stat(first.path).st_mtime_ns == stamp
    np.testing.assert_array_equal(again.views, first.views)

    def key(**changed):
        inputs = {
            "dataset": dataset,
            "weights": weights,
            "image_size": 32,
            "augmentation": augmentation,
            "views": 2,
            "seed": 0,
            **changed,
        }
        return features.cache_key(**inputs)

    assert key() == first.key
    for changed in (
        {"views": 3},
        {"augmentation": config.Augmentation(zoom=0.1)},
        {"weights": model.resolve_weights("none", 1)},
        {"image_size": 48},
        {"seed": 1},
        {"dataset": dataclasses.replace(dataset, content_hashes=dataset.content_hashes[::-1])},
    ):
        assert key(**changed) != first.key, changed

    first.path.write_bytes(first.path.read_bytes()[:1000])  # a torn file
    rebuilt = build()
    np.testing.assert_allclose(rebuilt.views, first.views, atol=1e-5)
    assert not list(folder.glob("*.partial"))
