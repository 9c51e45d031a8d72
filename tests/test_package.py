"""The package's shape: imports only run downward (no cycle), and the command line's front door imports no torch."""

import ast
from pathlib import Path

import rotnet

SRC = Path(rotnet.__file__).parent


def import_graph(module_level_only: bool) -> dict[str, set[str]]:
    """rotnet module -> the rotnet modules it imports (at module level, or anywhere)."""
    graph = {}
    for path in SRC.glob("*.py"):
        tree = ast.parse(path.read_text())
        nodes = tree.body if module_level_only else list(ast.walk(tree))
        deps = set()
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rotnet"):
                deps.add(node.module.removeprefix("rotnet.").removeprefix("rotnet") or "__init__")
                if node.module == "rotnet":
                    deps |= {a.name for a in node.names if (SRC / f"{a.name}.py").is_file()}
            elif isinstance(node, ast.Import):
                deps |= {a.name.removeprefix("rotnet.") for a in node.names if a.name.startswith("rotnet.")}
        graph[path.stem] = deps - {path.stem, "__init__"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path, node, dep]
            if dep not in state and (found := visit(dep, [*path, node])):
                return found
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return []


def test_no_import_cycle_at_module_level_or_inside_functions():
    for module_level_only in (True, False):
        graph = import_graph(module_level_only)
        assert "report" in graph["runner"] if not module_level_only else "runtime" in graph["runner"]
        assert find_cycle(graph) == [], find_cycle(graph)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_cli_imports_no_heavy_module_at_module_level():
    heavy = {
        "loop",
        "run",
        "models",
        "evaluate",
        "data",
        "datasets",
        "checkpoint",
        "runtime",
        "distributed",
        "runner",
        "api",
    }
    assert not import_graph(True)["cli"] & heavy
