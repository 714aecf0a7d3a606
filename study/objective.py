"""A metric a sweep optimises or early stopping watches: `<split>_<metric>` as runs log it, and
which way is better."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Metrics a sweep can optimise, as logged on each run (see study.training.evaluation.SPLIT_METRICS).
OBJECTIVES = {
    "val_accuracy": "max",
    "val_loss": "min",
    "val_error_rate": "min",
    "val_precision_macro": "max",
    "val_recall_macro": "max",
    "val_f1_macro": "max",
    "val_auc_ovr_macro": "max",
}


@dataclass(frozen=True)
class Objective:
    name: str
    split: str
    metric: str
    direction: Literal["max", "min"]

    @classmethod
    def named(cls, name: str) -> Objective:
        """The objective `name` (one of OBJECTIVES): `val_accuracy` is accuracy on val, higher
        is better."""
        split, _, metric = name.partition("_")
        return cls(name, split, metric, OBJECTIVES[name])

    @property
    def sign(self) -> int:
        """+1 when higher is better, -1 when lower is: a score times the sign grows as it gets
        better."""
        return 1 if self.direction == "max" else -1

    def better(self, score: float, than: float) -> bool:
        return score > than if self.direction == "max" else score < than
