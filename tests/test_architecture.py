"""The package's shape: no import circles inside ``smoothgan/``, and a runtime that imports neither the exporter
nor the trainer (checked statically over the source, and by running an ONNX bundle with them blocked).

How imports count: every ``import``/``from ... import`` of a ``smoothgan`` module is an edge, at module level or
inside a function, because an import in a function body is still a dependency that runs (the bundle <->
models.checkpoints circle lived in function bodies). Imports under ``if TYPE_CHECKING:`` are not edges: they never
run. ``from smoothgan.x import name`` is an edge to ``smoothgan.x.name`` when that is a module, else to
``smoothgan.x``; ``from smoothgan import __version__`` is an edge to the package ``smoothgan`` (whose
``__init__`` resolves its public names lazily, through ``importlib``, and so has no edges of its own).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "smoothgan"
# What a production pipeline imports (ARCHITECTURE.md): none of it may import smoothgan.export or .trainer.
RUNTIME = ("smoothgan", "smoothgan.artifacts", "smoothgan.bundle", "smoothgan.config", "smoothgan.errors",
           "smoothgan.fileio", "smoothgan.images", "smoothgan.styles", "smoothgan.translator", "smoothgan.backends",
           "smoothgan.faces", "smoothgan.jobs")
FORBIDDEN = ("smoothgan.export", "smoothgan.trainer")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, names) of every import that can run: TYPE_CHECKING blocks are skipped."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """smoothgan module -> the smoothgan modules it imports (see the module docstring for what counts)."""
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names in _imports(ast.parse(path.read_text(), str(path))):
            if module != "smoothgan" and not module.startswith("smoothgan."):
                continue
            targets = [f"{module}.{n}" if f"{module}.{n}" in modules else owner(module) for n in names] or \
                [owner(module)]
            graph[name].update(t for t in targets if t and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(step) == 1:
                return path[path.index(step):] + [step]
            elif not state.get(step):
                state[step] = 1
                path.append(step)
                stack.append(iter(sorted(graph.get(step, ()))))
    return None


def test_cycle_finder_finds_a_planted_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_type_checking_imports_are_not_edges() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import smoothgan.x\n"
                     "def f():\n    import smoothgan.y\n")
    assert [m for m, _ in _imports(tree)] == ["typing", "smoothgan.y"]


def test_no_import_circles_in_the_package() -> None:
    graph = import_graph()
    assert len(graph) > 40 and graph["smoothgan.bundle"]  # the walk saw the package
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_runtime_modules_never_import_the_exporter_or_the_trainer() -> None:
    graph = import_graph()
    runtime = [m for m in graph if any(m == r or m.startswith(r + ".") for r in RUNTIME[1:]) or m == "smoothgan"]
    assert "smoothgan.backends.onnxruntime" in runtime and "smoothgan.backends.tensorrt" in runtime
    seen, todo = set(runtime), list(runtime)
    while todo:  # everything the runtime reaches, directly or not
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    bad = sorted(m for m in seen if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"the runtime reaches {', '.join(bad)}"


BLOCKED_RUN = textwrap.dedent("""
    import importlib.abc, sys

    BLOCKED = ("torch", "torchvision", "smoothgan.export", "smoothgan.trainer", "onnx", "tensorrt")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np
    import smoothgan
    from smoothgan import artifacts, bundle, images, styles, translator
    import smoothgan.backends, smoothgan.backends.base, smoothgan.backends.onnxruntime, smoothgan.backends.tensorrt
    from smoothgan.bundle import EMBEDDED_BUNDLE, load_bundle

    demo = load_bundle(EMBEDDED_BUNDLE)
    with smoothgan.load(EMBEDDED_BUNDLE, backend="auto") as tr:
        assert tr.backend.name == "onnxruntime", tr.backend.name
        x = np.zeros((2, 3, demo.config.img_size, demo.config.img_size), np.float32)
        out = tr.backend.generate(x, tr.backend.mapping(np.ones((1, demo.config.latent_dim), np.float32), [1]))
    assert out.shape == x.shape and np.isfinite(out).all()
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx")
                    or m.startswith(("smoothgan.export", "smoothgan.trainer")))
    assert not leaked, leaked
    print("ok", tr.backend.describe())
""")


def test_runtime_runs_an_onnx_bundle_with_exporter_trainer_and_torch_blocked() -> None:
    pytest.importorskip("onnxruntime")
    done = subprocess.run([sys.executable, "-c", BLOCKED_RUN], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.startswith("ok onnxruntime (cpu, fp32")


def test_the_mask_size_is_the_fans() -> None:
    """The runtime's mask size (artifacts: graphs, engines, the backend policy) is what the FAN produces."""
    pytest.importorskip("torch")
    from smoothgan.artifacts import MASK_SIZE
    from smoothgan.models.fan import FAN_INPUT_SIZE

    assert MASK_SIZE == FAN_INPUT_SIZE
