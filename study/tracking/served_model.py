"""The logged classifier's entry point for MLflow (a model from code): MLflow runs this file when
it loads the model, so no pickled object is stored with it."""

import mlflow

from study.tracking.logged_model import Classifier

mlflow.models.set_model(Classifier())
