"""The documentation stays true to the code: README.md stays a short manual whose commands exist,
docs/configuration.md documents exactly the config schema's fields, the troubleshooting table
and tests/test_bad_input.py name the same cases, and the files and links the docs name exist.

No TensorFlow: the schema is pydantic, the CLI's help is printed before anything heavy loads,
and the bad-input cases are read from the test file's source."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import types
import typing

import pytest
import yaml
from pydantic import BaseModel

from study import config

from .conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
CONFIGURATION = DOCS / "configuration.md"
TROUBLESHOOTING = DOCS / "troubleshooting.md"
BAD_INPUT_TESTS = REPO / "tests" / "test_bad_input.py"
PAGES = [README, *sorted(DOCS.glob("*.md")), *sorted(REPO.glob("reports/*/findings.md"))]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def section(text: str, heading: str) -> str:
    """The text under `## heading`, up to the next heading of that level."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def table_rows(text: str) -> list[list[str]]:
    """The cells of each body row of the Markdown tables in `text` (header and rule left out).
    Cells are split on `|` outside backticks, so a code span may hold one."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or re.fullmatch(r"\|[-|: ]+\|", line):
            continue
        cells, cell, in_code = [], "", False
        for char in line.strip()[1:-1]:
            if char == "`":
                in_code = not in_code
            if char == "|" and not in_code:
                cells.append(cell.strip())
                cell = ""
            else:
                cell += char
        rows.append([*cells, cell.strip()])
    return [row for row in rows if "`" in "".join(row)]  # header rows hold no code span


def test_readme_is_a_manual_of_at_most_300_lines():
    assert len(README.read_text().splitlines()) <= 300


def cli_commands() -> set[str]:
    """The subcommands `study --help` lists, from the real command line."""
    done = subprocess.run(
        [sys.executable, "-m", "study.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    # a name longer than argparse's column stands alone on its line, its help below
    return set(re.findall(r"^    ([a-z][a-z-]*)(?: |$)", done.stdout, flags=re.MULTILINE))


def readme_commands() -> set[str]:
    """Every `study <command>` in README's shell blocks and code spans."""
    text = README.read_text()
    code = code_blocks(text, "bash") + re.findall(r"`([^`\n]+)`", text)
    return {
        match for snippet in code for match in re.findall(r"(?<![\w/.-])study ([a-z]+)", snippet)
    }


def test_every_command_in_the_readme_exists_and_every_command_is_in_it():
    available = cli_commands()
    used = readme_commands()
    assert {"train", "sweep", "ui", "report"} <= available
    assert used <= available, f"README uses commands that `study --help` lacks: {used - available}"
    assert available <= used, f"README never shows these commands: {available - used}"


def nested_models(annotation: typing.Any) -> list[type[BaseModel]]:
    """The config sections a field holds: the model itself, or the models of a union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [model for arg in typing.get_args(annotation) for model in nested_models(arg)]
    return []  # a value, a list or a mapping (hyperparameters: its keys are config keys)


def schema_paths(model: type[BaseModel] = config.StudyConfig, prefix: str = "") -> set[str]:
    """Every settable dotted path of the config: each value, and each field of a section, at
    any depth; a field that is a section or a value (fine_tune.trainable) is both."""
    paths = set()
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        sections = nested_models(field.annotation)
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            paths.add(path)
        for section_model in sections:
            paths |= schema_paths(section_model, path + ".")
    return paths


def documented_paths() -> list[str]:
    rows = table_rows(section(CONFIGURATION.read_text(), "Every field"))
    return [re.fullmatch(r"`([\w.]+)`", row[0]).group(1) for row in rows]


def test_the_schema_walk_reaches_nested_sections_and_subclass_fields():
    paths = schema_paths()
    for path in (
        "name",
        "data.split.test_seed",
        "data.augmentation.zoom",
        "frozen.early_stopping.patience",
        "fine_tune.keep_frozen_if_better",  # FineTunePhase's own field
        "fine_tune.early_stopping.monitor",  # inherited from Phase
        "fine_tune.trainable",
        "fine_tune.trainable.from",  # the alias of a union member's field
        "hyperparameters",
        "tuner.trial_timeout_s",
    ):
        assert path in paths
    assert "data" not in paths and "fine_tune.early_stopping" not in paths


def test_configuration_doc_covers_every_config_field_and_no_other():
    documented = documented_paths()
    schema = schema_paths()
    assert len(documented) == len(set(documented)), "a field is documented twice"
    assert not schema - set(documented), f"undocumented config fields: {schema - set(documented)}"
    assert not set(documented) - schema, (
        f"documented but not in the schema: {set(documented) - schema}"
    )


@pytest.mark.parametrize("page", [README, CONFIGURATION], ids=lambda page: page.name)
def test_the_example_studies_in_the_docs_are_valid_configs(page):
    blocks = code_blocks(page.read_text(), "yaml")
    assert blocks
    for block in blocks:
        study = config.validate(yaml.safe_load(block))
        assert study.hyperparameters, "the example shows a search space"


def bad_input_cases() -> tuple[list[str], set[str], set[str]]:
    """From tests/test_bad_input.py's source: its CASES, the test functions parametrized over
    them, and its other test functions."""
    tree = ast.parse(BAD_INPUT_TESTS.read_text())
    cases = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["CASES"]
    )
    over_cases, others = set(), set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            uses_cases = any(
                isinstance(name, ast.Name) and name.id == "CASES"
                for decorator in node.decorator_list
                for name in ast.walk(decorator)
            )
            (over_cases if uses_cases else others).add(node.name)
    return cases, over_cases, others


def defines_test(reference: str) -> bool:
    file, _, name = reference.partition("::")
    path = REPO / file
    if not path.is_file():
        return False
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name == name for node in tree.body)


def test_troubleshooting_table_names_every_bad_input_test_and_only_real_ones():
    rows = table_rows(
        section(TROUBLESHOOTING.read_text(), "Bad input is caught before any compute")
    )
    assert len(rows) > 30
    named = [token for row in rows for token in re.findall(r"`([^`]+)`", row[-1])]
    references = {token for token in named if "::" in token}
    case_names = [token for token in named if "::" not in token]
    cases, over_cases, others = bad_input_cases()
    assert over_cases, "test_bad_input.py runs its CASES through a parametrized test"
    assert not set(case_names) - set(cases), (
        f"not cases of test_bad_input.py: {set(case_names) - set(cases)}"
    )
    assert not set(cases) - set(case_names), (
        f"bad-input cases missing from the table: {set(cases) - set(case_names)}"
    )
    missing = sorted(reference for reference in references if not defines_test(reference))
    assert not missing, f"the table names tests that do not exist: {missing}"
    unlisted = {f"tests/test_bad_input.py::{name}" for name in others} - references
    assert not unlisted, f"bad-input tests missing from the table: {unlisted}"


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_the_docs_reach_files_and_headings():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            assert linked.exists(), f"{page.relative_to(REPO)} links to missing {target}"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.MULTILINE)
                assert anchor in {github_anchor(h) for h in headings}, (page.name, target)


def test_files_the_docs_name_exist():
    """Paths of the project in code spans (`study/model/keras_scores.py`,
    `benchmarks/results/cache_fidelity.txt`), outside README's module map."""
    for page in PAGES[1:]:
        for span in re.findall(r"`([^`\n]+)`", page.read_text()):
            for path in re.findall(
                r"(?<![\w/.])((?:study|tests|benchmarks|search_spaces|reports)/[\w/.-]+\.(?:py|yaml|txt|csv|md))",
                span,
            ):
                assert (REPO / path).exists(), f"{page.relative_to(REPO)} names missing {path}"
