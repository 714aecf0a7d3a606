"""The usual ends of a sweep, as `Sweep.run` callbacks: say its outcome, and keep its best
model. Each is called with the sweep and its summary once the parent run has ended; the
summary holds the sweep's runs, fetched once at its end."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from study.runs import best
from study.tuning.summary import SweepSummary

if TYPE_CHECKING:
    from study.tuning.sweep import Sweep


class SayOutcome:
    """Says the parent run's summary: trials completed and failed, why the search stopped
    early, and the best configuration with the YAML that reruns it."""

    def __init__(self, say: Callable[[str], None] = print):
        self.say = say

    def __call__(self, sweep: Sweep, summary: SweepSummary) -> None:
        config = sweep.config
        self.say(
            f"sweep {config.name}: {summary.completed} trials completed, {summary.failed} "
            f"failed (parent run {summary.parent_run_id})"
        )
        if summary.stop_reason:
            self.say(f"the search stopped before its planned trials: {summary.stop_reason}")
        if summary.best_values is not None:
            values = " ".join(f"{k}={v}" for k, v in summary.best_values.items()) or "(no knobs)"
            self.say(
                f"best configuration: {values}, mean {config.tuner.objective} "
                f"{summary.best_score:.4f}; rerun it with: study train {summary.best_config_path}"
            )


class KeepBest:
    """Logs and registers the model of the best configuration (`runs.best.keep_sweep_best`,
    which trains it again when its run kept no Keras file), and says which version it is."""

    def __init__(self, say: Callable[[str], None] = print):
        self.say = say

    def __call__(self, sweep: Sweep, summary: SweepSummary) -> None:
        if summary.best_values is None:
            return
        kept = best.keep_sweep_best(
            sweep.config,
            sweep.prepared,
            sweep.store,
            summary.runs,
            summary.experiment_id,
            summary.parent_run_id,
            summary.best_values,
            summary.best_score,
        )
        self.say(kept.describe())
