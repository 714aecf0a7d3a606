"""A study as plain data: the YAML schema, its validation, and `--set` overrides.

One YAML file describes a study: the data, the model, both training phases, the feature cache
and, for sweeps, the hyperparameters to search, the Keras Tuner oracle and the seeds. Every
key is checked before any work starts; a mistake stops with one line naming the key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from study.errors import ConfigError
from study.schema.base import Strict

# The sections and the vocabulary, importable from here as before (`config.Augmentation`).
from study.schema.data import Augmentation as Augmentation
from study.schema.data import Data
from study.schema.data import Split as Split
from study.schema.search import DataSet, HyperParameter, Question, Tuner
from study.schema.search import without_step_rounding as without_step_rounding
from study.schema.training import EarlyStopping as EarlyStopping
from study.schema.training import Features, FineTunePhase, Model, Phase, Tracking, TrainableFrom
from study.vocabulary import CELLS as CELLS
from study.vocabulary import KNOBS, PHASE_KNOBS
from study.vocabulary import RUNTIMES as RUNTIMES

# A sweep shares one data set, backbone and feature cache among its trials, so these stay fixed.
NOT_SWEEPABLE = (
    "name",
    "seed",
    "data.root",
    "data.image_size",
    "data.skip_bad_files",
    "data.include",
    "data.exclude",
    "data.class_depth",
    "data.labels",
    "data.label_columns",
    "data.class_map",
    "data.augmentation",
    "model.weights",
    "model.init_seed",
    "model.backbone_draws",
    "features",
    "fine_tune.trainable",
)


class StudyConfig(Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[\w.\- ]+$")
    description: str = ""
    seed: int = Field(
        0,
        ge=0,
        description="seeds the split, the head's init, augmentation and (weights none) the "
        "backbone draw",
    )
    data: Data = Data()
    model: Model = Model()
    frozen: Phase = Phase()
    fine_tune: FineTunePhase = FineTunePhase()
    features: Features = Features()
    tracking: Tracking = Tracking()
    hyperparameters: dict[str, HyperParameter] = Field(default_factory=dict)
    tuner: Tuner = Tuner()
    question: Question = Question()
    seeds: list[int] | None = Field(None, min_length=1, description="a sweep repeats each config")
    # Left out of model_dump (so of with_values, to_yaml and a sweep's identity): each data
    # set's config is an ordinary study, resumed like one.
    replicate: list[DataSet] = Field(
        default_factory=list,
        exclude=True,
        description="the data sets `study replicate` runs the study on",
    )

    @model_validator(mode="after")
    def _phases_and_seeds(self) -> StudyConfig:
        if self.frozen.epochs == 0 and self.fine_tune.epochs == 0:
            raise ValueError("frozen.epochs and fine_tune.epochs are both 0: nothing to train")
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must not repeat (got {self.seeds})")
        if self.tuner.oracle == "hyperband" and len(self.sweep_seeds) > 1:
            raise ValueError(
                "hyperband promotes single trials between rounds, so it cannot repeat them over "
                "seeds; give one seed, or use the random or bayesian oracle"
            )
        return self

    @property
    def sweep_seeds(self) -> list[int]:
        return self.seeds if self.seeds is not None else [self.seed]

    def flat(self) -> dict[str, Any]:
        """Every resolved value under its dotted key, the sweep sections left out."""
        body = self.model_dump(exclude={"hyperparameters", "tuner", "question", "seeds"})
        return _flatten(body)

    def knob_keys(self) -> dict[str, str]:
        """Each knob's short name -> its config key in this study (see PHASE_KNOBS)."""
        phase = "fine_tune" if self.fine_tune.epochs > 0 else "frozen"
        return {
            short: f"{phase}.{short}" if short in PHASE_KNOBS else key
            for short, key in KNOBS.items()
        }

    def knob_values(self) -> dict[str, Any]:
        flat = self.flat()
        return {short: flat[key] for short, key in self.knob_keys().items()}

    def with_values(self, values: dict[str, Any]) -> StudyConfig:
        """This config with dotted keys set to new values, validated again."""
        return validate(_apply(self.model_dump(), values.items()))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)


def load(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    """Read a study YAML, apply `key.path=value` overrides, and validate the result."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of keys, not {type(raw).__name__}")
    return validate(_apply(raw, [_parse_override(text) for text in overrides]), source=path)


def validate(raw: dict[str, Any], source: Path | None = None) -> StudyConfig:
    where = f"{source}: " if source else ""
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(where + _first_problem(error)) from None
    _check_search_space(config, where)
    return config


def _check_search_space(config: StudyConfig, where: str) -> None:
    """Each swept key must exist and each candidate value must be valid for it."""
    leaves = config.flat()
    body = config.model_dump()
    for key, spec in config.hyperparameters.items():
        if key.startswith(NOT_SWEEPABLE):
            hint = "list them under seeds:" if key == "seed" else "run one sweep per value"
            raise ConfigError(
                f"{where}hyperparameters.{key}: the trials of a sweep share their data, "
                f"backbone weights and feature cache, so this key cannot vary; {hint}"
            )
        if key not in leaves:
            raise ConfigError(
                f"{where}hyperparameters.{key}: not a config key; sweepable keys look like "
                f"model.activation or fine_tune.decay_rate"
            )
        candidates = {
            "choice": lambda s: s.values,
            "int": lambda s: [s.min, s.max],
            "float": lambda s: [s.min, s.max],
            "fixed": lambda s: [s.value],
        }[spec.type](spec)
        for value in candidates:
            try:
                StudyConfig.model_validate(_apply(body, [(key, value)]))
            except ValidationError as error:
                raise ConfigError(
                    f"{where}hyperparameters.{key}: value {value!r} is invalid: "
                    + _first_problem(error)
                ) from None
    _check_question(config, where)


def _check_question(config: StudyConfig, where: str) -> None:
    """A sweep's question compares a knob it varies, against one of that knob's values."""
    question = config.question
    if question.compare == "configurations" or not config.hyperparameters:
        return
    key = config.knob_keys()[question.compare]
    spec = config.hyperparameters.get(key)
    if spec is None:
        raise ConfigError(
            f"{where}question.compare: {question.compare!r} ({key}) is not swept; compare "
            f"configurations or a swept knob ({', '.join(config.hyperparameters)})"
        )
    values = [str(value) for value in getattr(spec, "values", [])]
    if question.reference is not None and values and question.reference not in values:
        raise ConfigError(
            f"{where}question.reference: {question.reference!r} is not a value of {key}; "
            f"choose one of {', '.join(values)}"
        )


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, for example data.image_size=128")
    return key.strip(), yaml.safe_load(value) if value.strip() else ""


def _apply(raw: dict[str, Any], assignments) -> dict[str, Any]:
    result = copy.deepcopy(raw)
    for key, value in assignments:
        node, path = result, _split_key(result, key)
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part} holds a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def _split_key(raw: dict[str, Any], key: str) -> list[str]:
    """Dotted key to path. Under `hyperparameters` the names themselves hold dots, so the
    longest name already there wins (`hyperparameters.model.dropout.max` -> model.dropout,
    max), and a new name takes the whole rest."""
    parts = key.split(".")
    if parts[0] != "hyperparameters" or len(parts) < 2:
        return parts
    names = raw.get("hyperparameters") or {}
    for end in range(len(parts), 1, -1):
        name = ".".join(parts[1:end])
        if name in names:
            return ["hyperparameters", name, *parts[end:]]
    return ["hyperparameters", ".".join(parts[1:])]


# Mappings keyed by data, not by config keys: each stays one value of `flat()` (a label value
# may hold characters that an MLflow parameter name may not).
DATA_MAPPINGS = ("data.class_map",)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in DATA_MAPPINGS:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    location = ".".join(str(part) for part in problem["loc"] if not _is_union_tag(part))
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] == "extra_forbidden":
        message = "unknown key; valid keys here: " + ", ".join(_keys_at(problem["loc"][:-1]))
    elif (
        "input" in problem
        and problem["type"] != "missing"
        and "(got " not in message
        and not isinstance(problem["input"], dict)  # a section: the message says what is wrong
    ):
        message += f" (got {problem['input']!r})"
    return f"{location}: {message}" if location else message


def _keys_at(location: tuple) -> list[str]:
    model: type[BaseModel] = StudyConfig
    for part in location:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def _is_union_tag(part: Any) -> bool:
    return part in ("choice", "int", "float", "fixed", TrainableFrom.__name__)
