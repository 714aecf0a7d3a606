"""Images to arrays: loading, the seeded split, and the paper's augmentation.

Which files a data root holds and their classes is `discovery`'s. Images are decoded once with
Pillow, converted to 3 channels, resized, and held in memory as uint8; the model sees [-1, 1].
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from io import BytesIO
from pathlib import Path

import keras
import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import StratifiedKFold, train_test_split

from study.data.discovery import EVERY_IMAGE, ImageFile, discover
from study.errors import DataError
from study.schema.data import Augmentation, Data, Split
from study.vocabulary import SPLITS

MIN_SOURCE_SIZE = 32
_FIX = "remove the file, or set data.skip_bad_files: true to leave such files out"


def sample_root() -> Path:
    """The small NEU sample shipped inside the package."""
    return Path(str(resources.files("study.data") / "sample_data" / "neu"))


@dataclass
class Dataset:
    """All usable images of a root, in a fixed order (class, then path)."""

    root: Path
    files: list[Path]
    class_names: list[str]
    labels: np.ndarray  # (N,) int class index
    images: np.ndarray  # (N, size, size, 3) uint8
    content_hashes: list[str]  # sha256 of each file's bytes
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    origin: str = "class folders"
    notices: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """A hash of every file's bytes and class, independent of paths and order."""
        lines = sorted(
            f"{self.class_names[label]}\t{digest}"
            for label, digest in zip(self.labels, self.content_hashes, strict=True)
        )
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def class_sources(self) -> list[tuple[str, int, list[str]]]:
        """Per class: its number of files and the folders (relative to root) they lie in."""
        folders: dict[str, set[str]] = {name: set() for name in self.class_names}
        for path, label in zip(self.files, self.labels, strict=True):
            folders[self.class_names[label]].add(path.parent.relative_to(self.root).as_posix())
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return [
            (name, int(count), sorted(folders[name]))
            for name, count in zip(self.class_names, counts, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.files)


def load(
    root: str | Path | None,
    image_size: int,
    skip_bad_files: bool = False,
    rules: Data = EVERY_IMAGE,
) -> Dataset:
    """Discover and decode every image; a bad file stops the load unless skip_bad_files."""
    root = Path(root) if root is not None else sample_root()
    discovery = discover(root, rules)
    kept: list[ImageFile] = []
    arrays: list[np.ndarray] = []
    digests: list[str] = []
    skipped: list[tuple[Path, str]] = []
    for item in discovery.files:
        raw = item.path.read_bytes()
        try:
            arrays.append(decode(raw, image_size, item.path))
        except DataError as error:
            if not skip_bad_files:
                raise
            skipped.append((item.path, str(error)))
            continue
        kept.append(item)
        digests.append(hashlib.sha256(raw).hexdigest())
    class_names = sorted({item.label for item in kept})
    if len(class_names) < 2:
        raise DataError(f"data root {root}: fewer than 2 classes have readable images")
    index = {name: i for i, name in enumerate(class_names)}
    return Dataset(
        root=root,
        files=[item.path for item in kept],
        class_names=class_names,
        labels=np.array([index[item.label] for item in kept], dtype=np.int64),
        images=np.stack(arrays),
        content_hashes=digests,
        skipped=skipped,
        origin=discovery.origin,
        notices=discovery.notices,
    )


def decode(raw: bytes, image_size: int, path: Path) -> np.ndarray:
    """Bytes of one image file to a (size, size, 3) uint8 array."""
    try:
        with Image.open(BytesIO(raw)) as image:
            image.load()
            pixels = _to_rgb(image)
    except UnidentifiedImageError:
        reason = "empty file" if not raw else "cannot be decoded: its bytes are in no image format"
        raise DataError(f"{path}: {reason}; {_FIX}") from None
    except (OSError, SyntaxError, ValueError) as error:
        problem = "the file is truncated" if "truncated" in str(error) else f"damaged ({error})"
        raise DataError(f"{path}: cannot be decoded as an image, {problem}; {_FIX}") from None
    height, width = pixels.shape[:2]
    if min(height, width) < MIN_SOURCE_SIZE:
        raise DataError(
            f"{path}: image is {width}x{height} px, smaller than the {MIN_SOURCE_SIZE} px "
            f"minimum on each side; {_FIX}"
        )
    resized = Image.fromarray(pixels).resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode to 8-bit RGB: grayscale repeated, alpha dropped, 16-bit rescaled."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        span = max(values.max() - values.min(), 1e-12)
        gray = np.round((values - values.min()) / span * 255.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def split(dataset: Dataset, fractions: Split, seed: int) -> dict[str, np.ndarray]:
    """Stratified train/val/test indices; files with identical bytes share a split.

    The test split depends on `fractions.test_seed` only, so no run seed ever trains or selects
    on a test image; `seed` re-draws train and validation from the other images (with
    `fractions.folds` = k: validation is fold `seed % k` of a stratified k-fold shuffled by
    `seed // k`)."""
    groups: dict[str, list[int]] = {}
    for i, digest in enumerate(dataset.content_hashes):
        groups.setdefault(digest, []).append(i)
    members = list(groups.values())
    group_labels = np.array([dataset.labels[m[0]] for m in members])
    positions = np.arange(len(members))
    parts = {"train": positions, "val": positions[:0], "test": positions[:0]}
    try:
        if fractions.test > 0:
            parts["train"], parts["test"] = train_test_split(
                positions,
                test_size=fractions.test,
                stratify=group_labels,
                random_state=fractions.test_seed,
            )
        rest = np.sort(parts["train"])
        if fractions.folds:
            folds = StratifiedKFold(
                fractions.folds, shuffle=True, random_state=seed // fractions.folds
            )
            train, val = list(folds.split(rest, group_labels[rest]))[seed % fractions.folds]
            parts["train"], parts["val"] = rest[train], rest[val]
        else:
            parts["train"], parts["val"] = train_test_split(
                rest,
                test_size=fractions.val / (1 - fractions.test),
                stratify=group_labels[rest],
                random_state=seed,
            )
    except ValueError as error:
        raise DataError(
            f"cannot split {len(dataset)} images of {len(dataset.class_names)} classes into "
            f"val {fractions.val} / test {fractions.test} (folds {fractions.folds}) with every "
            f"class in every split ({error}); add images or change data.split"
        ) from None
    return {
        name: np.sort(np.array([i for g in parts[name] for i in members[g]], dtype=np.int64))
        for name in SPLITS
    }


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 pixels to the [-1, 1] float range NASNet expects."""
    return images.astype(np.float32) / 127.5 - 1.0


def augment(images: np.ndarray, settings: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """Random rotation from the allowed angles, shear, zoom and flip; returns model input."""
    count, size = images.shape[0], images.shape[1]
    theta = np.deg2rad(rng.choice(np.asarray(settings.rotations, dtype=np.float64), count))
    shear = np.deg2rad(rng.uniform(-settings.shear, settings.shear, count))
    zoom_x, zoom_y = rng.uniform(1 - settings.zoom, 1 + settings.zoom, (2, count))
    flip = rng.random(count) < 0.5 if settings.horizontal_flip else np.zeros(count, dtype=bool)

    # Output-to-input maps about the image centre, composed as ImageDataGenerator does.
    cos, sin = np.cos(theta), np.sin(theta)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    shearing = np.zeros((count, 2, 2))
    shearing[:, 0, 0], shearing[:, 0, 1], shearing[:, 1, 1] = 1.0, -np.sin(shear), np.cos(shear)
    zooming = np.zeros((count, 2, 2))
    zooming[:, 0, 0], zooming[:, 1, 1] = zoom_x, zoom_y
    matrix = rotation @ shearing @ zooming
    matrix[:, :, 0] *= np.where(flip, -1.0, 1.0)[:, None]
    centre = np.full(2, (size - 1) / 2.0)
    offset = centre - matrix @ centre
    transforms = np.concatenate(
        [matrix[:, 0, :], offset[:, :1], matrix[:, 1, :], offset[:, 1:], np.zeros((count, 2))],
        axis=1,
    ).astype(np.float32)
    moved = keras.ops.image.affine_transform(
        images.astype(np.float32), transforms, interpolation="bilinear", fill_mode="nearest"
    )
    return keras.ops.convert_to_numpy(moved) / 127.5 - 1.0


class AugmentedBatches:
    """Shuffled, freshly augmented batches of images for training end to end (`settings` None:
    the clean images), a batch source for `feeding.batch_pipeline`. An epoch's order and each
    batch's augmentation are drawn from the seed, the epoch and the batch's index, so a batch
    does not depend on which batches were asked for before it."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        settings: Augmentation | None,
        seed: int,
    ):
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.settings, self.seed = settings, seed
        self.epoch = -1
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.settings is None:
            return to_model_input(self.images[chosen]), self.labels[chosen]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        return augment(self.images[chosen], self.settings, rng), self.labels[chosen]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.images))
