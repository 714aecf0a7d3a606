"""Keras Tuner sweeps: search space, oracles, the sweep and its workers."""
