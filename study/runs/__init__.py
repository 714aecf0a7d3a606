"""Runs: the layer between training and tuning. A prepared session (`session`), one tracked
training run (`tracked`), and the retraining and registering of a sweep's best (`best`)."""
