"""Tiny synthetic CIFAR-10 in the real `cifar-10-batches-py` format, so every test runs in seconds on a CPU."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from rotnet.readers import FOLDER, META_FILE, TEST_FILES, TRAIN_FILES
from tests.helpers import cli, partial

PER_BATCH = 16  # 80 training images, 16 test images


def pytest_configure(config):
    """Under pytest-xdist each worker computes on one thread, so that the workers share the cores instead of
    oversubscribing them (runs record the thread count they trained on; resume and verify use it).

    A suite started in the background (`cmd &`, nohup) inherits SIGINT ignored (and under nohup SIGHUP), and so would
    every process the tests start: the Ctrl-C and hangup tests would test the shell's choice, not rotnet (which keeps
    an ignored signal ignored, as `nohup rotnet reproduce` asks). The tests' processes get both back; a suite that
    must outlive its terminal is started with `setsid`.

    The suite runs on the CPU, as CI does: a GPU is hidden from it and from every process it starts (set before torch
    looks), so `--device auto` and the jobs' one-GPU-per-run pick the CPU there too. On a GPU machine the runs would
    otherwise record another device, stream contract and thread count than the tests expect."""
    import os
    import signal

    os.environ["CUDA_VISIBLE_DEVICES"] = ""

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def write_fake_cifar(root: Path, per_batch: int = PER_BATCH, seed: int = 0) -> Path:
    """Write six batch files and batches.meta with the real layout (protocol-2 pickles of dicts)."""
    rng = np.random.default_rng(seed)
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(TRAIN_FILES + TEST_FILES):
        labels = [(j + i) % 10 for j in range(per_batch)]
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        batch = {"batch_label": name, "labels": labels, "data": data, "filenames": [f"{j}.png" for j in labels]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / META_FILE, "wb") as f:
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, f, protocol=2)
    return root


def made_once(tmp_path_factory, name: str, make) -> Path:
    """`make(folder)` once per test session, shared by every pytest-xdist worker: the first to ask makes it under a
    file lock, the others wait and use it (a worker of its own would train the same tiny runs again)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, made = shared / name, shared / f"{name}.made"
    with FileLock(str(shared / f"{name}.lock")):
        if not made.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that died while making it
            folder.mkdir()
            make(folder)
            made.touch()
    return folder


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory) -> Path:
    return made_once(tmp_path_factory, "cifar", write_fake_cifar)


@pytest.fixture(scope="session")
def fake_data(fake_root):
    import warnings

    from rotnet.readers import load_cifar10

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_cifar10(fake_root, download=False)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, fake_root) -> Path:
    """A finished TINY rotation run that kept its last checkpoint and epoch 1's (`--keep-checkpoints 1 --keep-epoch
    1`: the tests of checkpoints and of `verify --from-epoch` start from them), made once per session; copy it before
    changing anything under it."""

    def make(root):
        assert cli("train", "rotation", "--keep-checkpoints", "1", "--keep-epoch", "1", root=root, data=fake_root) == 0

    return made_once(tmp_path_factory, "tiny-runs", make)


@pytest.fixture(scope="session")
def tiny_partial(tmp_path_factory, fake_root) -> Path:
    """A TINY rotation run stopped as a Ctrl-C stops it, right after its first epoch's checkpoint
    (`helpers.partial`), made once per session; copy it before resuming or changing it."""

    def make(root):
        with pytest.MonkeyPatch.context() as monkeypatch:
            assert partial("train", "rotation", root=root, data=fake_root, monkeypatch=monkeypatch) == 130

    return made_once(tmp_path_factory, "tiny-partial", make)


@pytest.fixture(scope="session")
def tiny_five(tmp_path_factory, tiny_runs, fake_root) -> Path:
    """Every experiment of the report, TINY, through the CLI: tiny_runs' rotation run and the four transfer runs
    from it, made once per session (each test module trained its own). Copy it before changing anything under it."""
    import shutil

    from rotnet.experiments import EXPERIMENTS

    def make(root):
        shutil.copytree(tiny_runs, root, dirs_exist_ok=True)
        for name in EXPERIMENTS:
            if name != "rotation":
                assert cli("train", name, root=root, data=fake_root) == 0

    return made_once(tmp_path_factory, "tiny-five", make)


@pytest.fixture(autouse=True)
def _no_plots_unless_marked(request, monkeypatch):
    """A report in a test draws no plots (4 s of a tiny report's 4.05; each plot has its own tests in test_plots.py)
    unless the test is marked `plots`: those that check a report's images or its plot-dependent sections."""
    if request.node.get_closest_marker("plots"):
        return
    from rotnet import plots

    for name in [n for n in vars(plots) if n.startswith("plot_")]:
        monkeypatch.setattr(plots, name, lambda *_, **__: False)


@pytest.fixture(autouse=True)
def _said_once_per_test():
    """rotnet says some warnings once per process (a modified CIFAR, a short class); each test is its own process
    as far as they go, so that no test depends on which ran before it."""
    import rotnet.errors

    rotnet.errors._SAID.clear()


@pytest.fixture
def copy(tiny_runs, tmp_path):
    shutil.copytree(tiny_runs, tmp_path / "runs")
    return tmp_path / "runs"


@pytest.fixture
def stopped(tiny_partial, tmp_path):
    """The session's partial rotation run, copied into tmp_path."""
    return shutil.copytree(tiny_partial, tmp_path, dirs_exist_ok=True)


@pytest.fixture
def data(tmp_path):
    return write_fake_cifar(tmp_path / "data")


@pytest.fixture
def trained(tiny_runs, tmp_path):
    """A finished rotation run (with its last checkpoint) to point other runs at: the session's, copied, since tests
    change it (it was trained again for each test)."""
    return shutil.copytree(tiny_runs, tmp_path / "trained")
