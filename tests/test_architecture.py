"""The package's shape, read from its source: imports run one way along the pipeline, with no
circle, Keras Tuner's private members are touched in one adapter module only, and MLflow is
known in the tracking package only."""

from __future__ import annotations

import ast
from pathlib import Path

import keras_tuner

PACKAGE = Path(__file__).resolve().parents[1] / "study"
KERAS_TUNER_ADAPTER = "study.tuning.keras_tuner_adapter"
# Lower to higher: a module may import its own layer and the layers before it. Tracking (the
# store, the outcome rules, provenance, the logged model, the server) sits below the caches and
# training, so it imports nothing of them; runs are where training meets tracking.
LAYERS = (
    ("study", "study.config", "study.errors", "study.files", "study.logs", "study.processes"),
    ("study.data",),
    ("study.model",),
    ("study.tracking",),
    ("study.caches",),
    ("study.training",),
    ("study.runs",),
    ("study.tuning",),
    ("study.serving", "study.report"),
    ("study.cli",),
)
# The report reads logged runs: of the pipeline it knows only the store and the outcome rules.
REPORT_MAY_IMPORT = ("study.tracking.store", "study.tracking.outcome")
MLFLOW_HOME = "study.tracking"


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(), str(path))
    return found


MODULES = _modules()


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under `if TYPE_CHECKING:`, which never run."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            lines.update(child.lineno for child in ast.walk(node) if hasattr(child, "lineno"))
    return lines


def _imports(tree: ast.Module) -> set[str]:
    """Every module this source imports, at the top or inside a function."""
    skipped = _type_checking_only(tree)
    names = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                names.add(submodule if submodule in MODULES else node.module)
    return names


GRAPH = {
    name: {imported for imported in _imports(tree) if imported in MODULES and imported != name}
    for name, tree in MODULES.items()
}


def _layer(module: str) -> int:
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or module.startswith(prefix + ".")
            if inside and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best[0]


def test_every_module_sits_in_a_layer_and_imports_only_its_own_layer_or_lower():
    upward = [
        f"{module} (layer {_layer(module)}) imports {imported} (layer {_layer(imported)})"
        for module, imported_modules in GRAPH.items()
        for imported in imported_modules
        if _layer(imported) > _layer(module)
    ]
    assert not upward, "imports against the pipeline:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    cycles = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(GRAPH[module]):
            if state.get(imported) == "open":
                cycles.append(" -> ".join(path[path.index(imported) :] + [imported]))
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_report_reads_logged_runs_and_nothing_else_of_the_pipeline():
    reaching = sorted(
        f"{module} imports {imported}"
        for module, imported_modules in GRAPH.items()
        if module.startswith("study.report")
        for imported in imported_modules
        if _layer(imported) > 0
        and not imported.startswith("study.report")
        and imported not in REPORT_MAY_IMPORT
    )
    assert not reaching, "\n".join(reaching)


def test_mlflow_is_imported_in_tracking_only():
    """MLflow's client, its filter strings and its private members stay in `study.tracking`:
    no other module imports mlflow, so none can reach MLflow's internals (`mlflow.store`,
    `mlflow.utils`) or subclass MLflow's classes."""
    users = sorted(
        module
        for module, tree in MODULES.items()
        if not module.startswith(MLFLOW_HOME)
        and any(name.split(".")[0] == "mlflow" for name in _imports(tree))
    )
    assert not users, f"{users} import mlflow"


def test_only_the_command_line_knows_the_command_line():
    knowing = sorted(
        module
        for module, tree in MODULES.items()
        if module != "study.cli"
        and ({"argparse", "study.cli"} & _imports(tree) or "sys.argv" in ast.unparse(tree))
    )
    assert not knowing, f"{knowing} read arguments; only study.cli may"


def _keras_tuner_private_names() -> set[str]:
    """Every single-underscore name Keras Tuner's own source defines or uses: its private
    methods, attributes and helpers."""
    names = set()
    for path in Path(keras_tuner.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "attr", None) or getattr(node, "name", None)
            if isinstance(node, ast.Attribute | ast.FunctionDef | ast.ClassDef) and (
                name.startswith("_") and not name.startswith("__")
            ):
                names.add(name)
    return names


def test_keras_tuner_internals_are_used_in_the_adapter_only():
    private = _keras_tuner_private_names()
    assert {"_populate_next", "_tried_so_far", "_compute_values_hash"} <= private  # it is real
    offenders = []
    for module, tree in MODULES.items():
        if module == KERAS_TUNER_ADAPTER:
            continue
        for imported in _imports(tree):
            if imported.startswith(("keras_tuner.src", "keras_tuner.engine")):
                offenders.append(f"{module} imports {imported}")
        # Overriding needs a Keras Tuner class to subclass, so only a module importing
        # keras_tuner can override; any module could reach a member of an object it is given.
        subclassing = any(name.split(".")[0] == "keras_tuner" for name in _imports(tree))
        kinds = (ast.Attribute, ast.FunctionDef) if subclassing else (ast.Attribute,)
        for node in ast.walk(tree):
            name = getattr(node, "attr", None) or getattr(node, "name", None)
            if isinstance(node, kinds) and name in private:
                offenders.append(f"{module}:{node.lineno} uses or overrides {name}")
    assert not offenders, "\n".join(offenders)
