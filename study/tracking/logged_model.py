"""The trained classifier as an MLflow model: what `mlflow models serve`, `study predict` and
`study export` load.

The model is an `mlflow.pyfunc` wrapper around the Keras file of the full classifier
(`model.keras`, images in [-1, 1] in, class probabilities out), with the class names and the
image size as its model config. Its input is a DataFrame with a column `image` of base64-encoded
image files (JPEG, PNG, any format Pillow reads); its output has a column per class with that
class's probability and a column `predicted` with the most probable class. Images are decoded
and resized exactly as the training data was (`study.data.dataset.decode`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, Schema

from study.data.dataset import decode, to_model_input
from study.tracking.backends import no_progress_bar

KERAS_FILE = "model.keras"  # the run artifact `tracking.log_model` writes
IMAGE_COLUMN = "image"
PREDICTED_COLUMN = "predicted"
MODEL_NAME = "model"  # the logged MLflow model's name within its run
_BATCH = 32


class Classifier(mlflow.pyfunc.PythonModel):
    """Images to class probabilities with the study's Keras classifier."""

    def load_context(self, context) -> None:
        import keras

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        self.class_names: list[str] = list(context.model_config["class_names"])
        self.image_size: int = int(context.model_config["image_size"])

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, size, size, 3) uint8 images, as `study.data.dataset.decode` gives them, to
        (N, classes)."""
        return np.asarray(self.model.predict(to_model_input(images), batch_size=_BATCH, verbose=0))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        images = np.stack(
            [
                decode(base64.b64decode(text), self.image_size, Path(f"image {row}"))
                for row, text in enumerate(model_input[IMAGE_COLUMN])
            ]
        )
        return table(self.probabilities(images), self.class_names)


def table(probabilities: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """The predicted class and every class's probability, one row per image."""
    frame = pd.DataFrame(probabilities.astype(np.float64), columns=class_names)
    frame.insert(0, PREDICTED_COLUMN, [class_names[i] for i in probabilities.argmax(axis=1)])
    return frame


def signature(class_names: list[str]) -> ModelSignature:
    outputs = [ColSpec("string", PREDICTED_COLUMN)] + [ColSpec("double", n) for n in class_names]
    return ModelSignature(Schema([ColSpec("string", IMAGE_COLUMN)]), Schema(outputs))


@dataclass(frozen=True)
class LoggedModel:
    uri: str  # models:/<id> of the logged model
    run_id: str
    version: str | None  # the Model Registry version, when registered


def _use_store(tracking_uri: str) -> None:
    """Point MLflow's global tracking URI at the store: MLflow's model API (`Model.log`,
    `pyfunc.load_model`, `models.get_model_info`) takes no store of its own. The only place
    the study sets it; a process works with one store, so it is left set."""
    mlflow.set_tracking_uri(tracking_uri)


def log(
    tracking_uri: str,
    run_id: str,
    keras_file: Path,
    class_names: list[str],
    image_size: int,
    register_as: str | None = None,
) -> LoggedModel:
    """Log the Keras file as an MLflow model of the (finished) run `run_id`, without touching
    the run's status, optionally registered under `register_as`. Its signature names the input
    (a column `image` of base64 image files) and no input example is logged: MLflow would load
    the model and predict the example to check that it serves (about 10 s at every sweep's
    end); tests/test_serving.py serves logged models."""
    import keras
    import PIL
    import tensorflow as tf

    _use_store(tracking_uri)
    # The model belongs to its run's experiment: left to itself, MLflow puts it in the active
    # experiment (Default), whose artifact root a tracking server may have set to one only it
    # can reach (mlflow-artifacts:/).
    run = mlflow.get_run(run_id)
    model = mlflow.initialize_logged_model(
        name=MODEL_NAME,
        source_run_id=run_id,
        params=dict(run.data.params),
        experiment_id=run.info.experiment_id,
    )
    # MLflow asks for the input example left out on purpose, draws a progress bar as it copies
    # the model's files, and prints "Successfully registered model" and "Created version" to
    # standard error, where the caller says what it registered in one line of its own.
    with (
        warnings.catch_warnings(),
        no_progress_bar(),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.filterwarnings("ignore", message=".*An input example was not provided")
        info = Model.log(
            artifact_path=None,
            name=MODEL_NAME,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=model.model_id,
            python_model=str(Path(__file__).with_name("served_model.py")),
            artifacts={"keras_model": str(keras_file)},
            model_config={"class_names": list(class_names), "image_size": int(image_size)},
            signature=signature(class_names),
            # Listed rather than inferred: inference loads the model in a subprocess, which is slow.
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"tensorflow=={tf.__version__}",
                f"keras=={keras.__version__}",
                f"pillow=={PIL.__version__}",
                f"numpy=={np.__version__}",
                f"pandas=={pd.__version__}",
                "steel-defect-study",
            ],
            registered_model_name=register_as,
        )
    version = info.registered_model_version
    return LoggedModel(info.model_uri, run_id, None if version is None else str(version))


def load(tracking_uri: str, model_uri: str) -> Classifier:
    """The classifier behind an MLflow model URI (runs:/<id>/model, models:/NAME@champion)."""
    from mlflow.exceptions import MlflowException

    from study.errors import ModelError

    _use_store(tracking_uri)
    try:
        loaded = mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(
            f"model {model_uri}: cannot be loaded ({first}); give runs:/<run id>/model or "
            "models:/<study name>@champion of a model that `study sweep` or `study train "
            "--register` logged"
        ) from None
    classifier = loaded.unwrap_python_model()
    if not isinstance(classifier, Classifier):
        raise ModelError(f"model {model_uri}: not a model this tool logged (no image classifier)")
    return classifier


def source_run(tracking_uri: str, model_uri: str) -> str:
    """The id of the run that logged the model at `model_uri`."""
    _use_store(tracking_uri)
    return mlflow.models.get_model_info(model_uri).run_id
