"""Predictions of a logged model for image files: one CSV row per file, with the predicted class
and every class's probability; a file that cannot be read gets a row that says why (column
`skipped`) instead of stopping the others."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from study.data.dataset import decode
from study.data.discovery import IMAGE_EXTENSIONS
from study.errors import DataError
from study.tracking.logged_model import PREDICTED_COLUMN, Classifier, table

FILE_COLUMN, SKIPPED_COLUMN = "file", "skipped"
_BATCH = 32


def image_files(paths: list[Path]) -> list[Path]:
    """Files as given, and the image files at any depth below folders (hidden ones passed
    over), each folder's in sorted order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                item
                for item in path.rglob("*")
                if item.is_file()
                and item.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in item.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"{path}: no such file or folder; give image files or folders")
    if not found:
        shown = ", ".join(str(path) for path in paths)
        raise DataError(f"no image files ({' '.join(IMAGE_EXTENSIONS)}) in {shown}")
    return found


def predict(classifier: Classifier, files: list[Path], progress: bool = True) -> pd.DataFrame:
    """A row per file: file, predicted class, a probability per class, and `skipped` (empty, or
    why the file could not be read)."""
    rows: list[pd.DataFrame] = []
    batch: list[np.ndarray] = []
    batch_files: list[Path] = []
    skipped: list[tuple[Path, str]] = []

    def flush() -> None:
        if batch:
            scored = table(classifier.probabilities(np.stack(batch)), classifier.class_names)
            scored.insert(0, FILE_COLUMN, [str(f) for f in batch_files])
            rows.append(scored)
            batch.clear()
            batch_files.clear()

    for path in tqdm(files, desc="predict", unit="image", disable=not progress, file=sys.stderr):
        try:
            batch.append(decode(path.read_bytes(), classifier.image_size, path))
            batch_files.append(path)
        except (DataError, OSError) as error:
            skipped.append((path, _reason(error, path)))
        if len(batch) == _BATCH:
            flush()
    flush()
    if skipped:
        rows.append(pd.DataFrame({FILE_COLUMN: [str(p) for p, _ in skipped]}))
    result = pd.concat(rows, ignore_index=True)
    result[SKIPPED_COLUMN] = [""] * (len(result) - len(skipped)) + [why for _, why in skipped]
    columns = [FILE_COLUMN, PREDICTED_COLUMN, *classifier.class_names, SKIPPED_COLUMN]
    return result.reindex(columns=columns)


def write(rows: pd.DataFrame, out: Path | None) -> list[tuple[str, str]]:
    """Write the predictions as CSV to `out` (None: standard output); the skipped files and
    why, each said on standard error, returned."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(out, index=False)
    else:
        rows.to_csv(sys.stdout, index=False)
    skipped = rows.loc[rows[SKIPPED_COLUMN] != "", [FILE_COLUMN, SKIPPED_COLUMN]]
    for file, why in skipped.itertuples(index=False):
        print(f"skipped {file}: {why}", file=sys.stderr)
    return list(skipped.itertuples(index=False, name=None))


def _reason(error: Exception, path: Path) -> str:
    """The error without the file name and the training-time advice."""
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return str(error).removeprefix(f"{path}: ").partition("; ")[0]
