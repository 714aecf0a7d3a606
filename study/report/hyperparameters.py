"""Table 2: each setting before and after fine-tuning, every value the runs used beside the
paper's, and a row for each model or phase setting a run moved from its default."""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.config import StudyConfig
from study.report.paper import Paper
from study.report.selection import value_order
from study.report.tables import STAGES
from study.tracking.outcome import column, metric, param

LOSS = "sparse categorical crossentropy (categorical crossentropy on integer labels)"


def hyperparameter_table(runs: pd.DataFrame, paper: Paper) -> pd.DataFrame:
    """Table 2: each hyperparameter before and after fine-tuning, the paper's beside ours.
    Ours lists every value the runs used; a phase every run switched off says so. After the
    paper's rows, a row per model or phase setting that none of them shows and that a run set
    away from its default, named by its dotted path (frozen.augment)."""
    unlisted = {"source": "not in the paper", "frozen": "", "fine_tune": ""}
    listed = paper.hyperparameters
    others = {key: unlisted for key in _unshown_settings(runs, list(listed))}
    rows = []
    for key, reference in {**listed, **others}.items():
        row = {
            "hyperparameter": key if "." in key else key.replace("_", " "),
            "paper_source": reference["source"],
            "paper_before": reference["frozen"],
            "paper_after": reference["fine_tune"],
        }
        for stage, name in (("frozen", "ours_before"), ("fine_tune", "ours_after")):
            row[name] = _our_setting(runs, key, stage)
        rows.append(row)
    return pd.DataFrame(rows)


def _our_setting(runs: pd.DataFrame, key: str, stage: str) -> str:
    """One row of Table 2 for one phase: every value the runs used."""
    phase_off = _phase_off(runs, stage)
    if key == "epochs":
        ran = metric(runs, f"{stage}_epochs_run").dropna()
        text = _distinct(param(runs, f"{stage}.epochs"))
        text += f" (ran {_range(ran)})" if len(ran) else ""
        return text + (" (phase off)" if phase_off else "")
    if key in _MODEL_SETTINGS:
        return _MODEL_SETTINGS[key](runs)
    if phase_off:
        return "phase off"
    if key in _PHASE_PARAMS:
        return _distinct(param(runs, f"{stage}.{_PHASE_PARAMS[key]}"))
    if key == "steps_per_epoch":
        images = pd.to_numeric(param(runs, "dataset.train_images"), errors="coerce")
        batch = pd.to_numeric(param(runs, f"{stage}.batch_size"), errors="coerce")
        return _distinct(np.ceil(images / batch).astype("Int64"))
    if key == "trainable_parameters":
        counts = metric(runs, f"parameters_trainable_{stage}").astype("Int64")
        return _distinct(counts.map(lambda n: f"{n:,}", na_action="ignore"))
    if key == "learning_rate_mode":
        decay = pd.to_numeric(param(runs, f"{stage}.decay_rate"), errors="coerce")
        return _distinct(decay.map(lambda b: "constant" if b == 0 else "exponential decay"))
    if key == "early_stopping":
        patience = param(runs, f"{stage}.early_stopping.patience").astype(str)
        monitor = param(runs, f"{stage}.early_stopping.monitor").astype(str)
        text = ("patience " + patience + " on " + monitor).where(patience != "None", "off")
        return _distinct(text)
    return _setting_by_path(runs, key, stage, phase_off)


def _phase_off(runs: pd.DataFrame, stage: str) -> bool:
    epochs = pd.to_numeric(param(runs, f"{stage}.epochs"), errors="coerce")
    return bool(len(runs)) and bool((epochs == 0).all())


def _setting_by_path(runs: pd.DataFrame, key: str, stage: str, phase_off: bool) -> str:
    """A row Table 2 has no rule for: the values of the config key `key` (model.pooling), or of
    `<phase>.<key>` when both phases have it. A phase's own key (frozen.label_smoothing) fills
    that phase's column only."""
    section = key.partition(".")[0]
    if section not in STAGES and f"params.{stage}.{key}" in runs.columns:
        key, section = f"{stage}.{key}", stage
    if section not in STAGES:
        return _distinct(param(runs, key))
    if section != stage:
        return ""
    return "phase off" if phase_off else _distinct(param(runs, key))


def _unshown_settings(runs: pd.DataFrame, rows: list[str]) -> list[str]:
    """The model and phase config keys that no row of `rows` shows and that some run set to a
    value other than its default, in config order."""
    shown = set()
    for row in rows:
        paths = _ROW_PARAMS.get(row, (row,))
        shown |= {p.format(phase=stage) for p in paths for stage in STAGES}
        shown |= {f"{stage}.{row}" for stage in STAGES}
    defaults = {key: str(value) for key, value in StudyConfig(name="defaults").flat().items()}
    order = {key: index for index, key in enumerate(defaults)}
    found = []
    for name in runs.columns:
        key = name.removeprefix("params.")
        if name.startswith(("params.model.", *(f"params.{stage}." for stage in STAGES))):
            used = {str(value) for value in runs[name].dropna().unique()}
            if key not in shown and used - {defaults.get(key)}:
                found.append(key)
    return sorted(found, key=lambda key: (order.get(key, len(order)), key))


# Table 2 rows that are one value for both phases, and those read from `<phase>.<param>`.
_MODEL_SETTINGS = {
    "activation": lambda runs: _distinct(param(runs, "model.activation")),
    "dropout": lambda runs: _distinct(param(runs, "model.dropout")),
    "head_width": lambda runs: _distinct(param(runs, "model.head_width")),
    "image_size": lambda runs: _distinct(param(runs, "data.image_size")),
    "weights": lambda runs: _distinct(column(runs, "tags.weights_source")),
    "loss": lambda runs: LOSS,
}
_PHASE_PARAMS = {
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "decay_rate": "decay_rate",
    "optimizer": "optimizer",
    "restore_best_weights": "early_stopping.restore_best",
}
# The config keys each Table 2 row shows ({phase}: each phase's), where not `<phase>.<row>`.
_ROW_PARAMS = {
    "activation": ("model.activation",),
    "dropout": ("model.dropout",),
    "head_width": ("model.head_width",),
    "weights": ("model.weights",),
    "learning_rate_mode": ("{phase}.decay_rate",),
    "restore_best_weights": ("{phase}.early_stopping.restore_best",),
    "early_stopping": ("{phase}.early_stopping.patience", "{phase}.early_stopping.monitor"),
}


def _distinct(values: pd.Series) -> str:
    found = sorted((str(v) for v in values.dropna().unique()), key=value_order)
    if not found:
        return "not logged"
    return found[0] if len(found) == 1 else "varies: " + ", ".join(found)


def _range(values: pd.Series) -> str:
    low, high = int(values.min()), int(values.max())
    return str(low) if low == high else f"{low}-{high}"
