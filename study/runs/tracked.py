"""One tracked training run: a validated config in, a finished MLflow run out.

`execute` splits the data by the run's seed, trains on the run's backbone (with random
weights, the seed's backbone draw, whose caches are built on the first run that needs them;
see `session`), and logs the whole story of the run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

import study
from study.config import StudyConfig
from study.data import dataset as data
from study.model.nasnet import build_backbone, build_classifier
from study.runs.session import Prepared
from study.tracking import provenance
from study.tracking.store import NOTE_TAG, PREDICTIONS, Store
from study.training import train as training

CONTEXTS = {"val": "validation"}  # split name -> MLflow's dataset context, where they differ
BACKBONE_DRAW_TAG = "backbone_draw"  # a run's random backbone draw (seed mod backbone_draws)


def execute(
    config: StudyConfig,
    prepared: Prepared,
    store: Store,
    experiment_id: str,
    run_name: str,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    verbose: int = 0,
    time_budget_s: float | None = None,
    note: str | None = None,
) -> tuple[str, training.TrainingResult]:
    """Train one configuration and log it as one MLflow run; returns (run id, result). The
    run's description is `note` (by default its knobs and seed) and what it scored."""
    dataset = prepared.dataset
    split = data.split(dataset, config.data.split, config.seed)
    run_tags = {**describe(prepared, split, config), **(tags or {})}
    with store.run(
        experiment_id, run_name, run_tags, parent_run_id, config.tracking.system_metrics
    ) as run_id:
        store.log(run_id, params=run_params(config, dataset, split))
        store.log_datasets(
            run_id, dataset.root.name, str(dataset.root), split_digests(dataset, split)
        )
        result = training.train(
            config,
            dataset,
            split,
            prepared.weights_for(config),
            prepared.features_for(config),
            verbose=verbose,
            time_budget_s=time_budget_s,
            activations=prepared.activations_for(config),
        )
        store.log(run_id, metrics=run_metrics(result), tags={"kept_model": result.final_stage})
        if note is None:
            knobs = ", ".join(f"{key} = {value}" for key, value in config.knob_values().items())
            note = f"{config.name}: {knobs}, seed = {config.seed}"
        store.log(run_id, tags={NOTE_TAG: f"{note}\n\n{scores_table(result)}"})
        with tempfile.TemporaryDirectory() as folder:
            write_artifacts(Path(folder), config, prepared, split, result)
            store.log_artifacts(run_id, Path(folder))
    return run_id, result


def describe(
    prepared: Prepared,
    split: dict[str, np.ndarray] | None = None,
    config: StudyConfig | None = None,
) -> dict:
    """Tags that say where a run's numbers come from: those of the run of `config` (its
    backbone and caches), or without it those of the prepared first seed."""
    dataset, weights = prepared.dataset, prepared.weights
    feature_cache, activation_cache = prepared.features, prepared.activations
    if config is not None:
        weights = prepared.weights_for(config)
        feature_cache = prepared.features_for(config)
        activation_cache = prepared.activations_for(config)
    tags = {
        "study_version": study.__version__,
        "data_fingerprint": dataset.fingerprint,
        "weights": weights.label,
        "weights_source": weights.source,
        "weights_id": weights.identity,
        "skipped_files": str(len(dataset.skipped)),
        "feature_cache": feature_cache.key if feature_cache else "off",
        "feature_cache_runtime": feature_cache.runtime if feature_cache else "off",
        "activation_cache": activation_cache.key if activation_cache else "off",
        "machine": provenance.machine()["machine"],
    }
    draw = None if config is None else config.model.backbone_draw(config.seed)
    if draw is not None:
        tags[BACKBONE_DRAW_TAG] = str(draw)
    if split is not None:
        tags["split"] = " / ".join(f"{name} {len(split[name])}" for name in data.SPLITS)
        if len(split["test"]) == 0:
            tags["test_split"] = "none: model selection and reporting share the validation split"
    return tags


def split_digests(dataset: data.Dataset, split: dict[str, np.ndarray]) -> dict[str, str]:
    """A digest per non-empty split, by MLflow's dataset context names: the data fingerprint
    with the contents of the split, so the same split of the same data has the same digest."""
    digests = {}
    for name, indices in split.items():
        if len(indices):
            members = sorted(dataset.content_hashes[i] for i in indices)
            body = "\n".join([dataset.fingerprint, name, *members]).encode()
            digests[CONTEXTS.get(name, name)] = hashlib.sha256(body).hexdigest()[:16]
    return digests


def run_params(config: StudyConfig, dataset: data.Dataset, split: dict[str, np.ndarray]) -> dict:
    params = {**config.flat(), **config.knob_values()}
    # Facts of the data as loaded, under `dataset.`: not config keys, so never a configuration.
    params["dataset.root"] = str(dataset.root)
    params["dataset.images"] = len(dataset)
    params["dataset.classes"] = ",".join(dataset.class_names)
    params["dataset.class_source"] = dataset.origin
    params.update({f"dataset.{name}_images": len(split[name]) for name in data.SPLITS})
    params["dataset.class_counts"] = class_counts(dataset, np.arange(len(dataset)))
    for name in data.SPLITS:
        params[f"dataset.{name}_class_counts"] = class_counts(dataset, split[name])
    return params


def class_counts(dataset: data.Dataset, indices: np.ndarray) -> str:
    """Images per class among `indices`, as JSON (class names may hold any character)."""
    counts = np.bincount(dataset.labels[indices], minlength=len(dataset.class_names))
    return json.dumps(
        dict(zip(dataset.class_names, counts.tolist(), strict=True)), ensure_ascii=False
    )


def scores_table(result: training.TrainingResult) -> str:
    """The final model's main scores per split, as a Markdown table."""
    final = result.evaluations[result.final_stage]
    keys = ("accuracy", "loss", "error_rate", "f1_macro")
    rows = [
        f"| {name} | " + " | ".join(f"{scores.metrics[key]:.4f}" for key in keys) + " |"
        for name, scores in final.items()
    ]
    head = f"| after {result.final_stage.replace('_', '-')} | " + " | ".join(keys) + " |"
    return "\n".join([head, "|---" * (len(keys) + 1) + "|", *rows])


def run_metrics(result: training.TrainingResult) -> list[tuple[str, float, int]]:
    """Per-epoch curves as `<stage>/<metric>` by step (epoch), final scores as
    `<split>_<metric>`, and the scores after each stage as `<stage>_<split>_<metric>`."""
    rows: list[tuple[str, float, int]] = []
    for phase in result.phases:
        for key, values in phase.history.items():
            rows += [(f"{phase.name}/{key}", value, epoch) for epoch, value in enumerate(values)]
        rows += [
            (f"{phase.name}_wall_time_s", phase.wall_time_s, 0),
            (f"{phase.name}_epochs_run", phase.epochs_run, 0),
            (f"{phase.name}_best_epoch", phase.best_epoch, 0),
            *((f"{phase.name}_initial_{key}", v, 0) for key, v in phase.initial.items()),
        ]
    for stage, scores in result.evaluations.items():
        for split_name, evaluation in scores.items():
            for key, value in evaluation.metrics.items():
                rows.append((f"{stage}_{split_name}_{key}", value, 0))
                if stage == result.final_stage:
                    rows.append((f"{split_name}_{key}", value, 0))
    rows += [(f"parameters_{key}", value, 0) for key, value in result.parameters.items()]
    return rows


def write_artifacts(
    folder: Path,
    config: StudyConfig,
    prepared: Prepared,
    split: dict[str, np.ndarray],
    result: training.TrainingResult,
) -> None:
    """The run's files, as data: no figures (about a second of PNG encoding per trial). The
    MLflow UI charts the logged curves, and `study report` draws the learning curves from them
    and the confusion matrix from `confusion_matrix.csv`."""
    dataset = prepared.dataset
    (folder / "config.yaml").write_text(config.to_yaml())
    split_of = {int(i): name for name, indices in split.items() for i in indices}
    with open(folder / "split.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "class", "split"])
        for i in range(len(dataset)):
            name = dataset.class_names[dataset.labels[i]]
            writer.writerow([_relative(dataset, i), name, split_of[i]])
    final = result.evaluations[result.final_stage]
    names = dataset.class_names
    with open(folder / PREDICTIONS, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "split", "class", "predicted", "correct"])
        for split_name, evaluation in final.items():
            for i, guess in zip(split[split_name], evaluation.predicted, strict=True):
                truth = int(dataset.labels[i])
                row = [_relative(dataset, i), split_name, names[truth], names[guess]]
                writer.writerow([*row, int(truth == guess)])
    with open(folder / "classes.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "files", "folders"])
        for name, count, folders in dataset.class_sources():
            writer.writerow([name, count, "; ".join(folders)])
    if dataset.notices:
        (folder / "data_notices.txt").write_text("\n".join(dataset.notices) + "\n")
    if dataset.skipped:
        lines = [f"{path}\t{reason}" for path, reason in dataset.skipped]
        (folder / "skipped_files.txt").write_text("\n".join(lines) + "\n")

    with open(folder / "per_class_metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stage", "split", "class", "precision", "recall", "f1", "support"])
        for stage, scores in result.evaluations.items():
            for split_name, evaluation in scores.items():
                for name, row in evaluation.per_class.items():
                    writer.writerow([stage, split_name, name, *row.values()])

    shown = "test" if "test" in final else "val"
    matrix = final[shown].confusion
    with open(folder / "confusion_matrix.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *dataset.class_names])
        for name, row in zip(dataset.class_names, matrix, strict=True):
            writer.writerow([name, *row])

    if config.tracking.log_model:
        model = result.model or build_classifier(
            build_backbone(
                config.data.image_size, prepared.weights_for(config), config.model.pooling
            ),
            result.head,
        )
        model.save(folder / "model.keras")


def _relative(dataset: data.Dataset, index: int) -> str:
    return dataset.files[index].relative_to(dataset.root).as_posix()
