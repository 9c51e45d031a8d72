"""Helpers more than one test file uses: tiny configurations and CLI runners, fake datasets and image folders in
their official layouts, record edits, waiting on a child process."""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from rotnet.cli import main

# Small enough to run in a second or two on a CPU: 80 images, batch 32, 2 epochs.
TINY = ["--epochs", "2", "--batch-size", "32", "--set", "eval_batch_size=64"]


def cli(*args: str, root: Path, data: Path) -> int:
    return main([*args, "--runs-root", str(root), "--data-root", str(data), "--no-download", *TINY])


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def reseal(folder: Path) -> None:
    """Rewrite a run's manifest from the files as they are now: what a forger who knows the format would do (the
    manifest is tamper-evident, not a signature), and how a test changes a record without its seal catching it."""
    from rotnet.files import sha256_file
    from rotnet.manifest import Seal, owned_files

    Seal(folder, {name: sha256_file(folder / name) for name in owned_files(folder)}).commit()  # nothing under way


def partial(*args: str, root: Path, data: Path, monkeypatch) -> int:
    """`cli(*args)` stopped as a Ctrl-C would stop it, right after its first epoch's checkpoint: a partial run."""
    import os
    import signal

    import rotnet.run

    real, calls = rotnet.run.save_state, []

    def save_then_stop(*a, **kw):
        real(*a, **kw)
        if not calls:
            calls.append(1)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(rotnet.run, "save_state", save_then_stop)
    try:
        return cli(*args, "--checkpoint-minutes", "0", root=root, data=data)
    finally:
        monkeypatch.setattr(rotnet.run, "save_state", real)


def confusion_for(test_acc: float, classes: int, total: int = 10_000) -> list[list[int]]:
    """A confusion matrix of `total` test images whose diagonal gives test_acc (to 2 decimals), as a record's must."""
    right = round(test_acc * total / 100)
    m = [[0] * classes for _ in range(classes)]
    for i in range(classes):
        m[i][i] = right // classes + (i < right % classes)
        m[i][(i + 1) % classes] += (total - right) // classes + (i < (total - right) % classes)
    return m


def fabricate(source: Path, folder: Path, *, test_acc: float | None = None, **config) -> Path:
    """A consistent, sealed run record made from another run's files: copied to folder, its configuration and
    result given the folder's arch/experiment/seed (and `config`), its accuracy set in result.json and the last
    line of metrics.jsonl alike. For report tests that need many runs without training them."""
    import shutil

    from rotnet.layout import parse_run_dir

    shutil.copytree(source, folder)
    rid = parse_run_dir(folder)
    ident = {"arch": rid.arch, "experiment": rid.experiment, "seed": rid.seed}
    record = json.loads((folder / "config.json").read_text())
    record["config"] |= ident | config
    (folder / "config.json").write_text(json.dumps(record, indent=2))
    result = json.loads((folder / "result.json").read_text()) | ident
    result |= {k: record["config"][k] for k in ("task", "epochs", "dataset") if k in record["config"]}  # as its run
    lines = metrics(folder)
    if test_acc is not None:
        result["test_acc"] = lines[-1]["test_acc"] = test_acc
        result["confusion"] = confusion_for(test_acc, len(result["class_names"]))
    (folder / "result.json").write_text(json.dumps(result, indent=2))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    reseal(folder)
    return folder


def as_made_by_0_3(folder: Path) -> Path:
    """A run record as rotnet 0.3 wrote it: no manifest, config.json without the keys 0.4 added (the stream
    contract, the CPU) and naming version 0.3.0, the version that made docs/results' paper runs."""
    (folder / "manifest.json").unlink(missing_ok=True)
    record = json.loads((folder / "config.json").read_text())
    old = {k: v for k, v in record.items() if k not in ("stream", "cpu")} | {"rotnet_version": "0.3.0"}
    (folder / "config.json").write_text(json.dumps(old))
    return folder


TINY_PRESET = str(Path(__file__).with_name("tiny.toml"))


def reproduce(root: Path, data: Path, *extra: str, jobs: str | None = "1") -> list[str]:
    """A tiny reproduce, one run at a time unless jobs says otherwise (None: rotnet's own choice)."""
    args = ["reproduce", "--preset", TINY_PRESET, "--runs-root", str(root), "--data-root", str(data), "--no-download"]
    return [*args, *(["--jobs", jobs] if jobs else []), *extra]


def with_rotation(tiny_runs: Path, root: Path) -> Path:
    """root holding the session's finished rotation run, which a tiny reproduce reuses (the same configuration)."""
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", root / "resnet18/rotation/seed0")
    return root


def wait_for(path_glob: str, root: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list(root.glob(path_glob)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)


TINY_ARGS = ["--preset", TINY_PRESET, "--epochs", "1", "--no-download"]


def images(n: int, seed: int = 0, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def save(folder: Path, pixels: np.ndarray, names=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(folder / (names[i] if names else f"{i:03d}.png"))


def labeled(root: Path, train: dict, test: dict) -> Path:
    """root/train/CLASS and root/test/CLASS with the given image counts, all distinct."""
    seed = 0
    for split, counts in (("train", train), ("test", test)):
        for name, n in counts.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            seed += 1
            save(root / split / name, images(n, seed), [f"{split}-{name}-{i}.png" for i in range(n)])
    return root


def load_folder(folder: Path, **options):
    from rotnet.config import DataOptions
    from rotnet.datasets import load_dataset

    load_dataset.cache_clear()  # a process keeps its last datasets; these tests change the files between loads
    return load_dataset(str(folder), 0, 0, DataOptions(**options))


def every(data):
    import torch

    return torch.cat([data.train_images, data.test_images])


def load_data(dataset, size=0, seed=0, **options):
    from rotnet.config import DataOptions
    from rotnet.datasets import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fake files differ from the official md5s
        return load_dataset(str(dataset), size, seed, DataOptions(**options))


def write_fake_cifar100(root: Path, n_train: int = 60, n_test: int = 20) -> Path:
    """cifar-100-python/{train,test,meta}: protocol-2 pickles with fine_labels, coarse_labels and data."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = [i % 100 for i in range(n)]
        batch = {
            "filenames": [f"{i}.png" for i in range(n)],
            "batch_label": name,
            "fine_labels": fine,
            "coarse_labels": [f % 20 for f in fine],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    meta = {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]}
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return root


def write_fake_stl10(root: Path, n_train: int = 40, n_test: int = 20, n_unlabeled: int = 60) -> tuple[Path, dict]:
    """stl10_binary/*_X.bin (uint8, each image column-major as the release stores it), *_y.bin (labels 1-10)."""
    rng = np.random.default_rng(2)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)  # (N, C, H, W) as a viewer sees them
        images.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")  # column-major within each channel
        arrays[split] = images
        if split != "unlabeled":
            np.array([1 + i % 10 for i in range(n)], dtype=np.uint8).tofile(folder / f"{split}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    return root, arrays


def write_folder(root: Path, images: np.ndarray, labels=None, split: str = "", classes=("cat", "dog")) -> None:
    for i, pixels in enumerate(images):
        sub = root / split / (classes[labels[i]] if labels is not None else "")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.transpose(1, 2, 0)).save(sub / f"{i:04d}.png")


UNSAFE = ["../../../outside", "/tmp/rotnet-absolute", "a/b", "..", "a\\b"]


@contextlib.contextmanager
def no_hang(seconds: int = 10):
    """A read that blocks (a FIFO opened for reading waits for a writer) fails the test instead of hanging it."""

    def stop(*_):
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


RUN = "resnet18/rotation/seed0"


def edit_json(path, **changes):
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def drop_keys(*keys: str, version: str | None = None):
    """An edit of config.json: the keys removed (top level), the rotnet version set when given."""

    def edit(folder):
        record = {k: v for k, v in json.loads((folder / "config.json").read_text()).items() if k not in keys}
        (folder / "config.json").write_text(json.dumps(record | ({"rotnet_version": version} if version else {})))

    return edit


def error_line(capsys, *args: str, root: Path, data: Path, code: int = 2) -> str:
    """Run the CLI; check the exit code and that stderr's only error output is one line; return that line."""
    command, experiment, *flags = args
    argv = [command, experiment, *TINY, *flags]  # the test's flags come last, so they win
    assert main([*argv, "--runs-root", str(root), "--data-root", str(data), "--no-download"]) == code
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("rotnet: warning")]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def gain_row(diffs: list[float], reference_gain: float | None) -> dict:
    """A from-rotation row and its from-random partner, made up so that the paired differences are `diffs`."""
    from rotnet.gains import with_gains

    base = {"arch": "resnet18", "data": "cifar10", "reference": None}
    rotation = {**base, "experiment": "full-from-rotation", "by_seed": {s: 80 + d for s, d in enumerate(diffs)}}
    random = {**base, "experiment": "full-from-random", "by_seed": dict.fromkeys(range(len(diffs)), 80.0)}
    if reference_gain is not None:
        rotation["reference"], random["reference"] = 80 + reference_gain, 80.0
    return with_gains([rotation, random])[0]


def write(path, text: str):
    path.write_text(text)
    return path
