"""The two training phases on a dataset, and the batches that feed them."""
