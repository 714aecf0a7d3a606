"""Names the schema validates and the pipeline's layers share: the splits, the knobs, NASNet's
cells, the inference runtimes and the question's metrics."""

from __future__ import annotations

from typing import Literal, get_args

SPLITS = ("train", "val", "test")  # the split names, as runs log them: `test_accuracy`

# Config keys that the paper's design varies; each run logs them under these short names too.
KNOBS = {
    "activation": "model.activation",
    "dropout": "model.dropout",
    "head_width": "model.head_width",
    "optimizer": "fine_tune.optimizer",
    "decay_rate": "fine_tune.decay_rate",
}
# Knobs of a training phase: their short names follow the phase that trains last (fine-tuning
# when it runs, else the frozen phase), so that a run's `optimizer` is the one that acted.
PHASE_KNOBS = ("optimizer", "decay_rate")


# NASNet-Mobile's cells in the order they run (Keras's block ids). Each takes the outputs of the
# two cells before it (the stem's first cell: of the stem convolution), so a cut before a cell
# is crossed by at most two tensors.
CELLS = (
    "stem_1",
    "stem_2",
    *(f"normal_{i}" for i in range(4)),
    "reduce_4",
    *(f"normal_{i}" for i in range(5, 9)),
    "reduce_8",
    *(f"normal_{i}" for i in range(9, 13)),
)


# The inference runtimes (study.model.runtimes), for the feature cache among others.
Runtime = Literal["tensorflow", "onnxruntime", "openvino", "openvino-bf16"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)


# What a study's report compares on: each is an error in percent (lower is better) on the test
# split, from the metrics every run logs.
QUESTION_METRICS = {
    "error_rate": "error rate",
    "balanced_error_rate": "balanced error rate (100 - macro recall)",
    "macro_f1": "100 - macro F1",
}
FAMILIES = ("reference", "all_pairs", "best")
