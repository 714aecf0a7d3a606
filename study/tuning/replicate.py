"""`study replicate`: one study over several data sets, each run as its own sweep in its own
experiment (and so with its own sweep state, feature caches and report), one after another.

The data sets come from their folders (`data`) or, without them, from the study's `replicate:`
list, whose entries may carry the settings only that data set needs (`set:`, dotted keys as
overrides give them: a labels file, a class map). Each data set's experiment is named
`<study name>-<root's folder name>` (`-sample` for the embedded sample) unless its entry names
it; the question is the study's for every data set, since the replication report pools one
question.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from study.config import DataSet, StudyConfig
from study.errors import ConfigError
from study.tracking.store import Store
from study.tuning.summary import SweepSummary
from study.tuning.sweep import Sweep, SweepCallback

OWN_KEYS = ("name", "data.root")  # an entry gives these as its own name and root


def data_set_configs(config: StudyConfig, data: list[str]) -> list[StudyConfig]:
    """The study's config for each data set: the folders `data` when given, else the
    study's `replicate:` entries, each with its own name, root and settings."""
    entries = [DataSet(root=root) for root in data] if data else config.replicate
    if not entries:
        raise ConfigError(
            f"study {config.name} names no data sets to replicate on; give their folders "
            "(`data`) or a `replicate:` list of {root: ..., set: {...}} in its YAML",
            settings=("data",),
        )
    configs = [_data_set_config(config, entry) for entry in entries]
    names = [found.name for found in configs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"two data sets would both be experiment {name!r}; give each a `name:` in the "
                "replicate: list (or data folders with different names)"
            )
    return configs


def _data_set_config(config: StudyConfig, entry: DataSet) -> StudyConfig:
    where = f"replicate data set {entry.root or 'the embedded sample'}"
    for key in entry.set:
        if key in OWN_KEYS:
            raise ConfigError(
                f"{where}: set.{key} is the entry's own `{key.rpartition('.')[2]}:`; give it there"
            )
        if key == "question" or key.startswith("question."):
            raise ConfigError(
                f"{where}: set.{key}: a replication asks every data set the study's one "
                "question; change `question:` for all of them, or run another study"
            )
    name = entry.name or f"{config.name}-{folder_name(entry.root)}"
    try:
        return config.with_values({**entry.set, "name": name, "data.root": entry.root})
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def folder_name(root: str | None) -> str:
    """The data folder's own name, as an experiment name may hold it; `sample` for the
    embedded sample (null root)."""
    if root is None:
        return "sample"
    found = Path(root).expanduser().resolve().name or "root"
    return re.sub(r"[^\w.\- ]+", "_", found)


def replicate(
    configs: list[StudyConfig],
    store: Store,
    state_dir: Path,
    workers: int | None = 0,
    retry_failed: bool = False,
    callbacks: Sequence[SweepCallback] = (),
    say: Callable[[str], None] = print,
    progress: bool = True,
) -> list[SweepSummary]:
    """Run (or resume) the sweep of each data set's config in turn, as `Sweep.run` does with
    these settings; stops after the first sweep whose trials all failed."""
    summaries = []
    for number, config in enumerate(configs, 1):
        root = config.data.root or "the embedded sample"
        say(f"data set {number} of {len(configs)}: experiment {config.name} on {root}")
        sweep = Sweep(config, store, state_dir, say=say, progress=progress)
        summaries.append(sweep.run(workers=workers, retry_failed=retry_failed, callbacks=callbacks))
        if summaries[-1].all_failed:
            break
    return summaries
