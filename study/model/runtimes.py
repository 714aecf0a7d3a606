"""A Keras model (the full classifier, or the frozen backbone) on an inference runtime:
TensorFlow (Keras itself), ONNX Runtime, or OpenVINO (fp32, or with the bf16 inference-precision
hint, which CPUs with AMX run natively).

Every runtime takes the same input, (N, size, size, 3) float32 images in [-1, 1], and returns
the model's output for them. ONNX Runtime runs Keras's ONNX export; OpenVINO converts that ONNX
file.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from study.errors import StudyError
from study.vocabulary import RUNTIMES

_OPENVINO_CONFIG = {
    "openvino": {"INFERENCE_PRECISION_HINT": "f32"},  # else AMX CPUs default to bf16
    "openvino-bf16": {"INFERENCE_PRECISION_HINT": "bf16"},
}

Predict = Callable[[np.ndarray], np.ndarray]


def check(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise StudyError(f"runtime {runtime!r} is unknown; choose one of {', '.join(RUNTIMES)}")


def package(runtime: str) -> str:
    """The Python package that runs `runtime`."""
    return "openvino" if runtime.startswith("openvino") else runtime


def export_onnx(model: keras.Model, path: Path) -> Path:
    """Keras's ONNX export of the model (tf2onnx under the TensorFlow backend)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _read_adapted_statistics_from_variables(model)
    model(np.zeros((1, *model.input_shape[1:]), np.float32))  # Keras exports called models only
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the exported signature
        model.export(str(path), format="onnx", verbose=False)
    return path


def _read_adapted_statistics_from_variables(model: keras.Model) -> None:
    """An adapted Normalization layer (the head's feature normalization) divides by constants
    it computed from its variables, and tf2onnx leaves such constants as graph inputs nobody
    feeds; the variables themselves, shape (features,), broadcast the same and are exported."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _read_adapted_statistics_from_variables(layer)
        elif isinstance(layer, keras.layers.Normalization) and hasattr(layer, "adapt_mean"):
            layer.mean, layer.variance = layer.adapt_mean, layer.adapt_variance


def export_openvino(onnx_file: Path, folder: Path) -> Path:
    """OpenVINO's IR (model.xml and model.bin) converted from the ONNX file."""
    import openvino

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.xml"
    openvino.save_model(openvino.convert_model(str(onnx_file)), str(path))
    return path


def predictor(model: keras.Model, runtime: str, folder: Path) -> Predict:
    """A function running `model` on `runtime`; exported files go to `folder`."""
    check(runtime)
    if runtime == "tensorflow":
        return lambda images: np.asarray(model.predict_on_batch(images))
    importlib.import_module(package(runtime))  # not installed: fail before the slow export
    onnx_file = export_onnx(model, folder / "model.onnx")
    if runtime == "onnxruntime":
        return onnx_predictor(onnx_file)
    return openvino_predictor(onnx_file, runtime)


def onnx_predictor(onnx_file: Path) -> Predict:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


def openvino_predictor(model_file: Path, runtime: str = "openvino") -> Predict:
    """OpenVINO on the CPU, from an ONNX file or an OpenVINO IR (.xml)."""
    import openvino

    compiled = openvino.Core().compile_model(str(model_file), "CPU", _OPENVINO_CONFIG[runtime])
    return lambda images: np.asarray(compiled(images)[0])
