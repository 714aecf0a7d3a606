"""The frozen backbone's pooled features, computed once and kept on disk.

While the backbone is frozen its output for a given input never changes, so phase 1 can train
the head on stored features instead of images. The cache holds one clean view of every image
and `views` augmented views of it (every image, since each seed splits the data differently).
It is keyed by everything that changes its content (study.caches.inputs), written with
write-then-rename so a crash never leaves a half file under the final name, and built under a
file lock so two workers never build the same file at once.
"""

from __future__ import annotations

import fcntl
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import keras
import numpy as np
from tqdm import tqdm

from study.caches.inputs import CacheInputs
from study.config import Augmentation
from study.data.dataset import Dataset, augment, to_model_input
from study.files import atomic_file, remove_stale_partials
from study.model import runtimes
from study.model.nasnet import Weights, build_backbone

_CHUNK = 32
T = TypeVar("T")


@dataclass
class FeatureCache:
    key: str
    path: Path
    clean: np.ndarray  # (N, FEATURE_WIDTH) float32, one per dataset image
    views: np.ndarray  # (N, views, FEATURE_WIDTH) float32, augmented
    backbone_parameters: int
    runtime: str = "tensorflow"  # the runtime that computed the features


def load_or_build(
    dataset: Dataset,
    weights: Weights,
    inputs: CacheInputs,
    directory: Path,
    progress: bool = True,
) -> FeatureCache:
    """The cached features for these inputs (pooled by `inputs.pooling`), building them first
    if needed: on `inputs.runtime`, or on TensorFlow when that runtime cannot run the
    backbone."""
    runtimes.check(inputs.runtime)
    for candidate in dict.fromkeys([inputs.runtime, "tensorflow"]):
        computed = replace(inputs, runtime=candidate)
        key = computed.key(dataset, weights)

        def read(path: Path, key: str = key) -> FeatureCache | None:
            return _read(path, key, len(dataset), inputs.views)

        def build(path: Path, key: str = key, candidate: str = candidate) -> None:
            with tempfile.TemporaryDirectory() as folder:
                backbone, predict = backbone_predictor(
                    inputs.image_size, weights, inputs.pooling, candidate, Path(folder)
                )
                clean, augmented = _compute(dataset, predict, inputs, progress, weights.label)
            parameters = int(backbone.count_params())
            _write(FeatureCache(key, path, clean, augmented, parameters, candidate))

        try:
            return locked_build(Path(directory) / f"{key}.npz", read, build)
        except RuntimeFailed as error:
            print(
                f"feature cache: runtime {candidate} failed ({error}); using tensorflow",
                file=sys.stderr,
            )
    raise AssertionError("unreachable: tensorflow needs no conversion, so it never fails over")


def backbone_predictor(
    image_size: int, weights: Weights, pooling: str, runtime: str, folder: Path
) -> tuple[keras.Model, runtimes.Predict]:
    """What a build of the cache does before its first image: the backbone, and a function
    running it on `runtime` (exporting and converting it into `folder`). Raises
    `RuntimeFailed` when `runtime` cannot run it (not installed, or the conversion failed)."""
    backbone = build_backbone(image_size, weights, pooling)
    try:
        predict = runtimes.predictor(backbone, runtime, folder)
    except Exception as error:  # not installed, or the conversion failed
        raise RuntimeFailed(f"{type(error).__name__}: {error}") from error
    return backbone, predict


class RuntimeFailed(Exception):
    """The cache's runtime could not run the backbone (not installed, or no conversion)."""


def locked_build(path: Path, read: Callable[[Path], T | None], build: Callable[[Path], None]) -> T:
    """What `read` finds at path, after `build` wrote it there (atomically) if read found
    nothing usable. Under a file lock beside path, so that a second builder waits for the first
    and then reads its file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path.with_suffix(".lock")):
        remove_stale_partials(path)  # what a builder killed while writing left behind
        found = read(path)
        if found is None:
            build(path)
            found = read(path)
    return found


def model_inputs(
    dataset: Dataset, augmentation: Augmentation, views: int, seed: int
) -> Iterator[np.ndarray]:
    """Every image as model input in chunks: first clean, then each augmented view in turn
    (view v drawn from the seed [seed, v]), in dataset order."""
    images = dataset.images
    chunks = range(0, len(images), _CHUNK)
    for i in chunks:
        yield to_model_input(images[i : i + _CHUNK])
    for view in range(views):
        rng = np.random.default_rng([seed, view])
        for i in chunks:
            yield augment(images[i : i + _CHUNK], augmentation, rng)


def progress_bar(desc: str, images: int, progress: bool) -> tqdm:
    return tqdm(total=images, desc=desc, unit="img", disable=not progress, leave=False)


def _compute(
    dataset: Dataset,
    predict: runtimes.Predict,
    inputs: CacheInputs,
    progress: bool,
    backbone: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The clean features of every image, and those of its `inputs.views` augmented views, by
    the backbone that `backbone` names (in the progress bar)."""
    pooled = []
    views = inputs.views
    images = len(dataset) * (views + 1)
    with progress_bar(f"feature cache, {backbone}", images, progress) as bar:
        for batch in model_inputs(dataset, inputs.augmentation, views, inputs.seed):
            pooled.append(np.asarray(predict(batch), dtype=np.float32))
            bar.update(len(batch))
    return _arrange(pooled, views, len(dataset))


def _arrange(pooled: list[np.ndarray], views: int, images: int) -> tuple[np.ndarray, np.ndarray]:
    """Features in `model_inputs` order as (clean, augmented views per image)."""
    every = np.concatenate(pooled).reshape(views + 1, images, -1)
    return every[0], np.ascontiguousarray(every[1:].transpose(1, 0, 2))


def keep_computed(
    dataset: Dataset,
    weights: Weights,
    inputs: CacheInputs,
    directory: Path,
    pooled: list[np.ndarray],
    backbone_parameters: int,
) -> FeatureCache:
    """File features that another TensorFlow pass over `model_inputs` computed (the activation
    cache's, which can return the pooled output beside the cut's tensors) as the feature cache
    of `inputs`, unless that cache is on disk already."""
    computed = replace(inputs, runtime="tensorflow")
    key = computed.key(dataset, weights)

    def read(path: Path) -> FeatureCache | None:
        return _read(path, key, len(dataset), inputs.views)

    def build(path: Path) -> None:
        clean, augmented = _arrange(pooled, inputs.views, len(dataset))
        _write(FeatureCache(key, path, clean, augmented, backbone_parameters, "tensorflow"))

    return locked_build(Path(directory) / f"{key}.npz", read, build)


def _read(path: Path, key: str, n_images: int, views: int) -> FeatureCache | None:
    """The cache at path if it is complete and belongs to key, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            cache = FeatureCache(
                key=str(stored["key"]),
                path=path,
                clean=stored["clean"],
                views=stored["views"],
                backbone_parameters=int(stored["backbone_parameters"]),
                runtime=str(stored["runtime"]),
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    expected = (n_images, views)
    if cache.key != key or (len(cache.clean), cache.views.shape[1]) != expected:
        return None
    return cache


def _write(cache: FeatureCache) -> None:
    with atomic_file(cache.path) as handle:
        np.savez(
            handle,
            key=np.array(cache.key),
            clean=cache.clean,
            views=cache.views,
            backbone_parameters=np.array(cache.backbone_parameters),
            runtime=np.array(cache.runtime),
        )


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
