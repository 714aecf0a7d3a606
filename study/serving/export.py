"""A logged model exported for another runtime, with a parity check.

The Keras classifier behind an MLflow model is written as ONNX (`model.onnx`) or OpenVINO IR
(`model.xml`, `model.bin`) and run on the test split of the run that trained it (the files
its `split.csv` names, decoded as in training). The export holds when the largest absolute
difference of any class probability from Keras's stays within the tolerance and every image gets
the same predicted class; the check's figures are logged as metrics of the run either way, and
the files as artifacts under `export/<format>/` only when it holds.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study.data.dataset import decode, to_model_input
from study.errors import ModelError, StudyError, WorkFailed
from study.model import runtimes
from study.tracking import logged_model
from study.tracking.store import Store

# The largest absolute difference of a probability from Keras's that an export may have: ONNX
# agreed to 2e-7 on the smoke model, OpenVINO fp32 (its graph optimisations) to 4.2e-4.
TOLERANCE = {"onnx": 1e-4, "openvino": 1e-3}
FORMATS = tuple(TOLERANCE)
_BATCH = 32


class ExportFailed(WorkFailed):
    """The exported model does not give the Keras model's answers."""

    what = "export"


@dataclass(frozen=True)
class Exported:
    format: str
    run_id: str
    artifact_path: str
    images: int
    max_abs_diff: float
    same_class: bool


def export(store: Store, model_uri: str, format: str, tolerance: float | None = None) -> Exported:
    """Export the model at `model_uri`, check it on its run's test split (within `tolerance`,
    by default the format's), and log both."""
    if format not in FORMATS:
        raise StudyError(f"--format {format!r} is unknown; choose one of {', '.join(FORMATS)}")
    tolerance = TOLERANCE[format] if tolerance is None else tolerance
    classifier = logged_model.load(store.uri, model_uri)
    run_id = logged_model.source_run(store.uri, model_uri)
    images, _ = parity_images(store, run_id, classifier.image_size)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / format
        onnx_file = runtimes.export_onnx(classifier.model, folder / "model.onnx")
        if format == "openvino":
            exported = runtimes.export_openvino(onnx_file, folder)
            onnx_file.unlink()
            predict = runtimes.openvino_predictor(exported)
        else:
            predict = runtimes.onnx_predictor(onnx_file)
        reference = classifier.probabilities(images)
        answers = np.concatenate(
            [predict(to_model_input(images[i : i + _BATCH])) for i in range(0, len(images), _BATCH)]
        )
        result = Exported(
            format=format,
            run_id=run_id,
            artifact_path=f"export/{format}",
            images=len(images),
            max_abs_diff=float(np.abs(answers - reference).max()),
            same_class=bool((answers.argmax(axis=1) == reference.argmax(axis=1)).all()),
        )
        store.log(
            run_id,
            metrics=[
                (f"export_{format}_max_abs_diff", result.max_abs_diff, 0),
                (f"export_{format}_same_class", float(result.same_class), 0),
                (f"export_{format}_parity_images", result.images, 0),
            ],
        )
        if result.max_abs_diff > tolerance or not result.same_class:
            raise ExportFailed(
                f"{format} export of {model_uri} disagrees with Keras on {result.images} test "
                f"images: max abs difference {result.max_abs_diff:.2e} (tolerance "
                f"{tolerance:.0e}), predicted classes "
                + ("identical" if result.same_class else "differ")
            )
        store.log_artifacts(run_id, folder, under=result.artifact_path)
    return result


def parity_images(store: Store, run_id: str, image_size: int) -> tuple[np.ndarray, list[str]]:
    """The run's test-split images (its validation split when it had no test split), decoded
    as in training, and their classes."""
    root = Path(store.get_run(run_id).params.get("dataset.root", ""))
    with tempfile.TemporaryDirectory() as folder:
        split_file = store.download_artifact(run_id, "split.csv", Path(folder))
        with open(split_file, newline="") as handle:
            rows = list(csv.DictReader(handle))
    chosen = [row for row in rows if row["split"] == "test"] or [
        row for row in rows if row["split"] == "val"
    ]
    names = [row["file"] for row in chosen]
    missing = [name for name in names if not (root / name).is_file()]
    if missing:
        raise ModelError(
            f"run {run_id}: {len(missing)} of its test images are not under its data root "
            f"{root} (first: {missing[0]}); export where the run's data is"
        )
    images = [decode((root / name).read_bytes(), image_size, root / name) for name in names]
    return np.stack(images), [row["class"] for row in chosen]
