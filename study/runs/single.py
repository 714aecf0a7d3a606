"""One configuration trained as one MLflow run, outside any sweep, and registered on request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from study.config import StudyConfig
from study.runs import session, tracked
from study.tracking import registry
from study.tracking.store import Store


def train(
    config: StudyConfig,
    store: Store,
    state_dir: Path,
    register: str | None = None,
    say: Callable[[str], None] = print,
    progress: bool = True,
) -> registry.Registered | None:
    """Train `config` as a run of its experiment, saying the data, the weights and the scores;
    with `register`, log its model and register it under that name (its version returned)."""
    if register:  # registering needs the run's Keras file
        config = config.with_values({"tracking.log_model": True})
    say(f"study {config.name}: tracking in {store.display_uri}")
    prepared = session.prepare(config, store, state_dir, progress=progress)
    dataset = prepared.dataset
    say(
        f"data: {len(dataset)} images, {len(dataset.class_names)} classes from {dataset.root}"
        + (f" ({len(dataset.skipped)} unreadable files skipped)" if dataset.skipped else "")
    )
    for notice in dataset.notices:
        say(f"note: {notice}")
    say(f"weights: {prepared.weights_for(config).label}")
    experiment_id = store.experiment(config.name, config.description)
    run_id, result = tracked.execute(
        config,
        prepared,
        store,
        experiment_id,
        run_name=f"{config.name}-seed{config.seed}",
        tags={"run_type": "train"},
        verbose=2 if progress else 0,
    )
    final = result.evaluations[result.final_stage]
    scores = ", ".join(
        f"{name} accuracy {ev.metrics['accuracy']:.4f}" for name, ev in final.items()
    )
    times = ", ".join(f"{p.name} {p.wall_time_s:.1f} s" for p in result.phases)
    say(f"run {run_id} FINISHED: {scores} ({times})")
    if not register:
        return None
    objective = config.tuner.objective
    split, _, name = objective.partition("_")
    return registry.register(
        store,
        run_id,
        register,
        dataset.class_names,
        dataset.images.shape[1],
        objective,
        final[split].metrics[name],
    )
