"""The schema's data section: where the images are, which files count, where their classes come
from, how the splits are drawn and how training images are augmented."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictInt, field_validator, model_validator

from study.schema.base import Strict, Text


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
