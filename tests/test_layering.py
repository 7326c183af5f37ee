"""The package's layers are one-way (README "Data flow", shared/DESIGN.md):

    io -> data -> models (+ layers, losses, metrics) -> training -> inference (+ explain)
       -> export -> apps (+ evaluation) -> experiments/*.py

A module may import from its own layer or the layers before it, never from a later one, and
no set of modules may import each other in a circle. Edges are read with ``ast`` from the
source: module-level and function-local imports, names resolved lazily by a package
(``lazy_exports(__name__, {...})``) and every string constant that names a tfneuro module
(what ``importlib.import_module`` or a registry's ``"module:function"`` builder would load).
``experiments/*.py`` import the installed package: no ``sys.path`` edits, and no experiment
imports another.

How these tests were seen to fail: an upward function-local import added to
``tfneuro/io/conform.py`` (``from tfneuro.training import loop``), a string
``"tfneuro.export.graph"`` in ``tfneuro/inference/slices.py``, and the former
``inference.postprocess -> inference.bridging -> inference.postprocess`` re-export each made
the matching assertion below fail; ``test_checker_finds_what_it_should`` keeps such cases in
the suite.
"""

import ast
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "tfneuro")
EXPERIMENTS = os.path.join(REPO, "experiments")

#: Layer of each top-level part of the package (prefix match, longest first).
LAYERS = [
    ("tfneuro.errors", 0), ("tfneuro.utils", 0), ("tfneuro", 0),
    ("tfneuro.io", 1),
    ("tfneuro.data", 2),
    ("tfneuro.layers", 3), ("tfneuro.models", 3), ("tfneuro.losses", 3), ("tfneuro.metrics", 3),
    ("tfneuro.training", 4),
    ("tfneuro.inference", 5), ("tfneuro.explain", 5),
    ("tfneuro.export", 6),
    ("tfneuro.apps", 7), ("tfneuro.evaluation", 7),
]
_MODULE_STRING = re.compile(r"^(tfneuro(?:\.\w+)*)(?::\w+)?$")


def layer_of(module: str) -> int:
    best = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return dict(LAYERS)[best]


def package_sources(root=PACKAGE) -> dict:
    """``{module name: (source, is_package)}`` of every ``.py`` file below ``root``."""
    found = {}
    base = os.path.dirname(root)
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), base)[:-3].replace(os.sep, ".")
                is_pkg = rel.endswith(".__init__")
                name = rel[: -len(".__init__")] if is_pkg else rel
                with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                    found[name] = (fh.read(), is_pkg)
    return found


def import_edges(sources: dict) -> dict:
    """``{module: {(imported module, line)}}`` from the sources (see the module docstring)."""
    modules = set(sources)

    def resolve(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = {}
    for mod, (src, is_pkg) in sources.items():
        out = edges.setdefault(mod, set())
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(src)):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
                if len(node.args) > 1 and isinstance(node.args[1], ast.Dict):
                    targets = [f"{mod}.{v.value}" for v in node.args[1].values
                               if isinstance(v, ast.Constant)]
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and \
                    any(getattr(t, "id", "") == "_EXPORTS" for t in node.targets):
                targets = [f"{mod}.{v.value}" for v in node.value.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                m = _MODULE_STRING.match(node.value)
                if m and m.group(1) in modules:
                    targets = [m.group(1)]
            for t in targets:
                t = resolve(t) if t.startswith("tfneuro") else None
                if t and t != mod:
                    out.add((t, getattr(node, "lineno", 0)))
    return edges


def upward_edges(edges: dict) -> list:
    return sorted(f"{a}:{line} -> {b} (layer {layer_of(a)} -> {layer_of(b)})"
                  for a, outs in edges.items() for b, line in outs if layer_of(b) > layer_of(a))


def cycles(edges: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    graph = {a: sorted({b for b, _ in outs}) for a, outs in edges.items()}
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def edges():
    return import_edges(package_sources())


def test_every_module_has_a_layer(edges):
    for mod in edges:
        assert layer_of(mod) is not None, mod


def test_no_import_reaches_up_the_layers(edges):
    assert upward_edges(edges) == []


def test_no_import_circles(edges):
    assert cycles(edges) == []


def test_checker_finds_what_it_should():
    """The checker itself: an upward function-local import, an importlib string and a circle
    between two modules of one layer are all found."""
    sources = {
        "tfneuro": ("", True),
        "tfneuro.io": ("", True),
        "tfneuro.io.a": ("def f():\n    from tfneuro.training import loop\n", False),
        "tfneuro.io.b": ("import importlib\nM = importlib.import_module('tfneuro.export.graph')\n"
                         "from tfneuro.io import c\n", False),
        "tfneuro.io.c": ("from . import b\n", False),
        "tfneuro.training": ("", True),
        "tfneuro.training.loop": ("", False),
        "tfneuro.export": ("", True),
        "tfneuro.export.graph": ("from tfneuro.io.a import f\n", False),
    }
    e = import_edges(sources)
    up = upward_edges(e)
    assert any(s.startswith("tfneuro.io.a:2 -> tfneuro.training.loop") for s in up), up
    assert any(s.startswith("tfneuro.io.b:2 -> tfneuro.export.graph") for s in up), up
    assert ["tfneuro.io.b", "tfneuro.io.c"] in cycles(e)


def _experiment_sources():
    for f in sorted(os.listdir(EXPERIMENTS)):
        if f.endswith(".py"):
            with open(os.path.join(EXPERIMENTS, f), encoding="utf-8") as fh:
                yield f, fh.read()


def test_experiments_import_the_package_and_not_each_other():
    stems = {f[:-3] for f, _ in _experiment_sources()}
    problems = []
    for f, src in _experiment_sources():
        if "sys.path" in src or "noqa: E402" in src:
            problems.append(f"{f}: edits sys.path / imports after code")
        for node in ast.walk(ast.parse(src)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [(node.module or "").split(".")[0]]
            elif isinstance(node, ast.ImportFrom):
                names = [a.name for a in node.names]
            problems += [f"{f}:{node.lineno} imports experiment {n}" for n in names if n in stems]
    assert problems == []
