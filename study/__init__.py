"""Hyperparameter studies of a NASNet-Mobile steel-defect classifier, tracked in MLflow."""

import logging
import os

__version__ = "0.1.0"

# TensorFlow, Keras and MLflow print start-up chatter, retracing notes and run links in every
# process (workers included) unless told otherwise; a user can still raise these levels.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
for _name in ("tensorflow", "absl", "alembic", "keras_tuner"):
    logging.getLogger(_name).setLevel(logging.ERROR)
