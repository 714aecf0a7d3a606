"""Each section of the report composes alone, from one `Analysis` of a hand-built sweep, with
its own heading and figures; the shared text helpers write numbers as the report shows them."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from study.report import paper
from study.report.analysis import analyse
from study.report.document import BestRunDetails
from study.report.render import Heading, markdown
from study.report.sections import (
    activations,
    answer,
    best_run,
    configurations,
    fine_tuning_gain,
    hyperparameters,
    importance,
    inference,
    knobs,
    provenance,
    scores,
    summary,
    text,
    verdict,
)
from tests.test_report_tables import activation_sweep, frame

PAPER = paper.load()
CURVES = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.6, 0.8]}
CONFUSION = pd.DataFrame([[3, 1], [0, 4]], index=["a", "b"], columns=["a", "b"])
DETAILS = BestRunDetails({"frozen": CURVES}, CONFUSION, 4)


@pytest.fixture(scope="module")
def analysis():
    return analyse("t", frame(activation_sweep()), PAPER)


SECTIONS = {
    "Verdict": (lambda a, images: verdict.section(a, images), {"verdict.png"}),
    "Summary": (lambda a, images: summary.section(a, PAPER), set()),
    "How the numbers were obtained": (lambda a, images: provenance.section(a), set()),
    "Best configuration": (lambda a, images: configurations.section(a), set()),
    "The question and its answer": (lambda a, images: answer.section(a), set()),
    "Table 2: hyperparameters": (lambda a, images: hyperparameters.section(a), set()),
    "Table 3: before fine-tuning": (
        lambda a, images: scores.section(a, "frozen", PAPER, DETAILS, images),
        {"learning_curves_frozen.png"},
    ),
    "Table 5: accuracy, size and inference time": (
        lambda a, images: inference.section(a, PAPER),
        set(),
    ),
    "Table 6: error rate by activation": (
        lambda a, images: activations.section(a, PAPER, images),
        {"activation_error.png"},
    ),
    "Knobs: the settings the sweep varied": (
        lambda a, images: knobs.section(a, images),
        {"sweep.png"},
    ),
    "The best configuration's runs": (
        lambda a, images: best_run.section(a, DETAILS, images),
        {"confusion_matrix.png"},
    ),
}


@pytest.mark.parametrize("heading", SECTIONS)
def test_a_section_composes_alone_with_its_heading_and_figures(analysis, heading):
    compose, expected = SECTIONS[heading]
    images: dict[str, bytes] = {}
    blocks = compose(analysis, images)
    assert blocks[0] == Heading(2, heading)
    assert set(images) == expected
    assert all(png.startswith(b"\x89PNG") for png in images.values())
    markdown(blocks)  # every block renders


def test_table_4_holds_the_fine_tuning_gain(analysis):
    table_4 = markdown(scores.section(analysis, "fine_tune", PAPER, DETAILS, {}))
    gain = markdown(fine_tuning_gain.section(analysis))
    assert gain.startswith("Did fine-tuning help?") and gain in table_4


def test_sections_without_their_tables_say_nothing(analysis):
    assert importance.section(analysis, {}) == []  # one knob varied: no importance
    one = analyse("t", frame(activation_sweep()[:4]), PAPER)  # elu only: one configuration
    assert answer.section(one) == []


def test_numbers_are_written_as_the_report_shows_them():
    assert text.mean_std(1.234, 0.5, 2) == "1.23 ± 0.50"
    assert text.mean_std(1.234, math.nan, 2) == "1.23"
    assert text.mean_std(math.nan, 0.5, 2) == text.DASH
    assert text.p_value(0.0004) == "< 0.001"
    assert text.p_value(0.0412, equals=True) == "= 0.041"
    assert text.signed(0.5) == "+0.50"
    assert text.interval(1.0, 2.5) == "[1.00, 2.50]"
    assert text.objective_name("val_accuracy", unit=True) == "Validation accuracy (%)"
    assert text.objective_name("val_loss", unit=True) == "Validation loss"
    assert text.names(f"c{i}" for i in range(12)).endswith("c9; and 2 more")
