"""The layering holds: plugin -> run -> backends/checks -> helpers -> data, with no import
cycle between modules or subpackages, and no branch on a backend's name outside backends/."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpu_conformance.paths import REPO_ROOT

PACKAGE = "gpu_conformance"
#: a module's layer: it may import its own layer and those below, never above
LAYERS: dict[str, int] = {
    # data: pure, no cluster access
    "errors": 0, "log": 0, "verdict": 0, "paths": 0, "timeouts": 0, "gpus": 0, "hints": 0,
    "options": 0, "retry": 0, "workloads": 0, "nodes": 0, "gpu_nodes": 0,
    "settings": 0, "gates": 0, "sharing": 0,
    # helpers: the Kubernetes API, the offline cluster, Azure, images
    "kapi": 1, "kube": 1, "waits": 1, "objects": 1, "cleanup": 1, "diagnostics": 1, "device_plugin": 1,
    "namespaces": 1, "binaries": 1, "offline": 1, "aks": 1, "realnode": 1, "reports": 1,
    "simulator": 1, "coordination": 1, "permissions": 1,
    # the checks and the backends
    "checks": 2, "backends": 2,
    # one run
    "run": 3, "sweep": 3, "fleet": 3,
    # the entry points
    "pytest_plugin": 4, "cli": 4, "__main__": 4, "docs": 4,
}
EXTERNAL_TOPS = ("fixtures", "suites")


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted((REPO_ROOT / PACKAGE).rglob("*.py")):
        if "data" in path.relative_to(REPO_ROOT / PACKAGE).parts[:1]:
            continue  # scripts shipped to pods, not part of the package's import graph
        rel = path.relative_to(REPO_ROOT).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        yield ".".join(parts), path
    for top in EXTERNAL_TOPS:
        for path in sorted((REPO_ROOT / top).glob("*.py")):
            rel = path.relative_to(REPO_ROOT).with_suffix("")
            yield ".".join(p for p in rel.parts if p != "__init__"), path


def _runtime_imports(path: Path, module: str) -> set[str]:
    """Modules imported at run time (TYPE_CHECKING blocks excluded), resolved to names."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                pkg = module.split(".")[: -node.level] if path.name != "__init__.py" else \
                    module.split(".")[: len(module.split(".")) - node.level + 1]
                base = ".".join([*pkg, node.module])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


MODULES = dict(_modules())


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        graph[module] = {name for name in _runtime_imports(path, module)
                         if name in MODULES and name != module}
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return LAYERS.get(parts[1])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def test_every_package_module_has_a_layer() -> None:
    missing = sorted(m for m in MODULES if m.startswith(PACKAGE + ".") and _layer(m) is None)
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_no_module_imports_a_higher_layer() -> None:
    wrong = []
    for module, imports in _graph().items():
        mine = _layer(module)
        if mine is None:
            continue
        wrong += [f"{module} ({mine}) imports {name} ({_layer(name)})" for name in imports
                  if (_layer(name) or 0) > mine]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_modules() -> None:
    assert _find_cycle(_graph()) is None


def _unit(module: str) -> str:
    """A subpackage counts as one unit; a top-level module as itself."""
    parts = module.split(".")
    if parts[0] == PACKAGE and len(parts) > 2:
        return ".".join(parts[:2])
    if parts[0] == PACKAGE and len(parts) == 2 and (REPO_ROOT / PACKAGE / parts[1]).is_dir():
        return module
    return module


def test_no_import_cycle_between_packages() -> None:
    units: dict[str, set[str]] = {}
    for module, imports in _graph().items():
        units.setdefault(_unit(module), set()).update(
            _unit(i) for i in imports if _unit(i) != _unit(module))
    assert _find_cycle(units) is None


@pytest.mark.parametrize("module", [m for m in MODULES if m != f"{PACKAGE}.pytest_plugin"])
def test_nothing_below_the_plugin_imports_it(module: str) -> None:
    assert f"{PACKAGE}.pytest_plugin" not in _runtime_imports(MODULES[module], module) | {
        name for name in _runtime_imports(MODULES[module], module)
        if name.startswith(f"{PACKAGE}.pytest_plugin")}


BACKEND_NAME_COMPARED = re.compile(
    r"""(==|!=|\bin\b)\s*[(\[{]?\s*["'](kwok|attach|aks|kind)["']|["'](kwok|attach|aks|kind)["']\s*(==|!=)""")


def test_no_backend_name_is_compared_outside_backends() -> None:
    found = []
    for module, path in MODULES.items():
        if module.startswith((f"{PACKAGE}.backends", f"{PACKAGE}.aks")):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if BACKEND_NAME_COMPARED.search(line):
                found.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
