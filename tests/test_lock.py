"""The run lock (rotnet.lock): a second process is refused naming the holder, and the lock dies with its process."""

import os
import re
import subprocess
import sys

import pytest

from rotnet.cli import main
from rotnet.errors import RotnetError
from rotnet.lock import RunLock, is_locked
from tests.helpers import TINY, cli, no_hang

HOLD = (
    "import sys, time; from rotnet.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
    "print('held', flush=True); time.sleep(60)"
)


def hold(folder):
    """Another process holding folder's lock, as a run training in it (or a probe sealing into it) does."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def holder(tmp_path):
    folder = tmp_path / "runs" / "resnet18" / "rotation" / "seed0"
    folder.mkdir(parents=True)
    proc = hold(folder)
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


@pytest.mark.parametrize("kind", ["a FIFO", "a link", "a folder", "not text"])
def test_the_holder_is_read_only_from_a_regular_file(tmp_path, kind):
    """The pid shown to a refused process comes from the lock file as rotnet wrote it; anything else there is
    "unknown", never waited on or followed."""
    from rotnet.lock import holder

    path, elsewhere = tmp_path / ".lock", tmp_path / "elsewhere"
    elsewhere.write_text("4242\n")
    {
        "a FIFO": lambda: os.mkfifo(path),
        "a link": lambda: path.symlink_to(elsewhere),
        "a folder": lambda: path.mkdir(),
        "not text": lambda: path.write_bytes(b"\xff\xfe"),
    }[kind]()
    with no_hang():
        assert holder(path) == "unknown"
    path.unlink() if not path.is_dir() else path.rmdir()
    path.write_text("4242\n")
    assert holder(path) == "4242"


def door_args(door: str, run, root, data) -> list[str]:
    """The command line of each command that acts on a run another process may hold."""
    where = ["--data-root", str(data), "--no-download"]
    return {
        "verify": ["verify", str(run), *where, "--device", "cpu"],
        "export": ["export", str(run), str(root.parent / "hub")],
        "probe": ["probe", str(run), "--epochs", "1", *where, "--device", "cpu"],
        "a transfer run's source": ["train", "full-from-rotation", "--runs-root", str(root), *where, *TINY],
        "--init": ["train", "full-from-rotation", "--init", str(run), "--runs-root", str(root.parent / "other"),
                   *where, *TINY],
    }[door]  # fmt: skip


DOORS = ["verify", "export", "probe", "a transfer run's source", "--init"]


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "training"])
@pytest.mark.parametrize("door", [*DOORS, "load_backbone"])
def test_a_run_another_process_holds_is_refused_by_every_command_that_acts_on_it(
    door, finished, tiny_runs, tiny_partial, fake_root, tmp_path, capsys
):
    """A run's lock is held by the process that trains it or seals a probe into it: its record is changing and its
    files are that process's. Every door to a run (`record.open_run`, verify's, a transfer run's source) now refuses
    it, naming the holder, and writes nothing. Before: verify wrote a verdict about the moving record into its folder,
    export, probe, a transfer run and load_backbone read a finished run while a probe was sealing into it, and a
    transfer run whose rotation run was training was told to train it ("make them with: rotnet train rotation")."""
    import shutil

    import rotnet

    root = tmp_path / "runs"
    run = root / "resnet18/rotation/seed0"
    shutil.copytree((tiny_runs if finished else tiny_partial) / "resnet18/rotation/seed0", run)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = hold(run)
    try:
        said = f"it is in use by another rotnet process (pid {proc.pid}); wait for it to finish or stop it"
        if door == "load_backbone":
            with pytest.raises(RotnetError, match=re.escape(f"cannot load weights from {run}: {said}")):
                rotnet.load_backbone(run)
        else:
            with no_hang():
                code = main(door_args(door, run, root, fake_root))
            err = capsys.readouterr().err
            assert code == 2 and said in err and err.count("\n") == 1, err  # export, probe: through open_run too
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    finally:
        proc.kill()
        proc.wait()
