"""The run-folder scheme and the one-process-per-folder lock."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rotnet.config import RunConfig
from rotnet.errors import RotnetError
from rotnet.layout import RunId, RunLock, is_locked, parse_run_dir, run_dir
from tests.helpers import cli

HOLD = (
    "import sys, time; from rotnet.layout import RunLock; RunLock(sys.argv[1]).acquire(); "
    "print('held', flush=True); time.sleep(60)"
)


def test_run_dir_round_trips():
    cfg = RunConfig(experiment="full-from-rotation", arch="resnet34", seed=2, train_per_class=20)
    folder = run_dir(Path("root"), cfg)
    assert folder == Path("root/resnet34/full-from-rotation@20pc/seed2")
    assert parse_run_dir(folder) == RunId("resnet34", "full-from-rotation", 2, 20)
    assert parse_run_dir(Path("a/b/seedx")) is None and parse_run_dir(Path("a/b@3/seed1")) is None


@pytest.fixture
def holder(tmp_path):
    folder = tmp_path / "runs" / "resnet18" / "rotation" / "seed0"
    folder.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    proc.kill()
    proc.wait()


def test_a_second_process_is_refused_naming_the_holder(holder, fake_root, capsys):
    folder, proc = holder
    with pytest.raises(RotnetError, match=f"pid {proc.pid}"):
        RunLock(folder).acquire()
    assert is_locked(folder) == str(proc.pid)
    root = folder.parents[2]
    assert cli("train", "rotation", root=root, data=fake_root) == 2
    err = capsys.readouterr().err
    assert f"in use by another rotnet process (pid {proc.pid})" in err and err.count("\n") == 1
    assert not (folder / "metrics.jsonl").exists()


def test_the_lock_dies_with_its_process(holder):
    folder, proc = holder
    proc.kill()
    proc.wait()
    assert is_locked(folder) is None
    with RunLock(folder):  # flock is per open file: a second open, even in this process, sees it held
        assert is_locked(folder) == str(os.getpid())
    assert is_locked(folder) is None


@pytest.mark.parametrize("level", ["data segment", "arch", "experiment", "seed", "config.json"])
def test_runs_are_found_through_no_link(tmp_path, level):
    """`rotnet report` counted runs reached through a link (`runs/X/resnet18` -> another runs root): every reader
    finds run folders the same way, through no link."""
    from rotnet.layout import find_runs

    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    run = Path("pets/resnet18/rotation/seed0")
    (theirs / run).mkdir(parents=True)
    (theirs / run / "config.json").write_text("{}")
    (ours / run).mkdir(parents=True)
    (ours / run / "config.json").write_text("{}")
    assert find_runs(ours) == [ours / run]
    depth = ["data segment", "arch", "experiment", "seed", "config.json"].index(level) + 1
    linked = Path(*run.parts[:depth]) if level != "config.json" else run / "config.json"
    target = ours / linked
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink()
    target.symlink_to(theirs / linked)
    assert find_runs(ours) == []
