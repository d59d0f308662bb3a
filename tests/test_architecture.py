"""The shape of the house: no import cycles, a thin CLI, no seams between modules (private names imported,
objects asked what they have, processes counted outside distributed/). (The layer contracts, each package's
inner layers included, are lint-imports'; module size gives way to those contracts and ruff's C901 limit.)"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dltool"
MAX_CLI_LINES = 250


def _strongly_connected(graph) -> list[set[str]]:
    """Tarjan's algorithm over dltool's import graph (imports inside functions included): the groups in a cycle."""
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(group)

    for module in modules:
        if module not in index:
            visit(module)
    return groups


def test_the_import_graph_has_no_cycle():
    graph = grimp.build_graph("dltool", include_external_packages=False)
    # A package's __init__ re-exporting its submodules is not a cycle of jobs; every other cycle is.
    cycles = [
        group
        for group in _strongly_connected(graph)
        if not all(m == g or m.startswith(g + ".") or g.startswith(m + ".") for m in group for g in group)
    ]
    assert cycles == []


def test_the_cli_is_thin():
    assert len((PACKAGE / "cli" / "app.py").read_text(encoding="utf-8").splitlines()) <= MAX_CLI_LINES


# --------------------------------------------------------------------------- seams between modules
# Each scan below reads every module of the package with ast, so a call split over lines is seen too; each asserts
# that it saw the package (MIN_MODULES) and that its pattern finds what it looks for where it is allowed, so none
# can pass by reading nothing.
MIN_MODULES = 80  # dltool had 110 modules (480 relative imports) when these scans were written


@functools.cache  # parsed once for the scans below, which only read the trees
def _parsed_modules() -> dict[str, ast.Module]:
    """{path relative to dltool/: its syntax tree} for every module of the package."""
    return {
        path.relative_to(PACKAGE).as_posix(): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")  # __version__ is public, even in _version.py


def _private_names_imported(tree: ast.Module) -> list[str]:
    """``from <dltool module> import _name`` (relative or absolute), and ``<dltool module alias>._name``."""
    found, aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "dltool"):
            source = "." * node.level + (node.module or "")
            found += [f"{node.lineno}: from {source} import {a.name}" for a in node.names if _is_private(a.name)]
            aliases |= {a.asname or a.name for a in node.names}  # a submodule imported by name: `from . import runs`
        elif isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.asname and a.name.split(".")[0] == "dltool"}
    found += [
        f"{node.lineno}: {node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and _is_private(node.attr)
    ]
    return found


def test_the_private_import_scan_finds_both_forms():
    tree = ast.parse(
        "from .train import _execute, prepare\nfrom ._version import __version__\n"
        "from .. import runs as run_folders\nimport dltool.runs as runs_module\nimport os\n"
        "run_folders._process_start(1)\nruns_module._process_alive(1, None)\nos._exit(1)\n"
    )
    assert _private_names_imported(tree) == [
        "1: from .train import _execute",
        "6: run_folders._process_start",
        "7: runs_module._process_alive",
    ]


def test_no_module_imports_another_modules_private_name():
    modules = _parsed_modules()
    relative_imports = sum(isinstance(n, ast.ImportFrom) and n.level > 0 for t in modules.values() for n in ast.walk(t))
    assert len(modules) >= MIN_MODULES and relative_imports >= 300, (len(modules), relative_imports)
    found = {path: names for path, tree in modules.items() if (names := _private_names_imported(tree))}
    assert found == {}, "make the name public where it is defined, or move the code that needs it there"


def _hasattr_calls(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, the first argument's name) of every ``hasattr(x, ...)``; ``self.data`` counts as ``data``."""
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr" and node.args:
            subject = node.args[0]
            name = subject.id if isinstance(subject, ast.Name) else getattr(subject, "attr", "")
            calls.append((node.lineno, name))
    return calls


@pytest.mark.parametrize(
    "subject, home",
    [("observer", "training/observer.py"), ("data", "data/")],
    ids=["observer outside training/observer.py", "data outside data/"],
)
def test_no_code_asks_an_observer_or_the_data_what_it_has_outside_their_own_package(subject, home):
    modules = _parsed_modules()
    calls = {path: _hasattr_calls(tree) for path, tree in modules.items()}
    assert len(modules) >= MIN_MODULES and sum(map(len, calls.values())) >= 5  # hasattr(layer, "adapt"), ...
    offenders = [
        f"{path}:{line}"
        for path, found in calls.items()
        if not path.startswith(home)
        for line, name in found
        if name == subject
    ]
    assert offenders == [], f"give the {subject} object a method or property for it (in dltool/{home})"


ARRAY_SPLITS = {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "in_memory", "share_batches"}


def _split_attributes(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, attribute) of every ``data.x_train``-like access on a name ``data`` (or ``self.data``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ARRAY_SPLITS:
            subject = node.value
            name = subject.id if isinstance(subject, ast.Name) else getattr(subject, "attr", "")
            if name == "data":
                found.append((node.lineno, node.attr))
    return found


def test_no_code_outside_data_reaches_into_a_kind_of_data():
    """Commands and training use the TrainingData interface (fit_inputs, keep_share, training_arrays, ...), never
    the arrays of one kind, so a streamed source works wherever arrays do."""
    offenders = [
        f"{path}:{line} data.{attribute}"
        for path, tree in _parsed_modules().items()
        if not path.startswith("data/")
        for line, attribute in _split_attributes(tree)
    ]
    assert offenders == [], "add a method to dltool/data/base.py's TrainingData and implement it for every kind"
    assert _split_attributes(ast.parse("data.x_train\nself.data.in_memory\nraw.x_test")) == [
        (1, "x_train"),
        (2, "in_memory"),
    ]


def test_the_hasattr_scan_sees_a_call_split_over_lines_and_on_an_attribute():
    tree = ast.parse(
        "hasattr(\n    data, 'x_train'\n)\nhasattr(self.observer, 'on_epoch_end')\nhasattr(layer, 'adapt')\n"
    )
    assert _hasattr_calls(tree) == [(1, "data"), (4, "observer"), (5, "layer")]


def _process_count_calls(tree: ast.Module) -> list[int]:
    """Lines that ask how many processes there are or which one this is, as the code did before the ProcessGroup:
    ``processes.count()`` / ``processes.index()`` (the old module) or JAX's ``jax.process_count()`` /
    ``jax.process_index()``."""
    asked = {"processes": {"count", "index"}, "jax": {"process_count", "process_index"}}
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.attr in asked.get(node.func.value.id, ())
    ]


def test_only_the_distributed_package_asks_which_process_this_is_or_how_many_there_are():
    modules = _parsed_modules()
    calls = {path: lines for path, tree in modules.items() if (lines := _process_count_calls(tree))}
    inside = {path: lines for path, lines in calls.items() if path.startswith("distributed/")}
    assert len(modules) >= MIN_MODULES and inside, "the scan no longer finds the group asking JAX"
    assert not (PACKAGE / "processes.py").exists()
    outside = {path: lines for path, lines in calls.items() if path not in inside}
    assert outside == {}, "ask the ProcessGroup passed in (group.size, group.rank, group.is_leader) instead"


# --------------------------------------------------------------------------- the tests' own markers
TESTS = Path(__file__).resolve().parent
SPAWNERS = {
    ("subprocess", "run"),
    ("subprocess", "Popen"),
    ("subprocess", "check_call"),
    ("subprocess", "check_output"),
}


def _starts_a_child_process(function: ast.FunctionDef) -> bool:
    """Whether the test's own body calls ``run_cli`` (tests/e2e_support.py) or ``subprocess.run``/``Popen``/..."""
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            called = node.func
            if isinstance(called, ast.Name) and called.id == "run_cli":
                return True
            if isinstance(called, ast.Attribute) and isinstance(called.value, ast.Name):
                if (called.value.id, called.attr) in SPAWNERS:
                    return True
    return False


def _marker_names(expression: ast.expr) -> set[str]:
    """{'slow', 'subprocess'} of ``pytest.mark.slow`` or ``[pytest.mark.slow, pytest.mark.subprocess]``."""
    return {
        node.attr
        for node in ast.walk(expression)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "mark"
    }


def test_every_test_that_starts_a_child_process_is_marked_subprocess():
    spawning, unmarked = 0, []
    for path in sorted(TESTS.rglob("test_*.py")):  # tests/unit/..., if they move into folders
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_marks = set().union(
            *(
                _marker_names(node.value)
                for node in tree.body
                if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets)
            )
        )
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and _starts_a_child_process(node):
                spawning += 1
                marks = module_marks.union(*(_marker_names(d) for d in node.decorator_list))
                if "subprocess" not in marks:
                    unmarked.append(f"{path.relative_to(TESTS)}::{node.name}")
    assert spawning >= 20, spawning  # the scan sees the end-to-end tests
    assert unmarked == [], "add @pytest.mark.subprocess (pytest -m 'not subprocess' must leave them out)"


def test_no_two_test_modules_share_a_name():
    # The tests folders have no __init__.py: pytest imports each module by its basename, and a second module of
    # the same name stops the whole suite's collection ("import file mismatch").
    names: dict[str, list[str]] = {}
    for path in (PACKAGE.parent / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.parent.name))
    assert {name: folders for name, folders in names.items() if len(folders) > 1} == {}
