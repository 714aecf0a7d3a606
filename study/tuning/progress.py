"""A sweep's progress, said one line per ended trial: its outcome, its values, how long it took,
and the time elapsed and (when the number of trials is planned) left."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from study.tuning import tuner
from study.tuning.trials import last_line


class Progress:
    """Counts ended trials against `planned` (None: unknown, as a worker's share is) from
    `ended` already ended ones, and says each one's line."""

    def __init__(self, objective: str, planned: int | None, ended: int, say: Callable[[str], None]):
        self.objective, self.planned, self.ended, self.say = objective, planned, ended, say
        self.started = time.monotonic()
        self.durations: list[float] = []
        self._trial_started: dict[str, float] = {}

    def trial_started(self, trial_id: str) -> None:
        self._trial_started[trial_id] = time.monotonic()

    def trial_ended(self, trial, scores: dict[str, dict[str, float]]) -> None:
        """Say the line of `trial`, scored (when COMPLETED) in `scores` by trial id."""
        took = time.monotonic() - self._trial_started.get(trial.trial_id, time.monotonic())
        self.durations.append(took)
        self.ended += 1
        if trial.status == "COMPLETED":
            outcome = f"{self.objective} {scores[trial.trial_id][self.objective]:.4f}"
        else:
            outcome = f"FAILED: {last_line(trial.message)}"
        values = " ".join(f"{k}={v}" for k, v in tuner.trial_values(trial).items())
        elapsed = time.monotonic() - self.started
        total = f"/{self.planned}" if self.planned else ""
        eta = ""
        if self.planned:
            remaining = max(self.planned - self.ended, 0)
            eta = f", ETA {_clock(remaining * float(np.mean(self.durations)))}"
        self.say(
            f"[{self.ended:>3}{total}] trial {trial.trial_id} {outcome} | {values} | "
            f"{took:.1f} s | elapsed {_clock(elapsed)}{eta}"
        )


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
