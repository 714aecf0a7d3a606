"""Keeping the best model: logged as an MLflow model and registered in the Model Registry.

After a sweep, the run of median objective among its best configuration's seeds (the run that
stands for the configuration in the report) is logged as an MLflow model and registered under
the study's name; when that run did not keep its Keras file (`tracking.log_model: false`), its
configuration and seed are trained again, with the model kept, as a run of type `model`
(outside the report's scope). The version carries the sweep's score as tags, and the alias
`champion` moves to it when no version holds it yet or when the score beats the champion's on
the same objective.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from study.config import OBJECTIVES, StudyConfig
from study.tracking import logged_model, outcome, runs
from study.tracking.store import Store

CHAMPION = "champion"
SCORE_TAG, OBJECTIVE_TAG = "score", "objective"
SWEEP_TAG = "sweep"  # the parent run of the sweep whose best model a version is


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    run_id: str
    score: float
    champion: str  # the version the alias names now

    @property
    def is_champion(self) -> bool:
        return self.champion == self.version


def keep_sweep_best(
    config: StudyConfig,
    prepared: runs.Prepared,
    store: Store,
    experiment_id: str,
    parent_run_id: str,
    best_values: dict,
    best_score: float,
) -> Registered:
    """Log and register the model of the sweep's best configuration (its median-seed run), both
    chosen by `outcome` over the sweep's runs, as the sweep's summary chose `best_values`; a
    sweep that registered its model already (resumed after it ended) gives that version."""
    done = store.client.search_model_versions(
        f"name = '{config.name}' and tags.{SWEEP_TAG} = '{parent_run_id}'"
    )
    if done:
        version = done[0]
        held = _champion(store, config.name)
        return Registered(
            config.name,
            str(version.version),
            version.run_id,
            float(version.tags[SCORE_TAG]),
            str(held.version) if held is not None else "none",
        )
    best = config.with_values(best_values)
    counted = outcome.counted_runs(outcome.fetch_runs(store, experiment_id), parent_run_id)
    objective = config.tuner.objective
    label = outcome.best_configuration(counted.runs, objective)
    run = outcome.median_run(counted.runs[counted.runs["configuration"] == label], objective)
    run_id, seed = run["run_id"], int(run["seed"])
    if not _has_keras_file(store, run_id):
        retrain = best.with_values({"seed": seed, "tracking.log_model": True})
        run_id, _ = runs.execute(
            retrain,
            prepared,
            store,
            experiment_id,
            run_name=f"{config.name}-best-seed{seed}",
            tags={"run_type": "model", "seed": str(seed), "source_sweep": parent_run_id},
        )
    registered = register(store, run_id, config.name, prepared, config.tuner.objective, best_score)
    store.client.set_model_version_tag(config.name, registered.version, SWEEP_TAG, parent_run_id)
    return registered


def register(
    store: Store,
    run_id: str,
    name: str,
    prepared: runs.Prepared,
    objective: str,
    score: float,
) -> Registered:
    """Log the run's `model.keras` as an MLflow model, register it as a new version of `name`,
    and move the champion alias to it if it scores better than the champion."""
    dataset = prepared.dataset
    client = store.client
    with tempfile.TemporaryDirectory() as folder:
        keras_file = Path(client.download_artifacts(run_id, logged_model.KERAS_FILE, folder))
        logged = logged_model.log(
            store.uri,
            run_id,
            keras_file,
            dataset.class_names,
            dataset.images.shape[1],
            register_as=name,
        )
    version = logged.version
    client.set_model_version_tag(name, version, SCORE_TAG, repr(float(score)))
    client.set_model_version_tag(name, version, OBJECTIVE_TAG, objective)
    champion = _champion(store, name)
    if champion is None or _better(score, objective, champion):
        client.set_registered_model_alias(name, CHAMPION, version)
        champion_version = version
    else:
        champion_version = str(champion.version)
    return Registered(name, version, run_id, score, champion_version)


def _champion(store: Store, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return store.client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _better(score: float, objective: str, champion) -> bool:
    """Whether `score` beats the champion's; a champion scored on another objective (or not
    at all) cannot be compared, and the newer model replaces it."""
    if champion.tags.get(OBJECTIVE_TAG) != objective or SCORE_TAG not in champion.tags:
        return True
    held = float(champion.tags[SCORE_TAG])
    return score > held if OBJECTIVES[objective] == "max" else score < held


def _has_keras_file(store: Store, run_id: str) -> bool:
    return any(item.path == logged_model.KERAS_FILE for item in store.client.list_artifacts(run_id))
