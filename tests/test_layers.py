"""The package's layers point down: no import cycles among tffexec's modules, no library -> CLI.

Read from the source with `ast` (nothing is imported): every `import`/`from ... import` of a
tffexec module, at module level or inside a function, is an edge of the graph. A function-level
import is still a dependency; it only delays the load, so a cycle "broken" by one is a cycle here.
What is left out: imports under `if TYPE_CHECKING:` (never executed), and imports of other
packages (TensorFlow, Ray, Rich and matplotlib load lazily on purpose; they are not tffexec).
"""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

from tffexec_test_support import REPO

#: Source folder -> the package it installs as (setup.cfg's package_dir).
PACKAGES = {"api": "tffexec", "checks": "tffexec.checks", "cli": "tffexec.cli", "executors": "tffexec.executors",
            "factories": "tffexec.factories", "formats": "tffexec.formats"}
#: `python -m tffexec` is the CLI's entry point, not library code.
ENTRY_POINTS = {"tffexec.__main__"}

def _is_library(module: str) -> bool:
    """api (the `tffexec` package itself), executors, factories and formats: all but the CLI."""
    return not (module == "tffexec.cli" or module.startswith("tffexec.cli.")
                or module in ENTRY_POINTS)


def _module_names() -> dict[str, pathlib.Path]:
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name `tree` imports (absolute), TYPE_CHECKING blocks left out."""
    found: set[str] = set()
    here = module if is_package else module.rsplit(".", 1)[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the tffexec modules it imports (a package's `__init__` counts as the package)."""
    modules = _module_names()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imported = _imports(tree, name, path.name == "__init__.py")
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return components


def test_the_package_has_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles among tffexec modules:\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_values_do_not_import_the_checker():
    """`tffexec.formats` is bytes <-> values: no module of it imports `tffexec.checks` (the
    checker marks or binds sequences; they never call it themselves), and a sequence does not
    import `compare` (no `==` that reads elements)."""
    graph = import_graph()
    offenders = sorted(f"{module} imports {target}" for module, targets in graph.items()
                       if module.startswith("tffexec.formats")
                       for target in targets if target.startswith("tffexec.checks"))
    assert not offenders, "\n".join(offenders)
    assert "tffexec.formats.compare" not in graph["tffexec.formats.sequences"]
    assert "__eq__" not in vars(_sequence_class())


def _sequence_class():
    from tffexec.formats import sequences  # noqa: PLC0415 - a test of the imported class

    return sequences.SequenceValue


def test_no_library_module_imports_the_cli():
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if _is_library(module)
        for target in targets if target == "tffexec.cli" or target.startswith("tffexec.cli."))
    assert not offenders, "library modules import the CLI:\n" + "\n".join(offenders)


def test_the_training_library_loads_no_reporting_or_cli_library():
    """`tffexec.iterate` returns numbers; the table (Rich), the plot (matplotlib) and the flags
    (click) are the CLI's: a notebook importing the loop gets none of them, nor TensorFlow."""
    script = ("import sys, tffexec.iterate, tffexec.checkpoints\n"
              "print(sorted(m for m in ('rich', 'matplotlib', 'click', 'tensorflow', 'tffexec.cli')"
              " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("graph, cycles", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b"], ["c", "d"]]),
])
def test_the_cycle_finder_finds_exactly_the_cycles(graph, cycles):
    assert sorted(find_cycles(graph)) == cycles


def test_the_graph_sees_function_level_imports_and_skips_type_checking_ones():
    source = ("from typing import TYPE_CHECKING\n"
              "from tffexec.executors import base\n"
              "if TYPE_CHECKING:\n    from tffexec.executors import federating_executor\n"
              "def f():\n    from tffexec.factories import stacks  # noqa: PLC0415\n"
              "    from . import sibling\n")
    found = _imports(ast.parse(source), "tffexec.executors.mod", False)
    assert {"tffexec.executors.base", "tffexec.factories.stacks",
            "tffexec.executors.sibling"} <= found
    assert "tffexec.executors.federating_executor" not in found
