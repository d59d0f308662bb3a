"""The shape of the house: no import cycles, a thin CLI. (The layer contracts, each package's inner layers included,
are lint-imports'; module size gives way to those contracts and ruff's complexity limit, C901.)"""

from __future__ import annotations

from pathlib import Path

import grimp

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
