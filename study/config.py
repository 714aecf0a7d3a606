"""A study as plain data: the YAML schema, its validation, and `--set` overrides.

One YAML file describes a study: the data, the model, both training phases, the feature cache
and, for sweeps, the hyperparameters to search, the Keras Tuner oracle and the seeds. Every
key is checked before any work starts; a mistake stops with one line naming the key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from study.errors import ConfigError

Activation = Literal["elu", "relu", "tanh", "sigmoid", "selu", "gelu", "swish", "leaky_relu"]
Optimizer = Literal["adam", "adamax", "sgd", "rmsprop", "nadam", "adamw"]

# Metrics a sweep can optimise, as logged on each run (see study.training.train.SPLIT_METRICS).
OBJECTIVES = {
    "val_accuracy": "max",
    "val_loss": "min",
    "val_error_rate": "min",
    "val_precision_macro": "max",
    "val_recall_macro": "max",
    "val_f1_macro": "max",
    "val_auc_ovr_macro": "max",
}

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

# Config keys that the paper's design varies; each run logs them under these short names too.
KNOBS = {
    "activation": "model.activation",
    "dropout": "model.dropout",
    "head_width": "model.head_width",
    "optimizer": "fine_tune.optimizer",
    "decay_rate": "fine_tune.decay_rate",
}
# Knobs of a training phase: their short names follow the phase that trains last (fine-tuning
# when it runs, else the frozen phase), so that a run's `optimizer` is the one that acted.
PHASE_KNOBS = ("optimizer", "decay_rate")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SPLITS = ("train", "val", "test")  # the split names, as runs log them: `test_accuracy`


class Split(Strict):
    """Fractions of each class held out; the training split gets the rest.

    The test split is drawn once, from `test_seed`, and is the same for every run seed; each
    run's seed re-draws only train and validation from the other images (or, with `folds`,
    picks one fold of a repeated stratified k-fold over them)."""

    val: float = Field(0.2, gt=0, lt=1)
    test: float = Field(0.2, ge=0, lt=1)
    test_seed: int = Field(0, ge=0, description="draws the test split, once for every seed")
    folds: int | None = Field(
        None, ge=2, le=50, description="k: seed s validates on fold s mod k of repeat s // k"
    )

    @model_validator(mode="after")
    def _leaves_training_data(self) -> Split:
        if self.val + self.test >= 1:
            raise ValueError(
                f"val + test must sum below 1 so that training data remains "
                f"(got {self.val} + {self.test} = {self.val + self.test:g})"
            )
        return self


class Augmentation(Strict):
    """The paper's augmentation, with Keras ImageDataGenerator's meanings."""

    rotations: list[float] = Field(default_factory=lambda: [0.0, 45.0, 90.0, 180.0], min_length=1)
    horizontal_flip: bool = True
    shear: float = Field(0.2, ge=0, le=45, description="shear angle range in degrees")
    zoom: float = Field(0.2, ge=0, lt=1, description="zoom factor range 1 +/- zoom")


Text = Annotated[str, Field(min_length=1)]
LABEL_COLUMNS = {"file": "file", "class": "class"}


class Data(Strict):
    """Where the images are, which files count, and where their classes come from."""

    root: str | None = Field(None, description="image folder; null for the embedded sample")
    image_size: int = Field(224, ge=32, le=1024)
    split: Split = Split()
    skip_bad_files: bool = False
    augmentation: Augmentation = Augmentation()
    include: list[Text] = Field(
        default_factory=list,
        description="glob patterns on the path relative to root; a file must match one "
        "(empty: every image); a pattern without / matches the file name at any depth",
    )
    exclude: list[Text] = Field(
        default_factory=list, description="glob patterns like include; a match leaves a file out"
    )
    class_depth: int = Field(
        1, ge=1, le=16, description="the folder this many levels below root names the class"
    )
    labels: str | None = Field(
        None,
        description="a file of file and class columns (delimiter sniffed, header optional); "
        "a relative path is taken from root",
    )
    label_columns: dict[str, str | StrictInt] = Field(
        default_factory=lambda: dict(LABEL_COLUMNS),
        description="the labels file's columns, keys file and class: a name in its header, or "
        "a position counted from 0",
    )
    class_map: dict[Text, Text] | None = Field(
        None,
        min_length=1,
        description="label value -> class; a number matches a numeric key within half a unit "
        "of the key's last decimal (an integer key: that number only), other text itself",
    )

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _one_pattern_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("label_columns")
    @classmethod
    def _known_label_columns(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        unknown = sorted(set(value) - set(LABEL_COLUMNS))
        if unknown:
            raise ValueError(
                f"unknown key {unknown[0]!r}; valid keys: {', '.join(LABEL_COLUMNS)} (the "
                "CSV's column names, for example {file: ImageId, class: ClassId}, or positions "
                "from 0, {file: 0, class: 1})"
            )
        columns = {**LABEL_COLUMNS, **value}
        for key, column in columns.items():
            if column == "" or (isinstance(column, int) and column < 0):
                raise ValueError(
                    f"{key}: give a column name or a position counted from 0 (got {column!r})"
                )
        if columns["file"] == columns["class"]:
            raise ValueError(f"file and class are the same column ({columns['file']!r})")
        return columns

    @field_validator("class_map", mode="before")
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        """YAML reads `0.5: defective` with a float key; label values and classes are text."""
        if not isinstance(value, dict):
            return value
        return {_number_as_text(k): _number_as_text(v) for k, v in value.items()}


def _number_as_text(item: Any) -> Any:
    return str(item) if isinstance(item, int | float) and not isinstance(item, bool) else item


class Model(Strict):
    weights: str = Field("imagenet", min_length=1, description="imagenet, none, or a file path")
    init_seed: int | None = Field(
        None,
        ge=0,
        description="pins one random backbone for every seed when weights is none; null: each "
        "seed's backbone draw (backbone_draws)",
    )
    backbone_draws: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="random backbones when weights is none and init_seed is null: null gives "
        "each seed its own (seed s on draw s); D makes seed s use draw s mod D, a NASNet "
        "initialised with init seed = draw",
    )
    activation: Activation = "elu"
    dropout: float = Field(0.2, ge=0, lt=1)
    head_width: int = Field(100, ge=1, le=8192)
    pooling: Literal["avg", "max"] = Field(
        "avg", description="how the backbone's last feature map becomes the head's input"
    )
    normalize_features: bool = Field(
        False, description="standardize the backbone's features with the training split's"
    )

    def backbone_draw(self, seed: int) -> int | None:
        """The random backbone that run seed `seed` uses (the seed itself, or seed mod
        backbone_draws); None when one backbone serves every seed (loaded weights, or a pinned
        init_seed)."""
        if self.weights != "none" or self.init_seed is not None:
            return None
        return seed if self.backbone_draws is None else seed % self.backbone_draws

    def backbone_init_seed(self, seed: int) -> int:
        """The seed that initialises the backbone of run seed `seed`: the pinned init_seed, or
        its draw (draw d is the backbone that `init_seed: d` pins)."""
        if self.init_seed is not None:
            return self.init_seed
        return self.backbone_draw(seed) or 0


class EarlyStopping(Strict):
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    patience: int | None = Field(None, ge=1, description="null: never stop early")
    restore_best: bool = True


class Phase(Strict):
    """A training phase; the defaults are phase 1's (backbone frozen, head trained)."""

    epochs: int = Field(20, ge=0, le=10_000, description="0 switches the phase off")
    batch_size: int = Field(32, ge=1, le=4096)
    optimizer: Optimizer = "adam"
    learning_rate: float = Field(1e-3, gt=0, le=10)
    decay_rate: float = Field(0.0, ge=0, lt=1, description="b in lr = a (1 - b)^epoch")
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="s: the loss's target is (1 - s) one-hot + s / classes"
    )
    class_weight: Literal["none", "balanced"] = Field(
        "none",
        description="balanced: each class weighs n_samples / (n_classes * its count) in the "
        "training loss, counted on the training split",
    )
    early_stopping: EarlyStopping = EarlyStopping()
    augment: bool = Field(
        True, description="train on augmented images (the paper); false: on the clean images"
    )
    execution: Literal["graph", "eager"] = Field(
        "graph",
        description="graph: TensorFlow traces the step once (about a minute for the whole "
        "network), then runs fast; eager: no tracing, slower steps; for runs of a few steps",
    )


# NASNet-Mobile's cells in the order they run (Keras's block ids). Each takes the outputs of the
# two cells before it (the stem's first cell: of the stem convolution), so a cut before a cell
# is crossed by at most two tensors.
CELLS = (
    "stem_1",
    "stem_2",
    *(f"normal_{i}" for i in range(4)),
    "reduce_4",
    *(f"normal_{i}" for i in range(5, 9)),
    "reduce_8",
    *(f"normal_{i}" for i in range(9, 13)),
)


class TrainableFrom(Strict):
    """The backbone's cells from `from` up (and the head) are fine-tuned; the rest stays frozen."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    first: str = Field(alias="from", description="the first trainable cell, e.g. normal_9")

    @field_validator("first")
    @classmethod
    def _known_cell(cls, value: str) -> str:
        if value not in CELLS:
            raise ValueError(
                "not a NASNet-Mobile cell; valid cells, first to last: " + ", ".join(CELLS)
            )
        return value


class FineTunePhase(Phase):
    """Phase 2: the backbone (or its top cells) trainable, exponential decay, early stopping."""

    epochs: int = Field(0, ge=0, le=10_000, description="0 switches the phase off")
    optimizer: Optimizer = "adamax"
    learning_rate: float = Field(1e-4, gt=0, le=10)
    decay_rate: float = Field(0.05, ge=0, lt=1, description="b in lr = a (1 - b)^epoch")
    early_stopping: EarlyStopping = EarlyStopping(patience=3)
    keep_frozen_if_better: bool = Field(
        True,
        description="keep phase 1's model unless a fine-tuning epoch beats it on the early-"
        "stopping monitor; false: always keep the fine-tuned model (the paper)",
    )
    trainable: TrainableFrom | Literal["all"] = Field(
        "all",
        description="all: the whole backbone (the paper); {from: CELL}: that cell and the ones "
        "above it, on cached activations of the cells below",
    )
    batch_norm: Literal["trainable", "frozen"] = Field(
        "trainable",
        description="trainable: the unfrozen cells' batch-norm scales and offsets train with "
        "them (the paper); frozen: they stay as loaded. Either way batch norm normalizes with "
        "its stored statistics (inference mode), which fine-tuning never changes",
    )

    @field_validator("trainable", mode="before")
    @classmethod
    def _all_or_cut(cls, value: Any) -> Any:
        if value == "all" or isinstance(value, dict | TrainableFrom):
            return value
        raise ValueError(
            f"give all or {{from: CELL}}, for example {{from: normal_9}} (got {value!r})"
        )

    @property
    def first_trainable(self) -> str | None:
        """The first trainable cell of the backbone; None: all of it."""
        return None if self.trainable == "all" else self.trainable.first


# The inference runtimes (study.model.runtimes), for the feature cache among others.
Runtime = Literal["tensorflow", "onnxruntime", "openvino", "openvino-bf16"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)


class Features(Strict):
    cache: bool = True
    views: int = Field(8, ge=1, le=256, description="augmented views per image in the cache")
    seed: int = Field(0, ge=0)
    runtime: Runtime = Field(
        "tensorflow",
        description="computes the cache's backbone features (study.model.runtimes); tensorflow "
        "when it fails",
    )


class Tracking(Strict):
    log_model: bool = False
    system_metrics: bool = Field(True, description="record CPU and memory use while a run trains")


class Choice(Strict):
    type: Literal["choice"]
    values: list[str | bool | int | float] = Field(min_length=1)


class IntRange(Strict):
    type: Literal["int"]
    min: int
    max: int
    step: int | None = Field(None, ge=1)
    sampling: Literal["linear", "log", "reverse_log"] = "linear"

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        _check_range(self.min, self.max, self.sampling)
        return self


class FloatRange(Strict):
    type: Literal["float"]
    min: float
    max: float
    step: float | None = Field(None, gt=0)
    sampling: Literal["linear", "log", "reverse_log"] = "linear"

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        _check_range(self.min, self.max, self.sampling)
        return self


class Fixed(Strict):
    type: Literal["fixed"]
    value: str | bool | int | float


def without_step_rounding(number: float) -> float:
    """A float step's value without its rounding error: Keras Tuner makes 0.15 as 0.05 * 3,
    0.15000000000000002; twelve significant digits keep every step a range can name."""
    return float(f"{number:.12g}")


def _check_range(low: float, high: float, sampling: str) -> None:
    if low >= high:
        raise ValueError(f"min ({low}) must be below max ({high}); use type: fixed for one value")
    if sampling != "linear" and low <= 0:
        raise ValueError(f"{sampling} sampling needs min > 0 (got {low})")


HyperParameter = Annotated[Choice | IntRange | FloatRange | Fixed, Field(discriminator="type")]


class Tuner(Strict):
    oracle: Literal["grid", "random", "bayesian", "hyperband"] = "grid"
    max_configs: int | None = Field(
        None, ge=1, description="configurations to try; each runs once per seed (grid: all)"
    )
    objective: str = "val_accuracy"
    seed: int = Field(
        1, ge=1, description="the oracle's own random seed (Keras Tuner reads 0 as none)"
    )
    num_initial_points: int | None = Field(None, ge=1, description="bayesian only")
    factor: int = Field(3, ge=2, description="hyperband only")
    hyperband_iterations: int = Field(1, ge=1, description="hyperband only")
    trial_timeout_s: float | None = Field(None, gt=0, description="a longer trial fails")

    @model_validator(mode="after")
    def _known_objective(self) -> Tuner:
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"objective {self.objective!r} is not logged; choose one of {sorted(OBJECTIVES)}"
            )
        if self.oracle in ("random", "bayesian") and self.max_configs is None:
            raise ValueError(f"the {self.oracle} oracle needs max_configs")
        return self

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective]


# What a study's report compares on: each is an error in percent (lower is better) on the test
# split, from the metrics every run logs.
QUESTION_METRICS = {
    "error_rate": "error rate",
    "balanced_error_rate": "balanced error rate (100 - macro recall)",
    "macro_f1": "100 - macro F1",
}
FAMILIES = ("reference", "all_pairs", "best")


class Question(Strict):
    """The one question a study's report answers, declared before any run: what is compared,
    against what, on which metric, at which level. The report runs one procedure on it: a test
    of any difference among the compared settings, then the declared family of pairwise tests,
    Holm-adjusted."""

    compare: str = Field(
        "configurations",
        description="configurations (every configuration the sweep ran), or a knob's short name "
        "(activation, dropout, head_width, optimizer, decay_rate): its values, the other knobs "
        "held at the best configuration's",
    )
    family: Literal["reference", "all_pairs", "best"] = Field(
        "best",
        description="reference: each against `reference`; all_pairs: every pair; best: each "
        "against the best (chosen on validation)",
    )
    reference: str | None = Field(None, description="the value every other is compared with")
    metric: Literal["error_rate", "balanced_error_rate", "macro_f1"] = "error_rate"
    alpha: float = Field(0.05, gt=0, lt=0.5)

    @model_validator(mode="after")
    def _reference_when_needed(self) -> Question:
        if self.compare != "configurations" and self.compare not in KNOBS:
            raise ValueError(
                f"question.compare {self.compare!r} is not comparable; choose configurations or "
                f"one of {', '.join(KNOBS)}"
            )
        if (self.family == "reference") != (self.reference is not None):
            raise ValueError(
                "question.reference names the value every other is compared with: give it with "
                f"family reference, and only then (family {self.family!r}, reference "
                f"{self.reference!r})"
            )
        if self.family == "reference" and self.compare == "configurations":
            raise ValueError(
                "question.family reference needs a knob to compare (question.compare), not "
                "configurations: a configuration's label is known only after the search"
            )
        return self


class DataSet(Strict):
    """One data set of a replication (`study replicate`): the same study on its images, as its
    own experiment, with the settings only it needs (a labels file, a class map)."""

    root: str | None = Field(description="image folder; null for the embedded sample")
    name: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[\w.\- ]+$",
        description="its experiment's name (default: <study name>-<root's folder name>)",
    )
    set: dict[str, Any] = Field(
        default_factory=dict, description="dotted key -> value, as --set gives them"
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
