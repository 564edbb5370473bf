"""The package's shape, checked on the syntax tree: no import cycles, imports flow down the data path,
function-level imports say why, and no function grows past 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "ulmr"

# Rank of each part of the package along the data path (load -> generate -> train -> merge -> evaluate);
# a module may import only parts of its own rank or below. Unlisted modules fail the test, so a new
# module must be placed here on purpose.
RANKS: dict[str, int] = {
    "version": 0, "errors": 0, "selection": 0, "paths": 0, "atomic": 0, "progress": 0, "plots": 0,
    "data": 1, "refusal": 1, "models": 1, "card": 1,
    "inference": 2, "decoding": 2, "methods": 2, "config": 2,
    "metrics": 3, "generate": 3, "anchor": 3,
    "training": 4, "train": 4, "merge": 4,
    "eval": 5, "sweep": 5,
    "pipeline": 6, "compare": 6, "verify": 6, "benchmarks": 6,
    "api": 7, "demo": 7, "commands": 8, "cli": 9, "": 9,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, ast.AST, bool]]:
    """(imported ulmr module, node, inside a function?) for every import statement in the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: list[tuple[str, ast.AST, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                base = ".".join(package[: len(package) - child.level + 1]) if child.level else ""
                target = ".".join(x for x in (base, child.module or "") if x)
                for alias in child.names:
                    full = f"{target}.{alias.name}"
                    found.append((full if full in MODULES else target, child, in_function))
            elif isinstance(child, ast.Import):
                found.extend((a.name, child, in_function) for a in child.names)
            visit(child, inner)

    visit(tree, False)
    return [(m, node, fn) for m, node, fn in found if m in MODULES and m != name]


def _with_parents(module: str) -> list[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for target, _, _ in _imports(name, path):
            graph[name].update(p for p in _with_parents(target) if p != name and not name.startswith(p + "."))
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (found := dfs(w)):
                return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := dfs(v)):
            return found
    return None


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    """Function-level imports count too: a cycle hidden inside a function is still a cycle."""
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_part_has_a_rank():
    unranked = sorted({_part(m) for m in MODULES} - set(RANKS))
    assert not unranked, f"place these modules in RANKS: {unranked}"


def test_imports_flow_down_the_data_path():
    upward = []
    for name, path in MODULES.items():
        for target, node, _ in _imports(name, path):
            if RANKS.get(_part(target), 99) > RANKS.get(_part(name), 99):
                upward.append(f"{path.relative_to(SRC)}:{node.lineno} {name} -> {target}")
    assert not upward, "lower layers import higher ones:\n" + "\n".join(upward)


def test_function_level_imports_say_why():
    """An import inside a function is for a heavy or optional dependency, with a comment saying so."""
    silent = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for _, node, in_function in _imports(name, path):
            if in_function and "#" not in lines[node.lineno - 1] and not lines[node.lineno - 2].strip().startswith("#"):
                silent.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not silent, "function-level ulmr imports without a reason comment:\n" + "\n".join(sorted(set(silent)))


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_functions_stay_short(path: Path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80]
    assert not long, f"{path.relative_to(PKG)}: functions over 80 lines: {long}"
