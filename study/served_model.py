"""The logged classifier's entry point for MLflow (a model from code): MLflow runs this file when
it loads the model, so no pickled object is stored with it."""

import mlflow

from study.serving import Classifier

mlflow.models.set_model(Classifier())
