"""The layers point one way (docs/architecture.md): data -> training -> export -> bundle contract <-
runtime <- app. Checked on the import graph read from the source (every import, including the ones
inside functions), so a lazy import cannot hide a cycle or a torch dependency of the device runtime."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kdp_edge", "export", "firmware_bridge", "calibration")

# The device runtime: what a robot installs (numpy + onnxruntime / LiteRT + pyserial + click).
RUNTIME = ("kdp_edge.runtime", "kdp_edge.bundle", "kdp_edge.layout", "kdp_edge.planning", "kdp_edge.mazes", "kdp_edge.errors", "kdp_edge.envs",
           "kdp_edge.fileio", "kdp_edge.metrics", "kdp_edge.provenance")
# Training side and above: the runtime must import none of it.
NOT_FOR_RUNTIME = ("torch", "kdp_edge.train", "kdp_edge.drift", "kdp_edge.models", "kdp_edge.methods",
                   "kdp_edge.checkpoint", "kdp_edge.diffusion", "kdp_edge.torch_planner", "kdp_edge.evaluate",
                   "kdp_edge.cli", "kdp_edge.demo", "export", "calibration", "firmware_bridge")
# Transport-only package: protocol, link, ports, virtual robot, firmware. The app lives in kdp_edge.
TRANSPORT = "firmware_bridge"
APP_MODULES_IN_TRANSPORT: set[str] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(mod: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".")
    is_pkg = (ROOT / Path(*base) / "__init__.py").exists()
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """module -> every module it imports (absolute names; ``from X import Y`` adds X.Y when Y is a module)."""
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    known = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        mod = module_name(path)
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = resolve(mod, node)
                deps.add(target)
                deps.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known)
        graph[mod] = {d for d in deps if d != mod}
    return graph


def under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), among the project's modules.
    A package's ``__init__`` re-exporting its submodules is not a dependency of those submodules."""
    nodes = set(graph)
    edges = {m: {d for d in graph[m] if d in nodes and not m.startswith(d + ".")} for m in nodes}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_runtime_imports_no_torch_and_nothing_from_training_export_or_app(graph):
    bad = {m: sorted(d for d in deps if under(d, NOT_FOR_RUNTIME))
           for m, deps in graph.items() if under(m, RUNTIME)}
    assert {m: d for m, d in bad.items() if d} == {}


def test_transport_imports_nothing_from_kdp_edge_or_calibration(graph):
    transport = {m: deps for m, deps in graph.items() if under(m, (TRANSPORT,)) and m not in APP_MODULES_IN_TRANSPORT}
    assert transport, "no transport modules found"
    bad = {m: sorted(d for d in deps if under(d, ("kdp_edge", "calibration", "export")) or under(d, APP_MODULES_IN_TRANSPORT))
           for m, deps in transport.items()}
    assert {m: d for m, d in bad.items() if d} == {}


def test_the_checker_sees_a_cycle_and_a_lazy_torch_import():
    """The checks above can fail: a two-module cycle and a function-level import are found."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    tree = ast.parse("def f():\n    import torch\n")
    assert any(isinstance(n, ast.Import) and n.names[0].name == "torch" for n in ast.walk(tree))
