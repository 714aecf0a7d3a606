"""Using a logged model: prediction, export, inference timing."""
