"""Hyperparameter studies of a NASNet-Mobile steel-defect classifier, tracked in MLflow."""

import os

__version__ = "0.1.0"

# TensorFlow prints start-up chatter on import unless told otherwise; the user can still raise it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
