"""A sweep's durable state: the parent run that stands for it in MLflow, and `sweep.json` beside
the Keras Tuner project in `<state_dir>/tuner/<study>/`, which names that run so that running
the same sweep again resumes it.

A sweep resumes only under the same identity (config, data, weights) and store; a parent run
that a kill left without its `sweep.json` (an orphan) is closed when the next one is created.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

from study.config import StudyConfig
from study.errors import SweepStateError
from study.files import atomic_write_text
from study.runs import session, tracked
from study.tracking.store import NOTE_TAG, Store

STATE_FILE = "sweep.json"
STATE_TAG = "sweep_state"  # host:folder of the sweep's state, on its parent run


def identity(config: StudyConfig, prepared: session.Prepared) -> str:
    """What must not change while a sweep resumes: the config, the data, the weights."""
    body = config.model_dump()
    body["data"]["root"] = prepared.dataset.fingerprint
    body["model"]["weights"] = prepared.weights.identity
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def sweep_note(config: StudyConfig, planned: int | None) -> str:
    """The parent run's description of the search: the study, its space, seeds and objective."""
    space = "; ".join(
        f"{key}: {spec.model_dump(exclude={'type'})}"
        for key, spec in config.hyperparameters.items()
    )
    trials = f"{planned} trials" if planned else "trials"
    return (
        f"{config.description}\n\n{config.tuner.oracle.capitalize()} search over "
        f"{space or 'nothing'}; each configuration once per seed {config.sweep_seeds}; "
        f"{trials}, chosen on {config.tuner.objective}."
    ).strip()


class SweepState:
    """The state folder of one study's sweep (`project`) and the parent run it names."""

    def __init__(
        self, config: StudyConfig, store: Store, project: Path, say: Callable[[str], None]
    ):
        self.config, self.store, self.project, self.say = config, store, project, say

    def parent_run(
        self, experiment_id: str, identity: str, prepared: session.Prepared, planned: int | None
    ) -> str:
        """The parent run of the saved sweep, reopened, or a new one with its state saved;
        SweepStateError when the saved state belongs to another sweep."""
        state_path = self.project / STATE_FILE
        if state_path.is_file():
            state = json.loads(state_path.read_text())
            if state["identity"] != identity or state["tracking_uri"] != self.store.display_uri:
                raise SweepStateError(
                    f"the sweep state in {self.project} belongs to another config, data set or "
                    f"store ({state['tracking_uri']}); start a new sweep (`fresh`) or keep its "
                    "state in another folder (`state_dir`)",
                    settings=("fresh", "state_dir"),
                )
            run_id = state["parent_run_id"]
            if self.store.get_run(run_id).deleted:
                raise SweepStateError(
                    f"the sweep's parent run {run_id} was deleted; start a new sweep (`fresh`)",
                    settings=("fresh",),
                )
            self.store.reopen_run(run_id)
            self.say(f"resuming sweep {self.config.name} (parent run {run_id})")
            return run_id
        if self.project.exists():  # a Keras Tuner project without a parent run: start over
            shutil.rmtree(self.project)
        orphans = self._orphan_parents(experiment_id)
        run_id = self.store.create_run(
            experiment_id,
            f"{self.config.name} · {self.config.tuner.oracle} sweep",
            {"run_type": "sweep", "sweep_identity": identity, STATE_TAG: self._label()},
        )
        for orphan in orphans:
            self.store.end_run(
                orphan,
                "KILLED",
                f"the sweep was stopped before its state was saved; run {run_id} replaces it",
            )
        self._describe(run_id, prepared, planned)
        self.project.mkdir(parents=True, exist_ok=True)
        state = {
            "identity": identity,
            "tracking_uri": self.store.display_uri,
            "experiment_id": experiment_id,
            "parent_run_id": run_id,
        }
        atomic_write_text(state_path, json.dumps(state, indent=2))
        self.say(f"new sweep {self.config.name} (parent run {run_id})")
        return run_id

    def abandon(self) -> None:
        """Forget the saved sweep: its parent run, if still RUNNING, ends KILLED."""
        state_path = self.project / STATE_FILE
        if state_path.is_file():
            old = json.loads(state_path.read_text())["parent_run_id"]
            try:
                if self.store.get_run(old).status == "RUNNING":
                    self.store.end_run(old, "KILLED", "abandoned: a fresh sweep was started")
            except Exception:  # noqa: BLE001 - the old run may live in another store
                pass
        shutil.rmtree(self.project, ignore_errors=True)

    def _describe(self, run_id: str, prepared: session.Prepared, planned: int | None) -> None:
        config = self.config
        space = {key: spec.model_dump() for key, spec in config.hyperparameters.items()}
        self.store.log(
            run_id,
            params={
                **config.flat(),
                **{f"tuner.{k}": v for k, v in config.tuner.model_dump().items()},
                **self._declared_question(),
                "seeds": config.sweep_seeds,
                "hyperparameters": json.dumps(space, sort_keys=True),
                "planned_trials": planned,
            },
            tags={**tracked.describe(prepared), NOTE_TAG: sweep_note(config, planned)},
        )
        self.store.log_text(run_id, config.to_yaml(), "search_space.yaml")

    def _declared_question(self) -> dict[str, object]:
        """The study's question as `question.*` params, when its YAML declared one: a sweep
        that declared none logs none, and its report says it answers the default."""
        if "question" not in self.config.model_fields_set:
            return {}
        return {f"question.{k}": v for k, v in self.config.question.model_dump().items()}

    def _label(self) -> str:
        return f"{socket.gethostname()}:{self.project.resolve()}"

    def _orphan_parents(self, experiment_id: str) -> list[str]:
        """Parent runs of this state folder that a kill stopped between creating the run and
        saving sweep.json: still RUNNING, never resumable, and without trials."""
        return self.store.orphaned_runs(experiment_id, "sweep", {STATE_TAG: self._label()})


def find_parent(store: Store, experiment_id: str, identity: str, wait_s: float = 600.0) -> str:
    """The running parent run of the sweep of `identity`, which its chief creates."""
    deadline = time.monotonic() + wait_s
    while True:
        found = store.latest_running_run(experiment_id, run_type="sweep", sweep_identity=identity)
        if found:
            return found
        if time.monotonic() > deadline:
            raise SweepStateError(
                f"no running sweep of this config in {store.display_uri} after "
                f"{wait_s:.0f} s: start the chief first, with the same config, data and store"
            )
        time.sleep(2)
