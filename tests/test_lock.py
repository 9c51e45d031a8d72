"""The run lock (rotnet.lock): a second process is refused naming the holder, and the lock dies with its process."""

import os
import subprocess
import sys

import pytest

from rotnet.errors import RotnetError
from rotnet.lock import RunLock, is_locked
from tests.helpers import cli, no_hang

HOLD = (
    "import sys, time; from rotnet.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
    "print('held', flush=True); time.sleep(60)"
)


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
