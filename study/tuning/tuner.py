"""Keras Tuner, configured from the study YAML: the search space, the oracle, and the tuner.

The oracles write their state files atomically and check them on reload (a kill at any moment
leaves a project that resumes: `keras_tuner_adapter.DurableStates`). The grid oracle walks the
grid the config names; the random and Bayesian oracles run every configuration they propose
once per seed.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from collections.abc import Callable

import keras_tuner as kt
from threadpoolctl import threadpool_limits

from study.config import StudyConfig, without_step_rounding
from study.errors import ConfigError
from study.tuning.keras_tuner_adapter import DurableStates, SharedStateTuner, TrialStatus

SEED = "seed"
RUNNING = TrialStatus.RUNNING
STOPPED = TrialStatus.STOPPED
IDLE_WAIT_S = 1.0  # between a worker's requests while the oracle waits for others' trials


def search_space(config: StudyConfig) -> kt.HyperParameters:
    """The config's `hyperparameters:` as Keras Tuner hyperparameters, plus the seed."""
    space = kt.HyperParameters()
    for key, spec in config.hyperparameters.items():
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
    grid = math.prod(len(grid_values(key, spec)) for key, spec in config.hyperparameters.items())
    return min(grid, tuner.max_configs or grid) * seeds


def grid(config: StudyConfig) -> list[dict]:
    """Every point of the config's grid, in the order a grid search runs them: the last
    hyperparameter varies fastest, and each configuration runs once per seed in a row."""
    keys = [*config.hyperparameters, SEED]
    axes = [grid_values(key, spec) for key, spec in config.hyperparameters.items()]
    return [
        dict(zip(keys, point, strict=True))
        for point in itertools.product(*axes, config.sweep_seeds)
    ]


def grid_values(key: str, spec) -> list:
    """The values a grid search gives hyperparameter `key`: a choice's values, or a range's
    steps from `min` to `max` (as Keras Tuner counts them: `log` multiplies `min` by the step,
    `reverse_log` mirrors that towards `max`)."""
    if spec.type == "choice":
        return list(spec.values)
    if spec.type == "fixed":
        return [spec.value]
    if spec.step is None:
        raise ConfigError(
            f"hyperparameters.{key}: grid search needs a step for a {spec.type} range "
            "(or use type: choice)"
        )
    if spec.sampling == "linear":
        count = math.floor((spec.max - spec.min) / spec.step + 1e-9) + 1
        values = [spec.min + index * spec.step for index in range(count)]
    else:
        if spec.step <= 1:
            raise ConfigError(
                f"hyperparameters.{key}: {spec.sampling} sampling multiplies by its step, so "
                f"the step must be above 1 (got {spec.step})"
            )
        count = math.floor(math.log(spec.max / spec.min) / math.log(spec.step) + 1e-9) + 1
        values = [spec.min * spec.step**index for index in range(count)]
        if spec.sampling == "reverse_log":
            values = [spec.max + spec.min - value for value in values]
    if spec.type == "int":
        return [int(round(value)) for value in values]
    return [without_step_rounding(value) for value in values]


class SeedRepeats:
    """Runs each configuration once per seed, as consecutive trials, and proposes
    configurations, not trials: the proposing oracle (`proposer`, one of Keras Tuner's, or none
    to draw at random) works on the search space without the seed and sees one point per
    configuration, scored by its mean over the seeds that finished. So `num_initial_points`
    counts configurations, and the seed is no dimension of the Bayesian model. A proposal of a
    configuration already tried falls back to an untried one at random; when none is left,
    the oracle stops and says why (`stop_reason`)."""

    proposer: type[kt.Oracle] | None = None
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
            key = _key(values)
            configurations[key] = values
            scores.setdefault(key, [])
            if trial.status == "COMPLETED" and trial.score is not None:
                scores[key].append(trial.score)
        seed = self.seed + 7919 * len(configurations)
        values = None
        if self.proposer is not None:
            values = self._ask_proposer(space, seed, scores, configurations)
        if values is None or _key(values) in configurations:
            values = _untried_at_random(space, seed, configurations, self.FALLBACK_DRAWS)
        if values is not None:
            return values
        self.stop_reason = (
            f"no untried configuration found in {self.FALLBACK_DRAWS} random draws after "
            f"{len(configurations)} configurations: the search space is used up"
        )
        return None

    def _ask_proposer(
        self,
        space: kt.HyperParameters,
        seed: int,
        scores: dict[str, list[float]],
        configurations: dict[str, dict],
    ) -> dict | None:
        """The proposer's next configuration, given one completed point per configuration
        that has a score (a running one, or one whose every seed failed, has nothing to
        teach it)."""
        proposer = self.proposer(
            objective=self.objective, hyperparameters=space, seed=seed, **self._proposer_options
        )
        for number, (key, found) in enumerate((k, f) for k, f in scores.items() if f):
            point = kt.engine.trial.Trial(space.copy(), trial_id=str(number), status="COMPLETED")
            point.hyperparameters.values.update(configurations[key])
            point.score = sum(found) / len(found)
            proposer.trials[point.trial_id] = point
        # One BLAS thread: the proposer's Gaussian process is small, and in a distributed
        # sweep the workers keep every core busy, where two threads took twice as long.
        with threadpool_limits(limits=1):
            response = proposer.populate_space("next")
        return rounded(response["values"]) if response["status"] == RUNNING else None

    def get_state(self):
        return {**super().get_state(), "seed_repeats": self._repeats}

    def set_state(self, state):
        super().set_state(state)
        self._repeats = state.get("seed_repeats", [])


def _untried_at_random(
    space: kt.HyperParameters, seed: int, tried: dict[str, dict], draws: int
) -> dict | None:
    """A configuration not in `tried`, drawn at random from `space` (None after `draws`
    draws that all were tried)."""
    rng = random.Random(seed)
    for _ in range(draws):
        values = rounded({hp.name: hp.random_sample(rng.randrange(2**31)) for hp in space.space})
        if _key(values) not in tried:
            return values
    return None


def _key(values: dict) -> str:
    """A configuration's identity, to tell whether it was tried."""
    return json.dumps(values, sort_keys=True, default=str)


class GridOracle(DurableStates, kt.Oracle):
    """Hands out the config's grid (`grid`) in order: the first point no trial has. The walk
    follows from the trials, so a reloaded grid search goes on where it stopped, and a worker
    asking for a trial gets the next point at once, whatever trials still run."""

    def __init__(self, points: list[dict], **kwargs):
        super().__init__(**kwargs)
        self.points = points

    def populate_space(self, trial_id):
        tried = {_key(trial_values(trial)) for trial in self.trials.values()}
        for values in self.points:
            if _key(values) not in tried:
                return {"status": RUNNING, "values": dict(values)}  # the trial's own copy
        return {"status": STOPPED, "values": None}


class RandomOracle(DurableStates, SeedRepeats, kt.Oracle):
    pass


class BayesianOracle(DurableStates, SeedRepeats, kt.Oracle):
    proposer = kt.oracles.BayesianOptimizationOracle


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
        return GridOracle(grid(config), max_trials=max_trials, **common)
    if tuner.oracle == "random":
        return RandomOracle(max_trials=max_trials, **common)
    return BayesianOracle(
        max_trials=max_trials, num_initial_points=tuner.num_initial_points, **common
    )


TrialRunner = Callable[[kt.engine.trial.Trial], dict[str, float]]


class StudyTuner(SharedStateTuner):
    """A Keras Tuner whose trials are whole training runs, handed to `run`."""

    def __init__(self, oracle: kt.Oracle, run: TrialRunner, on_end, **kwargs):
        self._run, self._on_end = run, on_end
        self._asked_in_vain = False  # the last request got no trial: the oracle said IDLE
        super().__init__(oracle, **kwargs)

    def pre_create_trial(self) -> None:
        # A worker whose oracle waits for others' trials to end (Hyperband between rounds)
        # asks again at once; don't spin.
        if self._asked_in_vain:
            time.sleep(IDLE_WAIT_S)
        self._asked_in_vain = True

    def on_trial_begin(self, trial) -> None:
        self._asked_in_vain = False
        super().on_trial_begin(trial)

    def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
        return self._run(trial)

    def on_trial_end(self, trial) -> None:
        super().on_trial_end(trial)
        self._on_end(trial)


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
