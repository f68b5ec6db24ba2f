"""The shape of the code: layers that import only downwards, no cycles, small files.

The rules (README, "How the code is organised") are checked on the source text, so they hold
for imports inside functions too: a function-level import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "robench"
MAX_LINES = 400

# Each unit (a top-level module or package of robench) may import only units listed before
# it: the order is the direction data flows in, from the parts to the commands.
LAYERS = [
    "errors",
    "atomic", "registry", "runtime", "cost", "distributed", "preemption", "progress",
    "threat",
    "config",
    "data", "models", "augment", "schedules", "recipes",
    "corruptions",
    "records", "runs",
    "attacks",
    "defenses",
    "evaluation",
    "training",
    "targets",
    "report",
    "sweep",
    "api",
    "cli",
    "__main__",
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement of `module`."""
    tree = ast.parse(MODULES[module].read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module).split(".")[: -node.level + 1 or None]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            for alias in node.names:
                sub = f"{name}.{alias.name}"
                # `from package import submodule` depends on the submodule, not the package
                out.append((sub, []) if sub in MODULES else (name, [alias.name]))
    return [(name, names) for name, names in out if name.split(".")[0] == "robench"]


def _resolve(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _edges() -> dict[str, set[str]]:
    edges = defaultdict(set)
    for module in MODULES:
        for name, _ in _imports(module):
            target = _resolve(name)
            if target != module:
                edges[module].add(target)
    return edges


def _unit(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_unit_has_a_place_in_the_layers():
    units = {_unit(m) for m in MODULES} - {""}
    assert sorted(units - set(LAYERS)) == []
    assert sorted(set(LAYERS) - units) == []


def test_every_import_names_a_module_that_exists():
    # Else an import of a moved module would pass the rules above by resolving to the root.
    missing = sorted(f"{m}: {name}" for m in MODULES for name, names in _imports(m)
                     if name not in MODULES and _resolve(name) == "robench")
    assert missing == []


def test_the_root_package_imports_nothing_of_robench():
    # Every module may read robench.__version__, so the root must stay below them all.
    assert _edges().get("robench", set()) == set()


def test_no_module_imports_a_layer_above_its_own():
    rank = {u: i for i, u in enumerate(LAYERS)}
    upward = sorted(
        f"{m} -> {t}" for m, targets in _edges().items() for t in targets
        if _unit(m) in rank and _unit(t) in rank and rank[_unit(t)] > rank[_unit(m)]
    )
    assert upward == []


def test_no_submodule_imports_its_own_package():
    # A package's __init__ imports its submodules; one importing the package back is a cycle.
    back = sorted(f"{m} -> {t}" for m, targets in _edges().items() for t in targets
                  if t != "robench" and m.startswith(t + ".")
                  and MODULES[t].name == "__init__.py")
    assert back == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def test_there_is_no_import_cycle():
    assert _cycles(_edges()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_takes_a_private_name_from_another():
    # A helper two modules share is public in the lower one.
    private = sorted(f"{m}: {name}.{n}" for m in MODULES for name, names in _imports(m)
                     for n in names if n.startswith("_") and not n.startswith("__"))
    assert private == []


def _module_aliases(tree: ast.AST, module: str) -> set[str]:
    """Names a module binds to other robench modules (`from robench import runs as r`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names |= {a.asname or a.name for a in node.names
                      if f"{node.module}.{a.name}" in MODULES}
        elif isinstance(node, ast.Import):
            names |= {a.asname for a in node.names if a.asname and a.name in MODULES}
    return names


def test_no_module_reaches_into_another_for_a_private_name():
    reached = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases = _module_aliases(tree, module)
        reached += [f"{module}: {n.value.id}.{n.attr}" for n in ast.walk(tree)
                    if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                    and n.value.id in aliases and n.attr.startswith("_")
                    and not n.attr.startswith("__")]
    assert sorted(reached) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_file_is_over_the_limit(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines"
