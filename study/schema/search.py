"""The schema's sweep sections: the hyperparameters to search, the Keras Tuner oracle, the
report's question and the data sets of a replication."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from study.objective import OBJECTIVES
from study.schema.base import Strict
from study.vocabulary import KNOBS


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
