"""`study replicate`: one study over several data sets, each run as its own sweep in its own
experiment (and so with its own sweep state, feature caches and report), one after another.

The data sets come from `--data DIR` (repeatable) or, without it, from the study's `replicate:`
list, whose entries may carry the settings only that data set needs (`set:`, as --set gives
them: a labels file, a class map). Each data set's experiment is named
`<study name>-<root's folder name>` (`-sample` for the embedded sample) unless its entry names
it; the question is the study's for every data set, since the replication report pools one
question.
"""

from __future__ import annotations

import re
from pathlib import Path

from study.config import DataSet, StudyConfig
from study.errors import ConfigError

OWN_KEYS = ("name", "data.root")  # an entry gives these as its own name and root


def data_set_configs(config: StudyConfig, roots: list[str]) -> list[StudyConfig]:
    """The study's config for each data set: `roots` (from --data) when given, else the
    study's `replicate:` entries, each with its own name, root and settings."""
    entries = [DataSet(root=root) for root in roots] if roots else config.replicate
    if not entries:
        raise ConfigError(
            f"study {config.name} names no data sets to replicate on; give --data DIR "
            "(repeatable) or a `replicate:` list of {root: ..., set: {...}} in its YAML"
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
