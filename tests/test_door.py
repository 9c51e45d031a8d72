"""One door: a command reads a run's record once and passes the checked record down; the source weights of a
transfer run are read once; epochs are trained by one function, which `run` and `verify` both call."""

import ast
import contextlib
import os
import shutil
import sys
from pathlib import Path

import pytest

import rotnet
from tests.helpers import cli

OPENED: list[str] = []
COUNTING = [False]


WALKED: list[str] = [""]  # the folder the file layer's descriptor walk stands in (rotnet.files.open_dir)


def _count_opens(event: str, args: tuple) -> None:
    """Record each opened path; a name opened relative to a folder descriptor (the file layer opens one folder at a
    time with dir_fd, which the audit event does not carry) is joined to the folder the walk reached."""
    if not (COUNTING[0] and event == "open" and isinstance(args[0], str | bytes | os.PathLike)):
        return
    path, flags = os.fsdecode(args[0]), args[2] if len(args) > 2 and isinstance(args[2], int) else 0
    if os.path.isabs(path):
        if flags & os.O_DIRECTORY:
            WALKED[0] = path
        OPENED.append(path)
    elif flags & os.O_DIRECTORY and WALKED[0]:
        WALKED[0] = os.path.join(WALKED[0], path)
    else:
        OPENED.append(os.path.join(WALKED[0], path) if WALKED[0] else path)


sys.addaudithook(_count_opens)  # for this process's life (a hook cannot be removed); it counts only when asked


@contextlib.contextmanager
def counting():
    """Every file this process opens in the block (Python's audit events: open() and os.open())."""
    OPENED.clear()
    COUNTING[0] = True
    try:
        yield OPENED
    finally:
        COUNTING[0] = False


def opens(opened: list[str], path: Path) -> int:
    return sum(Path(p).resolve() == path.resolve() for p in opened if not p.endswith(".tmp"))


# (the command, the run folder whose record it reads, files of that run -> the most times each may be opened);
# "rotation" is the finished rotation run a transfer run starts from.
CASES = {
    "resume a stopped run": (
        ("train", "rotation"),
        "resnet18/rotation/seed0",
        {"config.json": 2, "manifest.json": 2},
    ),
    "reuse a finished run": (("train", "rotation"), "resnet18/rotation/seed0", {"config.json": 2, "manifest.json": 2}),
    "train a transfer run": (
        ("train", "layer4-from-rotation", "--epochs", "1"),
        "resnet18/rotation/seed0",
        {"model.safetensors": 1, "config.json": 1, "manifest.json": 1},
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_command_reads_each_record_file_at_most_as_often_as_it_must(
    case, tiny_partial, tiny_runs, fake_root, tmp_path
):
    """Before the record was read once, a resume opened config.json 10 times and manifest.json 4 times, and a
    transfer run its rotation weights 3 times (benchmarks/opens.py). Twice is the most a run needs: once before its
    data loads, once more under its lock (another process may have changed it in between)."""
    args, folder, most = CASES[case]
    shutil.copytree(tiny_partial if case.startswith("resume") else tiny_runs, tmp_path, dirs_exist_ok=True)
    with counting() as opened:
        assert cli(*args, root=tmp_path, data=fake_root) == 0
    counts = {name: opens(opened, tmp_path / folder / name) for name in most}
    assert all(counts[name] <= most[name] for name in most), counts
    assert counts["config.json"] >= 1  # the count sees the reads at all


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
