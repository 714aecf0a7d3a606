"""A run's model logged as an MLflow model and registered in the Model Registry.

The version carries the score as tags, and the alias `champion` moves to it when no version
holds it yet or when the score beats the champion's on the same objective. Which run of a
sweep is kept (and retrained when it did not keep its Keras file) is `study.runs.best`'s.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from study.objective import Objective
from study.tracking import logged_model
from study.tracking.store import ModelVersion, Store

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

    def describe(self) -> str:
        """One line: which run is which version, and whether it is the champion."""
        holder = (
            "it is the champion" if self.is_champion else f"champion stays version {self.champion}"
        )
        return (
            f"model: run {self.run_id} registered as {self.name} version {self.version} "
            f"(score {self.score:.4f}; {holder}); use it as models:/{self.name}@champion"
        )


def register(
    store: Store,
    run_id: str,
    name: str,
    class_names: list[str],
    image_size: int,
    objective: str,
    score: float,
) -> Registered:
    """Log the run's `model.keras` as an MLflow model of images of `image_size` pixels into
    `class_names`, register it as a new version of `name`, and move the champion alias to it if
    it scores better than the champion."""
    with tempfile.TemporaryDirectory() as folder:
        keras_file = store.download_artifact(run_id, logged_model.KERAS_FILE, Path(folder))
        logged = logged_model.log(
            store.uri, run_id, keras_file, class_names, image_size, register_as=name
        )
    version = logged.version
    store.set_model_version_tags(
        name, version, {SCORE_TAG: repr(float(score)), OBJECTIVE_TAG: objective}
    )
    champion = store.model_version_by_alias(name, CHAMPION)
    if champion is None or _better(score, objective, champion):
        store.set_alias(name, CHAMPION, version)
        champion_version = version
    else:
        champion_version = champion.version
    return Registered(name, version, run_id, score, champion_version)


def registered_for(store: Store, name: str, tag: str, value: str) -> Registered | None:
    """The version of `name` registered with tag `tag` = `value` (a sweep's), if any."""
    version = store.find_model_version(name, tag, value)
    if version is None:
        return None
    held = store.model_version_by_alias(name, CHAMPION)
    return Registered(
        name,
        version.version,
        version.run_id,
        float(version.tags[SCORE_TAG]),
        held.version if held is not None else "none",
    )


def _better(score: float, objective: str, champion: ModelVersion) -> bool:
    """Whether `score` beats the champion's; a champion scored on another objective (or not
    at all) cannot be compared, and the newer model replaces it."""
    if champion.tags.get(OBJECTIVE_TAG) != objective or SCORE_TAG not in champion.tags:
        return True
    held = float(champion.tags[SCORE_TAG])
    return Objective.named(objective).better(score, held)


def has_keras_file(store: Store, run_id: str) -> bool:
    return logged_model.KERAS_FILE in store.artifact_names(run_id)
