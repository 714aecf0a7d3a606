"""Keeping a sweep's best model: logged as an MLflow model and registered in the Model Registry.

After a sweep, the run of median objective among its best configuration's seeds (the run that
stands for the configuration in the report) is logged as an MLflow model and registered under
the study's name (`study.tracking.registry`); when that run did not keep its Keras file
(`tracking.log_model: false`), its configuration and seed are trained again, with the model
kept, as a run of type `model` (outside the report's scope).
"""

from __future__ import annotations

import pandas as pd

from study.config import StudyConfig
from study.runs import tracked
from study.runs.session import Prepared
from study.tracking import outcome, registry
from study.tracking.store import Store


def keep_sweep_best(
    config: StudyConfig,
    prepared: Prepared,
    store: Store,
    runs: pd.DataFrame,
    experiment_id: str,
    parent_run_id: str,
    best_values: dict,
    best_score: float,
) -> registry.Registered:
    """Log and register the model of the sweep's best configuration (its median-seed run), both
    chosen by `outcome` over the sweep's runs (`runs`: the experiment's, as the sweep's end
    fetched them), as the sweep's summary chose `best_values`; a sweep that registered its
    model already (resumed after it ended) gives that version. A retrained model's run goes to
    `experiment_id`."""
    done = registry.registered_for(store, config.name, registry.SWEEP_TAG, parent_run_id)
    if done is not None:
        return done
    best = config.with_values(best_values)
    counted = outcome.counted_runs(runs, parent_run_id)
    objective = config.tuner.objective
    label = outcome.best_configuration(counted.runs, objective)
    run = outcome.median_run(counted.runs[counted.runs["configuration"] == label], objective)
    run_id, seed = run["run_id"], int(run["seed"])
    if not registry.has_keras_file(store, run_id):
        retrain = best.with_values({"seed": seed, "tracking.log_model": True})
        run_id, _ = tracked.execute(
            retrain,
            prepared,
            store,
            experiment_id,
            run_name=f"{config.name}-best-seed{seed}",
            tags={"run_type": "model", "seed": str(seed), "source_sweep": parent_run_id},
        )
    dataset = prepared.dataset
    registered = registry.register(
        store,
        run_id,
        config.name,
        dataset.class_names,
        dataset.images.shape[1],
        objective,
        best_score,
    )
    store.set_model_version_tags(
        config.name, registered.version, {registry.SWEEP_TAG: parent_run_id}
    )
    return registered
