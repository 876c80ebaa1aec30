"""The package's architecture: no import cycles, layers that import only downward, small modules, and
every module importable on its own.

The import graph is built from the source (AST), so imports inside functions and under
``if TYPE_CHECKING:`` count too: a cycle hidden in a function still ties the modules together.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "rl_agents"
PACKAGE_DIR = ROOT / PACKAGE
MAX_LINES = 500
ALLOWED_LONG = {"rl_agents/envs/state.py"}  # a single state machine, allowed to stay whole


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package's ``__init__`` is the package)."""
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _resolve_from(importer: str, node: ast.ImportFrom) -> str | None:
    """The absolute module ``from X import ...`` names, with relative imports resolved."""
    if node.level == 0:
        return node.module
    is_package = modules()[importer].name == "__init__.py"
    base = importer.split(".")
    base = base if is_package else base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str) -> set[str]:
    """The package modules ``name`` imports anywhere in its source (functions, TYPE_CHECKING, ...)."""
    known = modules()
    tree = ast.parse(modules()[name].read_text(), filename=str(modules()[name]))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(name, node)
            if base is None:
                continue
            # from a.b import c: the module a.b.c when that is a module, else a.b itself.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                # import a.b.c where a.b.c is not a file (an attribute path): the longest module prefix.
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    found.add(target)
    return found


@lru_cache(maxsize=1)
def import_graph() -> dict[str, frozenset[str]]:
    return {name: frozenset(imports_of(name)) for name in modules()}


def find_cycle(graph: dict[str, frozenset[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (iterative DFS with colours)."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for start in sorted(graph):
        if colour[start] != white:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        colour[start] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                stack.pop()
            elif colour.get(nxt, black) == grey:
                return path[path.index(nxt) :] + [nxt]
            elif colour.get(nxt, black) == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def in_layer(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def test_graph_resolution_sees_the_known_edges():
    """The graph builder itself: function-level and TYPE_CHECKING imports and from-imports of modules."""
    graph = import_graph()
    assert "rl_agents.training.learner" in graph["rl_agents.training.collector"]  # under TYPE_CHECKING
    assert "rl_agents.progress" in graph["rl_agents.training.trainer"]  # inside Trainer.train
    assert "rl_agents.agents.ppo" in graph["rl_agents.agents"]
    assert "rl_agents.core.agent" in graph["rl_agents.core.composition"]
    assert find_cycle({"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"})}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": frozenset({"b"}), "b": frozenset()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


FORBIDDEN_FOR_AGENTS = ("rl_agents.training", "rl_agents.checkpointing", "rl_agents.config", "rl_agents.cli")


def _violations(importers: list[str], allowed) -> list[str]:
    graph = import_graph()
    return [
        f"{importer} imports {target}"
        for importer in importers
        for target in sorted(graph[importer])
        if not allowed(importer, target)
    ]


def test_agent_modules_are_independent():
    agent_modules = [name for name in modules() if name.startswith("rl_agents.agents.")]
    assert agent_modules, "no agent modules found"

    def allowed(importer: str, target: str) -> bool:
        if in_layer(target, "rl_agents.agents") or target == PACKAGE:
            return False  # another agent, the agent list, or the whole package
        return not any(in_layer(target, layer) for layer in FORBIDDEN_FOR_AGENTS)

    assert _violations(agent_modules, allowed) == []


def test_checkpointing_does_not_import_training_config_or_agents():
    importers = [name for name in modules() if in_layer(name, "rl_agents.checkpointing")]
    forbidden = ("rl_agents.training", "rl_agents.config", "rl_agents.agents")

    def allowed(importer: str, target: str) -> bool:
        return target != PACKAGE and not any(in_layer(target, layer) for layer in forbidden)

    assert _violations(importers, allowed) == []


def test_core_imports_only_core():
    importers = [name for name in modules() if in_layer(name, "rl_agents.core")]
    assert _violations(importers, lambda importer, target: in_layer(target, "rl_agents.core")) == []


def test_modules_are_small():
    too_long = {}
    for path in modules().values():
        relative = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and relative not in ALLOWED_LONG:
            too_long[relative] = lines
    assert too_long == {}, f"modules over {MAX_LINES} lines: {too_long}"


# ---------------------------------------------------------------------------------------- importability
# Each module must import on its own, as the first rl_agents module of an interpreter: an import
# cycle that the package's usual import order hides shows up there. A fresh interpreter per module
# would cost a torch import each (seconds), so one subprocess imports torch and the other third-party
# packages once and then, before each module, drops every rl_agents module from sys.modules: each
# import starts from a state where no rl_agents module is loaded, as in a fresh interpreter (only
# rl_agents modules can take part in an rl_agents import cycle). ``__main__`` modules run the
# command line on import, so they are left out.
IMPORT_LAYERS = ("rl_agents.training", "rl_agents.checkpointing", "rl_agents.config", "rl_agents.cli", "rl_agents.core")
IMPORT_CHECKED = sorted(
    name
    for name in modules()
    if any(in_layer(name, layer) for layer in IMPORT_LAYERS) and not name.endswith(".__main__")
)

_IMPORT_SCRIPT = """
import importlib, importlib.machinery, json, sys, traceback
import gymnasium, numpy, torch  # third-party state shared by every check

# Compile each source file once (code objects are immutable), also where bytecode is not cached on disk.
_compiled = {}
_source_to_code = importlib.machinery.SourceFileLoader.source_to_code
def _cached_source_to_code(self, data, path, *args, **kwargs):
    key = (str(path), bytes(data))
    if key not in _compiled:
        _compiled[key] = _source_to_code(self, data, path, *args, **kwargs)
    return _compiled[key]
importlib.machinery.SourceFileLoader.source_to_code = _cached_source_to_code

results = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "rl_agents" or m.startswith("rl_agents.")]:
        del sys.modules[loaded]
    importlib.invalidate_caches()
    try:
        importlib.import_module(name)
        results[name] = None
    except BaseException:
        results[name] = traceback.format_exc()
print("RESULTS" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def import_results() -> dict[str, str | None]:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_SCRIPT, json.dumps(IMPORT_CHECKED)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS")]
    assert done.returncode == 0 and lines, f"the import check failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(lines[-1][len("RESULTS") :])


def test_import_check_covers_the_layers():
    for layer in IMPORT_LAYERS:
        assert layer in IMPORT_CHECKED
    assert "rl_agents.training.trainer" in IMPORT_CHECKED and "rl_agents.cli.main" in IMPORT_CHECKED


@pytest.mark.parametrize("name", IMPORT_CHECKED)
def test_module_imports_on_its_own(import_results, name):
    assert name in import_results
    error = import_results[name]
    assert error is None, f"import {name} fails as the first rl_agents import:\n{error}"
