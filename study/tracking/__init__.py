"""MLflow: the store, a trial's run, the registry, the tracking server."""
