"""The command line offers only what it reads: every option of every command is read by that
command's `run` (or, for --verbose, by `main`), and reads nothing it does not offer; the
settings that errors below the command line name are options of some command, whose flag the
command line adds to the error."""

import argparse
import ast
import inspect
import textwrap
from pathlib import Path

import pytest

from study import cli
from study.errors import SweepStateError

PACKAGE = Path(cli.__file__).parent


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


SUBPARSERS = _subparsers()


def _args_read(source_of) -> set[str]:
    """The attributes `args.<name>` that a function's or class's source reads."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(source_of)))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "args"
    }


def _read_by(command: cli.Command) -> set[str]:
    """What a command's class and the command line's classes it inherits from read."""
    classes = [k for k in type(command).__mro__ if k.__module__ == cli.__name__]
    return set().union(*(_args_read(k) for k in classes))


@pytest.mark.parametrize("name", sorted(SUBPARSERS))
def test_every_option_a_command_offers_is_read_and_it_reads_no_other(name):
    subparser = SUBPARSERS[name]
    command = subparser.get_default("command")
    offered = {action.dest for action in subparser._actions if action.dest != "help"}
    read = _read_by(command)
    unread = offered - read - _args_read(cli.main)
    assert not unread, f"study {name} offers {sorted(unread)} but never reads them"
    assert read <= offered, f"study {name} reads {sorted(read - offered)}, which it does not offer"


def test_every_setting_an_error_names_is_an_option_of_some_command():
    options = set().union(*(p.get_default("command").flags for p in SUBPARSERS.values()))
    named = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "settings":
                named |= {element.value for element in node.value.elts}
    assert named and named <= options, f"settings without a flag: {sorted(named - options)}"


def test_the_command_line_adds_its_flags_to_an_error_naming_settings():
    sweep = SUBPARSERS["sweep"].get_default("command")
    error = SweepStateError("start a new sweep (fresh)", settings=("fresh", "state_dir"))
    assert sweep.flags_for(error.settings) == " (on the command line: --fresh, --state-dir)"
    assert sweep.flags_for(()) == ""
