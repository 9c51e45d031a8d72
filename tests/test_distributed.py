"""torchrun with 2 CPU processes (gloo) on synthetic data, against a 1-process run at the same global batch."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rotnet.checkpoint import load_tensors
from rotnet.distributed import World, shard
from rotnet.models import initial_model
from tests.helpers import metrics, wait_for

ARGS = ["--epochs", "2", "--batch-size", "16", "--set", "eval_batch_size=64", "--no-download"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher(nproc: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
    ]


def rotnet(nproc: int, *args: str, wait: bool = True):
    """`rotnet ARGS` in one process, or under torchrun in nproc."""
    cmd = [*(launcher(nproc) if nproc > 1 else [sys.executable]), "-m", "rotnet", *args]  # one needs no launcher
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    if not wait:
        # Its own session: the test ends torchrun and the ranks it started by their process group, nothing else.
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def train(root, data, nproc: int, *extra: str, wait: bool = True):
    where = ["--device", "cpu", "--runs-root", str(root), "--data-root", str(data)]
    return rotnet(nproc, "train", "rotation", *where, *ARGS, *extra, wait=wait)


def verify(folder, data, nproc: int, *extra: str):
    return rotnet(nproc, "verify", str(folder), "--device", "cpu", "--data-root", str(data), "--no-download", *extra)


def descendants(pid: int) -> list[int]:
    """The processes below pid, by their parent ids in /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL pid and every process below it, each by its own id (never by matching command lines)."""
    for p in [*descendants(pid), pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_shards_are_disjoint_and_cover_the_batch():
    order = torch.randperm(37)
    for size in (1, 2, 3):
        parts = [shard(order, World(rank, size)) for rank in range(size)]
        assert sorted(torch.cat(parts).tolist()) == list(range(37))
        assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


def test_two_processes_match_one(tmp_path, fake_root):
    one, two = tmp_path / "one", tmp_path / "two"
    for root, n in ((one, 1), (two, 2)):
        done = train(root, fake_root, n)
        assert done.returncode == 0, done.stderr[-2000:]
    folder = "resnet18/rotation/seed0"
    result = json.loads((two / folder / "result.json").read_text())
    assert result["world_size"] == 2 and result["ranks_agree"] is True  # final weights identical on both ranks
    m1, m2 = metrics(one / folder), metrics(two / folder)
    assert len(m1) == len(m2) == 2
    # The same global batches, augmentations and rotations reach both runs; only BatchNorm's batch statistics differ
    # (per rank of 8 images vs 16; SyncBatchNorm is GPU-only in PyTorch), so the losses agree loosely, less so as
    # the weights drift apart: compare the first epoch loosely and the schedule exactly.
    assert abs(m1[0]["train_loss"] - m2[0]["train_loss"]) < 0.25, (m1[0], m2[0])
    assert [r["lr"] for r in m1] == [r["lr"] for r in m2]
    w1, _ = load_tensors(one / folder / "model.safetensors")
    w2, _ = load_tensors(two / folder / "model.safetensors")
    init = initial_model("resnet18", 4, "imagenet", 0).state_dict()
    assert all(v.shape == w1[k].shape and bool(torch.isfinite(v).all()) for k, v in w2.items())
    assert not torch.equal(w2["conv1.weight"], init["conv1.weight"])  # it trained, from the same init as w1


def test_checkpoint_of_two_ranks_resumes_on_one(tmp_path, fake_root):
    proc = train(tmp_path, fake_root, 2, "--checkpoint-every", "2", wait=False)
    wait_for("**/checkpoints/e0000-s000004.safetensors", tmp_path, proc, timeout=240)
    kill_tree(proc.pid)  # torchrun and the ranks it started (they lead sessions of their own)
    proc.wait()
    done = train(tmp_path, fake_root, 1, "--checkpoint-every", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming at epoch" in done.stdout
    run = tmp_path / "resnet18/rotation/seed0"
    # Each start records its own number of processes (the record said 1, the last start's, for the whole run) ...
    record = json.loads((run / "config.json").read_text())
    assert [record["world_size"], *(r["world_size"] for r in record["resumes"])] == [2, 1]
    # ... so verify knows epoch 1's first steps were sharded over two: a difference cannot fail it (it was "not
    # verified: ... differ on the same machine"), and it says why
    checked = verify(run, fake_root, 1)
    assert checked.returncode == 3, checked.stdout + checked.stderr[-2000:]
    assert "its starts were trained by 2, 1 processes (torchrun), this re-run by 1" in checked.stdout


@pytest.fixture(scope="module")
def made_by(tmp_path_factory, fake_root) -> dict[int, Path]:
    """A rotation run trained in one process and one trained by two (torchrun), by the number of processes."""
    runs = {}
    for nproc in (1, 2):
        root = tmp_path_factory.mktemp(f"made-by-{nproc}")
        done = train(root, fake_root, nproc)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[nproc] = root / "resnet18/rotation/seed0"
    return runs


@pytest.mark.parametrize(("made", "checked"), [(1, 1), (2, 2), (2, 1), (1, 2)])
def test_a_run_verifies_under_the_number_of_processes_that_trained_it(made, checked, made_by, fake_root, tmp_path):
    """A step's sums depend on how its batch was sharded: a run repeats bit for bit only under its own number of
    processes. There verify re-trains it as ranks of one job, rank 0 alone speaking and writing verify.json; under
    another number it is told so before any work, and writes nothing. Before: one process re-trained a run of two and
    called it "not verified ... on the same machine"; under torchrun each process did the whole command, and each
    wrote its own "not verified"."""
    run = tmp_path / "resnet18/rotation/seed0"
    shutil.copytree(made_by[made], run)
    done = verify(run, fake_root, checked, "--all")
    out = done.stdout + done.stderr[-3000:]
    if made == checked:
        assert done.returncode == 0, out
        assert done.stdout.count("verified: epochs 1-2 re-trained and the final weights they make identical") == 1
        assert [p.name for p in run.glob("verify*.json")] == ["verify.json"]
        assert json.loads((run / "verify.json").read_text())["world_size"] == checked
        return
    assert done.returncode != 0 and not list(run.glob("verify*.json")), out
    told = (
        f"was trained by 2 processes (torchrun); its sums repeat only under as many: torchrun --nproc_per_node 2 -m "
        f"rotnet verify {run}"
        if made == 2
        else "was trained in one process; verify it without torchrun (here, one of 2)"
    )
    assert told in done.stderr and "site-packages/rotnet" not in done.stderr and "src/rotnet" not in done.stderr, out
    assert done.stderr.count("rotnet: error:") == checked  # a line from each process (torchrun's own report aside)
    assert [r["epoch"] for r in metrics(tmp_path / "resnet18/rotation/seed0")] == [1, 2]
