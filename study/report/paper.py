"""The published study's figures, read from `paper.yaml` beside this module."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class Paper:
    citation: str
    short: str
    data_fingerprint: str  # of the data set the paper's figures are on (NEU)
    data_note: str
    protocol: dict[str, Any]
    hyperparameters: dict[str, dict[str, str]]  # row key -> source, frozen, fine_tune
    scores: dict[str, dict[str, Any]]  # stage -> table number and split -> metric -> value
    methods: list[dict[str, Any]]  # Table 5 rows
    method_notes: list[str]
    activations: list[dict[str, Any]]  # Table 6 rows
    activation_notes: list[str]


@cache
def load() -> Paper:
    raw = yaml.safe_load(resources.files("study.report").joinpath("paper.yaml").read_text())
    return Paper(
        citation=raw["citation"],
        short=raw["short"],
        data_fingerprint=raw["data_fingerprint"],
        data_note=raw["data_note"],
        protocol=raw["protocol"],
        hyperparameters=raw["hyperparameters"],
        scores=raw["scores"],
        methods=raw["methods"]["rows"],
        method_notes=raw["methods"]["notes"],
        activations=raw["activations"]["rows"],
        activation_notes=raw["activations"]["notes"],
    )
