"""The backbone's activations at a fine-tuning cut, computed once and kept on disk.

With `fine_tune.trainable: {from: CELL}` the cells below CELL stay frozen, so what they pass up
to it (the outputs of the two cells before it) never changes for a given input: fine-tuning can
train the cells above the cut on stored activations instead of running the images through the
whole backbone. Like the feature cache (study.caches.features, whose lock and write-then-rename
this cache shares, as it shares the inputs the key digests: study.caches.inputs), it holds one
clean view of every image and `views` augmented views drawn as the feature cache draws them. One
float16 .npy file of shape (1 + views, images), one record field per crossing tensor (named
after its layer), read memory-mapped: at 224 px a NEU cache of a few GB never has to fit in
memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from numpy.lib import format as npy

from study.caches.features import keep_computed, locked_build, model_inputs, progress_bar
from study.caches.inputs import CacheInputs
from study.data.dataset import Dataset
from study.files import atomic_file
from study.model.nasnet import Weights, build_backbone, cut_layers, split_backbone


@dataclass
class ActivationCache:
    key: str
    path: Path
    records: np.ndarray  # (1 + views, images) memory-mapped records; view 0 is the clean image

    @property
    def views(self) -> int:
        """Augmented views per image."""
        return self.records.shape[0] - 1

    def inputs(self, images: np.ndarray, views: np.ndarray | int = 0) -> tuple[np.ndarray, ...]:
        """The cut's tensors for these images (and, per image, these views; 0 is the clean
        image, 1 to `self.views` the augmented ones), in the order the model above the cut
        takes them."""
        rows = self.records[views, images]
        return tuple(rows[name].astype(np.float32) for name in self.records.dtype.names)


class TrainingViews:
    """Some images' cached views as `feeding.CachedViews` draws them: `[images, views]` gives
    the model inputs of those images (positions in `images`) and views (0 to shape[1] - 1). With
    `augmented` false every image has one view, the clean one."""

    def __init__(self, cache: ActivationCache, images: np.ndarray, augmented: bool):
        self.cache, self.images = cache, images
        self.first = 1 if augmented else 0
        self.shape = (len(images), cache.views if augmented else 1)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
        images, views = key
        return self.cache.inputs(self.images[images], views + self.first)


@dataclass(frozen=True)
class FeaturesAlongside:
    """A feature cache that the activation cache's pass over the images fills as well: the
    pooled output costs the cells above the cut once more, where a pass of its own would run
    the whole backbone again (with one backbone per seed, a pass per seed)."""

    inputs: CacheInputs
    directory: Path

    def wanted(self, dataset: Dataset, weights: Weights, activation_inputs: CacheInputs) -> bool:
        """Whether this pass can and should fill it: the same images in the same views, the
        features to be TensorFlow's, and no such cache on disk yet."""
        ours, theirs = self.inputs, activation_inputs
        same_images = (ours.image_size, ours.augmentation, ours.views, ours.seed) == (
            theirs.image_size,
            theirs.augmentation,
            theirs.views,
            theirs.seed,
        )
        key = self.inputs.key(dataset, weights)
        return (
            same_images
            and ours.runtime == "tensorflow"
            and not (self.directory / f"{key}.npz").is_file()
        )


def load_or_build(
    dataset: Dataset,
    weights: Weights,
    inputs: CacheInputs,
    directory: Path,
    progress: bool = True,
    alongside: FeaturesAlongside | None = None,
) -> ActivationCache:
    """The cached activations at the cut before `inputs.cut`, building them first if needed
    (and, in the same pass, the feature cache `alongside` names, if it is wanted)."""
    if inputs.cut is None:
        raise ValueError("an activation cache needs a cut: the first trainable cell")
    first_cell, views = inputs.cut, inputs.views
    key = inputs.key(dataset, weights)
    shape = (views + 1, len(dataset))

    def read(path: Path) -> ActivationCache | None:
        try:
            records = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if records.shape != shape or records.dtype.names is None:
            return None
        return ActivationCache(key, path, records)

    def build(path: Path) -> None:
        pooling = alongside.inputs.pooling if alongside else "avg"
        backbone = build_backbone(inputs.image_size, weights, pooling)
        below, _ = split_backbone(backbone, first_cell)
        pooled = [] if alongside and alongside.wanted(dataset, weights, inputs) else None
        model = below
        if pooled is not None:
            model = keras.Model(backbone.input, [*below.outputs, backbone.output])
        record = np.dtype(
            [
                (name, "<f2", tensor.shape[1:])
                for name, tensor in zip(cut_layers(first_cell), below.outputs, strict=True)
            ]
        )
        header = {"descr": npy.dtype_to_descr(record), "fortran_order": False, "shape": shape}
        with (
            atomic_file(path) as handle,
            progress_bar("activation cache", len(dataset) * (views + 1), progress) as bar,
        ):
            npy.write_array_header_1_0(handle, header)
            for batch in model_inputs(dataset, inputs.augmentation, views, inputs.seed):
                outputs = model.predict_on_batch(batch)
                outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
                if pooled is not None:
                    pooled.append(np.asarray(outputs.pop(), dtype=np.float32))
                rows = np.empty(len(batch), record)
                for name, tensor in zip(record.names, outputs, strict=True):
                    rows[name] = tensor
                handle.write(rows.tobytes())
                bar.update(len(batch))
        if pooled is not None:
            keep_computed(
                dataset,
                weights,
                alongside.inputs,
                alongside.directory,
                pooled,
                int(backbone.count_params()),
            )

    return locked_build(Path(directory) / f"{key}.npy", read, build)
