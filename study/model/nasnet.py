"""The NASNet-Mobile backbone, the configurable head, and where the backbone's weights come from.

Weights are resolved before anything is built: an explicit file, ImageNet from the Keras cache
(downloaded there if the network allows), or `none` (random, seeded). ImageNet weights that
cannot be had stop the run; nothing falls back to random weights on its own.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from study.errors import WeightsError
from study.vocabulary import CELLS

IMAGENET_FILE = "nasnet_mobile_no_top.h5"
IMAGENET_MD5 = "1ed92395b5b598bdda52abe5c0dbfd63"
IMAGENET_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/nasnet/NASNet-mobile-no-top.h5"
)
FEATURE_WIDTH = 1056  # NASNet-Mobile's pooled output channels
WEIGHTS_SUFFIXES = (".h5", ".weights.h5", ".hdf5")
NORMALIZATION = "feature_normalization"


@dataclass(frozen=True)
class Weights:
    """Which backbone weights a run uses, named so that two runs can be compared."""

    source: str  # "imagenet", "file" or "none"
    path: Path | None
    md5: str | None
    init_seed: int

    @property
    def identity(self) -> str:
        if self.source == "none":
            return f"none:init_seed={self.init_seed}:keras={keras.__version__}"
        return f"{self.source}:md5={self.md5}"

    @property
    def label(self) -> str:
        if self.source == "none":
            return f"none (random init, seed {self.init_seed})"
        return f"{self.source} ({self.path}, md5 {self.md5})"


def keras_cache_file() -> Path:
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return home / "models" / IMAGENET_FILE


def resolve_weights(spec: str, init_seed: int = 0) -> Weights:
    """Turn `model.weights` into a usable file (or none); raises WeightsError with the options."""
    if spec == "none":
        return Weights("none", None, None, init_seed)
    if spec == "imagenet":
        return Weights("imagenet", _imagenet_file(), IMAGENET_MD5, init_seed)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"model.weights: file {path} does not exist; give imagenet, none, or the path of "
            f"a NASNet-Mobile no-top weights file ({', '.join(WEIGHTS_SUFFIXES)})"
        )
    if not path.name.endswith(WEIGHTS_SUFFIXES):
        raise WeightsError(
            f"model.weights: {path} is not a Keras weights file ({', '.join(WEIGHTS_SUFFIXES)})"
        )
    return Weights("file", path.resolve(), file_md5(path), init_seed)


def _imagenet_file() -> Path:
    cached = keras_cache_file()
    if cached.is_file():
        digest = file_md5(cached)
        if digest == IMAGENET_MD5:
            return cached
        problem = f"{cached} has md5 {digest}, not {IMAGENET_MD5} (an interrupted download?)"
    else:
        try:
            return Path(
                keras.utils.get_file(
                    IMAGENET_FILE, IMAGENET_URL, cache_subdir="models", file_hash=IMAGENET_MD5
                )
            )
        except Exception as error:  # noqa: BLE001 - any download failure means the same to the user
            problem = f"it is not in the Keras cache and the download failed ({error})"
    raise WeightsError(
        f"ImageNet weights for NASNet-Mobile are unavailable: {problem}. Put {IMAGENET_FILE} "
        f"(md5 {IMAGENET_MD5}, from {IMAGENET_URL}) at {cached}, or pass its path with "
        "--set model.weights=PATH, or train from random weights with --set model.weights=none"
    )


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_backbone(image_size: int, weights: Weights, pooling: str = "avg") -> keras.Model:
    """NASNet-Mobile without its top, globally pooled (`pooling`: avg or max) to FEATURE_WIDTH
    values."""
    keras.utils.set_random_seed(weights.init_seed)
    backbone = keras.applications.NASNetMobile(
        include_top=False, weights=None, input_shape=(image_size, image_size, 3), pooling=pooling
    )
    if weights.path is not None:
        try:
            backbone.load_weights(str(weights.path))
        except Exception as error:  # noqa: BLE001 - Keras raises several types for a bad file
            raise WeightsError(
                f"model.weights: cannot load {weights.path} into NASNet-Mobile (no top): {error}"
            ) from None
    return backbone


def cut_layers(first_cell: str) -> list[str]:
    """The backbone layers whose outputs cross the cut before `first_cell`: the outputs of the
    two cells before it (Keras's NASNet passes each cell the last two cells' outputs)."""
    outputs = ["stem_bn1"] + [
        f"normal_concat_{cell.removeprefix('normal_')}"
        if cell.startswith("normal_")
        else f"reduction_concat_{cell}"
        for cell in CELLS
    ]
    index = CELLS.index(first_cell)
    return [outputs[index]] if index == 0 else [outputs[index], outputs[index - 1]]


def split_backbone(backbone: keras.Model, first_cell: str) -> tuple[keras.Model, keras.Model]:
    """(below, top): below maps images to the tensors that cross the cut before `first_cell`,
    top maps them on to the pooled features. Both are views of the backbone: they share its
    layers and variables, so training top trains the backbone."""
    crossing = [backbone.get_layer(name).output for name in cut_layers(first_cell)]
    below = keras.Model(backbone.input, crossing, name="below_cut")
    top = keras.Model(crossing, backbone.output, name="above_cut")
    return below, top


def set_trainable(backbone: keras.Model, first_cell: str | None, batch_norm: bool = True) -> None:
    """Unfreeze the backbone from `first_cell` up (None: all of it), its batch-norm layers
    only if `batch_norm`; the layers below the cut stay frozen."""
    backbone.trainable = True
    above = None
    if first_cell is not None:
        above = {layer.name for layer in split_backbone(backbone, first_cell)[1].layers}
    for layer in backbone.layers:
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = (above is None or layer.name in above) and (
            batch_norm or not is_batch_norm
        )


def build_head(
    n_classes: int,
    activation: str,
    dropout: float,
    width: int,
    seed: int,
    normalize: bool = False,
) -> keras.Model:
    """Dropout -> Dense(width, activation) -> Dropout -> Dense(n_classes, softmax), the paper's
    head; `normalize` puts a Normalization layer in front, to be adapted with `adapt_head`."""
    keras.utils.set_random_seed(seed)
    features = keras.Input((FEATURE_WIDTH,), name="pooled_features")
    x = keras.layers.Normalization(name=NORMALIZATION)(features) if normalize else features
    x = keras.layers.Dropout(dropout, seed=seed)(x)
    x = keras.layers.Dense(width, activation=activation)(x)
    x = keras.layers.Dropout(dropout, seed=seed + 1)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(features, outputs, name="head")


def adapt_head(head: keras.Model, features: np.ndarray) -> None:
    """Set the head's feature normalization, if it has one, to the features' mean and variance
    (non-trainable weights, saved with the model)."""
    if NORMALIZATION in {layer.name for layer in head.layers}:
        head.get_layer(NORMALIZATION).adapt(features)


def build_classifier(backbone: keras.Model, head: keras.Model) -> keras.Model:
    """The full model. The backbone always runs in inference mode, so fine-tuning leaves its
    batch-norm statistics alone (the Keras transfer-learning recipe)."""
    size = backbone.input_shape[1]
    images = keras.Input((size, size, 3), name="images")
    outputs = head(backbone(images, training=False))
    return keras.Model(images, outputs, name="nasnet_mobile_classifier")


def parameter_counts(model: keras.Model) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return int(model.count_params()), trainable
