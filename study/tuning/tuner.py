"""Keras Tuner, configured from the study YAML: the search space, the oracle, and the tuner.

The oracles are Keras Tuner's own, with two additions: their state files are written
atomically and checked on reload (a kill at any moment leaves a project that resumes), and
the random and Bayesian oracles run every configuration they propose once per seed.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable

import keras_tuner as kt
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.tuners.gridsearch import LinkedList

from study.config import StudyConfig, without_step_rounding
from study.errors import ConfigError
from study.files import atomic_write_text

SEED = "seed"
RUNNING = trial_module.TrialStatus.RUNNING
STOPPED = trial_module.TrialStatus.STOPPED
IDLE = trial_module.TrialStatus.IDLE


def search_space(config: StudyConfig) -> kt.HyperParameters:
    """The config's `hyperparameters:` as Keras Tuner hyperparameters, plus the seed."""
    space = kt.HyperParameters()
    for key, spec in config.hyperparameters.items():
        if config.tuner.oracle == "grid" and spec.type in ("int", "float") and spec.step is None:
            raise ConfigError(
                f"hyperparameters.{key}: grid search needs a step for a {spec.type} range "
                "(or use type: choice)"
            )
        try:
            if spec.type == "choice":
                space.Choice(key, spec.values)
            elif spec.type == "int":
                space.Int(key, spec.min, spec.max, step=spec.step, sampling=spec.sampling)
            elif spec.type == "float":
                # Keras Tuner counts a range's steps by floor division, which loses the last
                # one to rounding (0.6 // 0.05 == 11.0): a hair more reaches `max` as written.
                top = (
                    spec.max + 1e-9 * spec.step
                    if spec.step and spec.sampling == "linear"
                    else spec.max
                )
                space.Float(key, spec.min, top, step=spec.step, sampling=spec.sampling)
            else:
                space.Fixed(key, spec.value)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"hyperparameters.{key}: {error}") from None
    space.Choice(SEED, config.sweep_seeds)
    return space


def planned_trials(config: StudyConfig) -> int | None:
    """How many trials the sweep will run, when that is known in advance."""
    tuner = config.tuner
    if tuner.oracle == "hyperband":
        return None
    seeds = len(config.sweep_seeds)
    if tuner.oracle != "grid":
        return tuner.max_configs * seeds
    grid = math.prod(_grid_size(spec) for spec in config.hyperparameters.values())
    return min(grid, tuner.max_configs or grid) * seeds


def _grid_size(spec) -> int:
    if spec.type == "choice":
        return len(spec.values)
    if spec.type == "fixed":
        return 1
    if spec.sampling == "linear":
        return math.floor((spec.max - spec.min) / spec.step + 1e-9) + 1
    return math.floor(math.log(spec.max / spec.min) / math.log(spec.step) + 1e-9) + 1


class DurableStates:
    """Atomic state files, and a reload that repairs what a kill can leave behind."""

    def save(self) -> None:
        atomic_write_text(self._get_oracle_fname(), json.dumps(self.get_state()))

    def _save_trial(self, trial) -> None:
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        atomic_write_text(path, json.dumps(trial.get_state()))

    def reload(self) -> None:
        super().reload()
        # A kill between writing a new trial's file and the oracle's leaves a trial the oracle
        # never handed out; forget it, and its id is handed out again.
        for trial_id in set(self.trials) - set(self.start_order):
            del self.trials[trial_id]
        # Keras Tuner records an ended trial as ongoing until the next trial starts; a kill in
        # between would make it run the ended trial again.
        self._retry_queue = [t for t in self._retry_queue if t not in self.end_order]


class SeedRepeats:
    """Runs each configuration once per seed, as consecutive trials, and proposes
    configurations, not trials: the proposing oracle (`proposer`, one of Keras Tuner's) works on
    the search space without the seed and sees one point per configuration, scored by its mean
    over the seeds that finished. So `num_initial_points` counts configurations, and the seed is
    no dimension of the Bayesian model. A proposal of a configuration already tried falls back to
    an untried one at random; when none is left, the oracle stops and says why (`stop_reason`)."""

    proposer: type[kt.Oracle]
    FALLBACK_DRAWS = 1000

    def __init__(self, *args, **kwargs):
        self._proposer_options = {
            key: kwargs.pop(key) for key in ("num_initial_points",) if key in kwargs
        }
        super().__init__(*args, **kwargs)
        self._repeats: list[dict] = []
        self.stop_reason: str | None = None

    def populate_space(self, trial_id):
        if self._repeats:
            return {"status": RUNNING, "values": self._repeats.pop(0)}
        values = self._propose()
        if values is None:
            return {"status": STOPPED, "values": None}
        repeats = [{**values, SEED: seed} for seed in self._seeds()]
        self._repeats = repeats[1:]
        return {"status": RUNNING, "values": repeats[0]}

    def _seeds(self) -> list:
        return next(hp.values for hp in self.hyperparameters.space if hp.name == SEED)

    def _propose(self) -> dict | None:
        space = kt.HyperParameters()
        for hp in self.hyperparameters.space:
            if hp.name != SEED:
                space.merge([hp])
        scores: dict[str, list[float]] = {}
        configurations: dict[str, dict] = {}
        for trial in self.trials.values():
            values = configuration(trial)
            key = self._compute_values_hash(values)
            configurations[key] = values
            scores.setdefault(key, [])
            if trial.status == "COMPLETED" and trial.score is not None:
                scores[key].append(trial.score)
        proposer = self.proposer(
            objective=self.objective,
            hyperparameters=space,
            seed=self.seed + 7919 * len(configurations),
            **self._proposer_options,
        )
        for number, (key, found) in enumerate(scores.items()):
            proposer._tried_so_far.add(key)
            if not found:  # running, or every seed failed: tried, but nothing to learn
                continue
            point = trial_module.Trial(space.copy(), trial_id=str(number), status="COMPLETED")
            point.hyperparameters.values.update(configurations[key])
            point.score = sum(found) / len(found)
            proposer.trials[point.trial_id] = point
        response = proposer.populate_space("next")
        values = response["values"] if response["status"] == RUNNING else None
        if values is None or proposer._duplicate(values):
            proposer._max_collisions = self.FALLBACK_DRAWS
            values = proposer._random_values()
        if values is not None:
            return rounded(values)
        self.stop_reason = (
            f"no untried configuration found in {self.FALLBACK_DRAWS} random draws after "
            f"{len(configurations)} configurations: the search space is used up"
        )
        return None

    def get_state(self):
        return {**super().get_state(), "seed_repeats": self._repeats}

    def set_state(self, state):
        super().set_state(state)
        self._repeats = state.get("seed_repeats", [])


class GridOracle(DurableStates, kt.oracles.GridSearchOracle):
    """Keras Tuner's grid oracle, with two repairs.

    It keeps its walk through the grid in memory only, so a reloaded grid search stops early
    or fails; the walk follows from the trials, so it is rebuilt. And it proposes the next
    combination only when a trial ends, in case that trial added hyperparameters: with several
    workers, all but one then wait. A study's search space is fixed, so nothing can be added:
    a worker asking for a trial gets the combination after the last one handed out."""

    def _grid_order(self):
        return functools.cmp_to_key(
            lambda a, b: self._compare(
                self.trials[a].hyperparameters.values, self.trials[b].hyperparameters.values
            )
        )

    def populate_space(self, trial_id):
        response = super().populate_space(trial_id)
        if response["status"] != IDLE:
            return response
        last = max(self.start_order, key=self._grid_order())
        values = self._get_next_combination(self.trials[last].hyperparameters.values)
        if values is None:  # the grid is done once the running trials end
            return response
        self._ordered_ids.insert(trial_id, last)
        return {"status": RUNNING, "values": values}

    def set_state(self, state):
        super().set_state(state)
        ordered = sorted(self.start_order, key=self._grid_order())
        self._ordered_ids = LinkedList()
        for trial_id in ordered:
            self._ordered_ids.insert(trial_id)
        # Every ended trial may have a successor still to create; the oracle skips the ones
        # that already exist.
        self._populate_next = [t for t in ordered if t in self.end_order]


class RoundedValuesHash:
    """Hashes a configuration with a float step's rounding error dropped, so that a proposal of
    0.15000000000000002 counts as the 0.15 already tried: Keras Tuner's proposers compute
    values as min + k * step and would otherwise propose a tried configuration again."""

    def _compute_values_hash(self, values):
        return super()._compute_values_hash(rounded(values))


class RandomProposer(RoundedValuesHash, kt.oracles.RandomSearchOracle):
    pass


class BayesianProposer(RoundedValuesHash, kt.oracles.BayesianOptimizationOracle):
    pass


class RandomOracle(DurableStates, SeedRepeats, kt.Oracle):
    proposer = RandomProposer


class BayesianOracle(DurableStates, SeedRepeats, kt.Oracle):
    proposer = BayesianProposer


class HyperbandOracle(DurableStates, kt.oracles.HyperbandOracle):
    pass


def make_oracle(config: StudyConfig) -> kt.Oracle:
    tuner = config.tuner
    common = {
        "objective": kt.Objective(tuner.objective, tuner.direction),
        "hyperparameters": search_space(config),
        "seed": tuner.seed,
        "allow_new_entries": False,
        "tune_new_entries": False,
        "max_retries_per_trial": 0,
        # A failed trial is recorded and the sweep goes on, however many fail in a row.
        "max_consecutive_failed_trials": None,
    }
    if tuner.oracle == "hyperband":
        return HyperbandOracle(
            max_epochs=config.frozen.epochs,
            factor=tuner.factor,
            hyperband_iterations=tuner.hyperband_iterations,
            **common,
        )
    max_trials = planned_trials(config)
    if tuner.oracle == "grid":
        return GridOracle(max_trials=max_trials, **common)
    if tuner.oracle == "random":
        return RandomOracle(max_trials=max_trials, **common)
    return BayesianOracle(
        max_trials=max_trials, num_initial_points=tuner.num_initial_points, **common
    )


TrialRunner = Callable[[kt.engine.trial.Trial], dict[str, float]]


class StudyTuner(kt.engine.base_tuner.BaseTuner):
    """A Keras Tuner whose trials are whole training runs, handed to `run`."""

    def __init__(self, oracle: kt.Oracle, run: TrialRunner, on_end, **kwargs):
        self._run, self._on_end = run, on_end
        super().__init__(oracle, **kwargs)
        if self._is_worker():
            ask = self.oracle.create_trial

            def create_trial(tuner_id):
                trial = ask(tuner_id)
                if trial.status == IDLE:  # others' trials must end first; don't spin
                    time.sleep(1.0)
                return trial

            self.oracle.create_trial = create_trial

    def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
        return self._run(trial)

    def on_trial_end(self, trial) -> None:
        super().on_trial_end(trial)
        self._on_end(trial)

    def save(self) -> None:
        if not self._is_worker():
            self.oracle.save()
        atomic_write_text(self._get_tuner_fname(), json.dumps(self.get_state()))

    def _get_tuner_fname(self) -> str:
        # Keras Tuner reloads the oracle only from the tuner's own file, named by its tuner id:
        # the chief and a sweep in one process share one, so either resumes the other's sweep.
        if self._is_worker():
            return super()._get_tuner_fname()
        return os.path.join(str(self.project_dir), "tuner0.json")


def configuration(trial) -> dict:
    """A trial's values without the seed: what its runs over several seeds share."""
    return {key: value for key, value in trial_values(trial).items() if key != SEED}


def trial_values(trial) -> dict:
    """The config overrides of a trial: its hyperparameters without Keras Tuner's own, a float
    step's rounding error dropped."""
    values = trial.hyperparameters.values
    return rounded({k: v for k, v in values.items() if not k.startswith("tuner/")})


def rounded(values: dict) -> dict:
    """`values` with a float step's rounding error dropped (0.15, not 0.15000000000000002)."""
    return {
        key: without_step_rounding(value) if isinstance(value, float) else value
        for key, value in values.items()
    }
