"""Issue 34's hostile inputs, each as a user would try it: prints one line per case (exit code and the last line
of output, or HANG). Runs `python -m rotnet` of whatever rotnet is importable, so the same script measures two
commits: `PYTHONPATH=OLD/src python benchmarks/hostile_inputs.py`, then with `PYTHONPATH=src`.
Cases: a FIFO named x.png, a link test/cat/dogs -> ../dog, a constant blue channel, 1-pixel images, float TIFFs
of 0-255, --skip-bad-images with the first image bad, --archs "", --keep-epoch 99, the API's jobs=-3, verify after
the folder moved, a runs root whose arch folder links to another root's runs. Name cases to run only those."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def folder(root, n=40, labeled=True, size=8, seed=0, fn=None):
    rng = np.random.default_rng(seed)
    for split in ("train", "test") if labeled else ("",):
        for i in range(n):
            c = ("cat", "dog")[i % 2] if labeled else ""
            d = Path(root, split, c)
            d.mkdir(parents=True, exist_ok=True)
            px = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            if fn:
                px = fn(px)
            Image.fromarray(px).save(d / f"{split}{i:04d}.png")
    return Path(root)


def run(name, args, cwd, timeout=60):
    try:
        p = subprocess.run(
            [sys.executable, "-m", "rotnet", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
        lines = (p.stdout + p.stderr).strip().splitlines()
        tb = "Traceback" in p.stderr
        print(f"{name:40s} rc={p.returncode} {'TRACEBACK ' if tb else ''}| {lines[-1][:150] if lines else ''}")
    except subprocess.TimeoutExpired:
        print(f"{name:40s} HANG (>{timeout}s)")


T = ["--epochs", "1", "--batch-size", "16", "--no-download"]
case = sys.argv[1:] or [
    "fifo",
    "linkclass",
    "blue",
    "onepx",
    "ftiff",
    "skipfirst",
    "archs",
    "keep",
    "jobs",
    "moved",
    "linkedarch",
]
base = Path(tempfile.mkdtemp(prefix="rotnet-hostile-"))
for c in case:
    w = base / c
    w.mkdir()
    if c == "fifo":
        f = folder(w / "img", labeled=False)
        os.mkfifo(f / "x.png")
        run(c, ["train", "rotation", "--dataset", str(f), "--runs-root", str(w / "r"), *T], w, 40)
    if c == "linkclass":
        f = folder(w / "img")
        os.symlink("../dog", f / "test/cat/dogs")
        run(c, ["train", "full-from-random", "--dataset", str(f), "--runs-root", str(w / "r"), *T], w)
    if c == "blue":

        def blue(px):
            px[..., 2] = 200
            return px

        f = folder(w / "img", labeled=False, fn=blue)
        run(c, ["train", "rotation", "--dataset", str(f), "--runs-root", str(w / "r"), *T], w)
    if c == "onepx":
        f = folder(w / "img", labeled=False, size=1)
        run(c, ["train", "rotation", "--dataset", str(f), "--runs-root", str(w / "r"), *T], w)
    if c == "ftiff":
        f = w / "img"
        f.mkdir()
        rng = np.random.default_rng(0)
        for i in range(40):
            Image.fromarray(rng.uniform(0, 255, (8, 8)).astype(np.float32), "F").save(f / f"{i:03d}.tif")
        run(c, ["train", "rotation", "--dataset", str(f), "--runs-root", str(w / "r"), *T], w)
        sys.path.insert(0, "")
        from rotnet.datasets import load_dataset as load

        try:
            d = load(str(f))
            print("   ftiff max pixel", int(d.train_images.max()), "distinct", len(d.train_images.unique()))
        except Exception as e:
            print("   ftiff", e)
    if c == "skipfirst":
        f = folder(w / "img", labeled=False)
        (f / "0.png").write_bytes(b"not an image")
        run(c, ["train", "rotation", "--dataset", str(f), "--runs-root", str(w / "r"), "--skip-bad-images", *T], w)
    if c == "archs":
        run(
            c,
            [
                "reproduce",
                "--archs",
                "",
                "--runs-root",
                str(w / "r"),
                "--dataset",
                str(folder(w / "img")),
                "--experiments",
                "rotation",
                *T,
            ],
            w,
            100,
        )
        print(
            "   archs trained:",
            sorted(p.name for p in (w / "r" / "img").iterdir()) if (w / "r" / "img").exists() else None,
        )
    if c == "keep":
        run(
            c,
            [
                "train",
                "rotation",
                "--dataset",
                str(folder(w / "img", labeled=False)),
                "--keep-epoch",
                "99",
                "--runs-root",
                str(w / "r"),
                *T,
            ],
            w,
        )
    if c == "jobs":
        p = subprocess.run(
            [
                sys.executable,
                "-c",
                "import rotnet; rotnet.reproduce(jobs=-3, runs_root='r', preset='quick', dataset='nonexistent-folder')",
            ],
            cwd=w,
            capture_output=True,
            text=True,
        )
        print(f"{c:40s} rc={p.returncode} | {(p.stdout + p.stderr).strip().splitlines()[-1:]}")
    if c == "rologs":
        (w / "r").mkdir()
        (w / "elsewhere").mkdir()
        os.symlink(w / "elsewhere", w / "r" / "logs")
        run(
            c,
            [
                "reproduce",
                "--dataset",
                str(folder(w / "img")),
                "--runs-root",
                str(w / "r"),
                "--seeds",
                "0",
                *T,
                "--experiments",
                "rotation",
            ],
            w,
            200,
        )
        print("   elsewhere has", sorted(p.name for p in (w / "elsewhere").iterdir()))
    if c == "moved":
        f = folder(w / "a" / "img", labeled=False)
        run("moved: train", ["train", "rotation", "--dataset", str(f), "--runs-root", str(w / "r"), *T], w, 200)
        shutil.move(w / "a", w / "b")
        run(
            "moved: verify --dataset",
            ["verify", str(w / "r/img/resnet18/rotation/seed0"), "--dataset", str(w / "b/img")],
            w,
            200,
        )
    if c == "linkedarch":
        f = folder(w / "img", labeled=False)
        run(
            "linkedarch: train",
            ["train", "rotation", "--dataset", str(f), "--runs-root", str(w / "theirs"), *T],
            w,
            200,
        )
        (w / "ours/img").mkdir(parents=True)
        os.symlink(w / "theirs/img/resnet18", w / "ours/img/resnet18")
        run("linkedarch: report ours", ["report", str(w / "ours")], w)
    if c == "roreport":
        (w / "r").mkdir()
        os.chmod(w / "r", 0o555)
        run(c, ["report", str(w / "r")], w)
