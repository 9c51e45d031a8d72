"""The package's shape: imports only run downward (no cycle), and the command line's front door imports no torch."""

import ast
import os
import shutil
import sys
from pathlib import Path

import pytest

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


def lint_imports(src: Path):
    """import-linter's contracts of pyproject.toml, checked on the package at `src`."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(src))
    run = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    command = [sys.executable, "-c", run, "--config", str(root / "pyproject.toml"), "--no-cache"]
    return subprocess.run(command, env=env, capture_output=True, text=True, cwd=src)


def test_the_declared_layers_hold_and_an_upward_import_breaks_them(tmp_path):
    """pyproject.toml declares the layers (import-linter); docs/architecture.md draws them. The contract is kept by
    the code as it is, and broken by one import that runs upward (the foundations importing the command line)."""

    kept = lint_imports(SRC.parent)
    assert kept.returncode == 0 and "1 kept, 0 broken" in kept.stdout, kept.stdout[-2000:] + kept.stderr[-2000:]
    copy = shutil.copytree(SRC, tmp_path / "rotnet", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "errors.py").write_text((copy / "errors.py").read_text() + "\n\ndef _up():\n    import rotnet.cli\n")
    broken = lint_imports(tmp_path)
    assert broken.returncode != 0 and "rotnet.errors is not allowed to import rotnet.cli" in broken.stdout


def test_the_architecture_page_names_every_module_in_its_declared_layer():
    """docs/architecture.md's table has one row per layer of the contract, each naming exactly that layer's modules."""
    import re
    import tomllib

    root = Path(__file__).resolve().parents[1]
    (contract,) = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    declared = [set(re.split(r"\s*[|:]\s*", layer.strip())) - {"__main__", "presets"} for layer in contract["layers"]]
    declared = [layer for layer in declared if layer]
    page = (root / "docs/architecture.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| ") and "`" in line.split("|")[2]]
    drawn = [set(re.findall(r"`(\w+)`", row.split("|")[2])) for row in rows]
    assert drawn == declared
    assert {m for layer in declared for m in layer} == {p.stem for p in SRC.glob("*.py")} - {"__init__", "__main__"}


SRC = Path(rotnet.__file__).parent


def calls_of(name: str) -> dict[str, int]:
    """module -> how many calls of a function called `name` it makes."""
    out = {}
    for path in sorted(SRC.glob("*.py")):
        tree = ast.parse(path.read_text())
        n = sum(
            isinstance(node, ast.Call)
            and (getattr(node.func, "id", None) == name or getattr(node.func, "attr", None) == name)
            for node in ast.walk(tree)
        )
        if n:
            out[path.stem] = n
    return out


def test_epochs_are_trained_in_one_place_that_run_and_verify_both_call():
    """`loop.fit` is called by `lifecycle.train_epochs` alone; `run` and `verify` call that, and verify stops it at
    the epoch it wants (`until`) instead of raising through the save hook."""
    assert calls_of("fit") == {"lifecycle": 1}
    assert set(calls_of("train_epochs")) == {"run", "verify"}


@pytest.mark.parametrize("module", sorted(p.stem for p in SRC.glob("*.py")))
def test_no_module_but_the_ones_that_run_plans_imports_run(module):
    """verify once imported eight private helpers of run.py; what two commands share lives in the lifecycle,
    state and checks modules, and only a plan's runs reach `run.run` (in turn: runner; in parallel: jobs)."""
    tree = ast.parse((SRC / f"{module}.py").read_text())
    names = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "rotnet.run"
        for alias in node.names
    ]
    assert names == (["run"] if module in ("runner", "jobs") else []), names


# Test files named after no module: the end-to-end checks, and this file (the package's shape).
NOT_A_MODULE = {"end_to_end", "package"}
# Modules without behaviour of their own to test: the package's re-exports and `python -m rotnet`.
NO_BEHAVIOUR = {"__init__", "__main__"}


def test_the_tests_mirror_the_package():
    """tests/test_MODULE.py for every module with behaviour, and no test file named after nothing (a script of
    tools/ may have one too)."""
    tests = {p.stem.removeprefix("test_") for p in Path(__file__).parent.glob("test_*.py")}
    modules = {p.stem for p in SRC.glob("*.py")}
    tools = {p.stem for p in (Path(__file__).parent.parent / "tools").glob("*.py")}
    assert sorted(modules - NO_BEHAVIOUR - tests) == []
    assert sorted(tests - modules - tools - NOT_A_MODULE) == []


def test_every_test_file_a_comment_or_docstring_names_exists():
    import re

    root = SRC.parent.parent
    texts = [p.read_text() for p in [*SRC.glob("*.py"), *root.glob("benchmarks/*.py"), *root.glob("docs/*.md")]]
    named = {m for text in texts for m in re.findall(r"tests/(test_\w+\.py)", text)}
    named.discard("test_MODULE.py")  # docs/development.md: the pattern, not a file
    assert named and sorted(n for n in named if not (root / "tests" / n).is_file()) == []
