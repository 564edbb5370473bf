"""Architecture rules, checked on the syntax tree of every module under src/ulmr (not with a grep)."""

from __future__ import annotations

import ast
from pathlib import Path

import ulmr
from ulmr.methods.registry import METHODS

SRC = Path(ulmr.__file__).resolve().parent
LOOKUP_CALLS = {"get_method", "method_class"}


# --------------------------------------------------------------------------- method names stay in methods/
def _name_literals(node: ast.AST | None, names: set[str]) -> list[ast.Constant]:
    """String constants equal to a method name: ``node`` itself, or the elements of a tuple/list/set literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
        return [node]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [c for e in node.elts for c in _name_literals(e, names)]
    return []


def _called(node: ast.Call) -> str | None:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def method_name_uses(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of each method name written as a literal where code compares or looks it up: either side of
    a comparison (``==``, ``!=``, ``in``, ``not in``; tuples, lists and sets compared against included), a subscript
    key, a dict-literal key, the first argument of get_method / method_class, or a ``method=`` keyword argument.
    Plain defaults (``method: str = "ulmr"``) and text are not uses."""
    found: list[ast.Constant] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                found += _name_literals(side, names)
        elif isinstance(node, ast.Subscript):
            found += _name_literals(node.slice, names)
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                found += _name_literals(key, names)
        elif isinstance(node, ast.Call):
            if _called(node) in LOOKUP_CALLS and node.args:
                found += _name_literals(node.args[0], names)
            for kw in node.keywords:
                if kw.arg == "method":
                    found += _name_literals(kw.value, names)
    return sorted((c.lineno, c.value) for c in found)


def test_method_name_finder_flags_comparisons_and_lookups_only():
    names = {"ulmr", "ga", "retrain"}
    source = '''
METHOD_NAMES = {"ulmr": "ULMR"}                      # 2: dict key
def f(cfg, method: str = "ulmr", methods=("ga",)):   # defaults: allowed
    """Compare with 'ga' in the docs."""             # text: allowed
    label = "ga"                                      # plain assignment: allowed
    if cfg.method == "ulmr":                          # 6
        pass
    if "retrain" in methods:                          # 8
        pass
    if cfg.method not in ("kl", "ga"):                # 10 (only registered names count)
        pass
    x = NAMES["retrain"]                              # 12
    get_method("ga", beta=0.1)                        # 13
    registry.method_class("ulmr")                     # 14
    TrainConfig(method="retrain", seed=0)             # 15
    return "ulmr" != cfg.method or [m for m in methods if m != "ga"]   # 16 twice
'''
    assert method_name_uses(source, names) == [(2, "ulmr"), (6, "ulmr"), (8, "retrain"), (10, "ga"), (12, "retrain"),
                                               (13, "ga"), (14, "ulmr"), (15, "retrain"), (16, "ga"), (16, "ulmr")]


def test_no_method_name_is_compared_or_looked_up_outside_methods():
    """What a pipeline, command or benchmark needs to know about a method is a class attribute of it
    (:class:`ulmr.methods.Method`), so adding a method touches one file and one registry line."""
    names = set(METHODS)
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if (SRC / "methods") in path.parents:
            continue
        for line, name in method_name_uses(path.read_text(encoding="utf-8"), names):
            offenders.append(f"{path.relative_to(SRC.parent)}:{line}: '{name}'")
    assert not offenders, "method names compared or looked up outside ulmr/methods/:\n" + "\n".join(offenders)
