"""The image-folder path against the pickle path, on real CIFAR-10: export it to PNGs, read both, compare every
tensor, then train the same short rotation run on each and compare metrics.jsonl line by line.

    python benchmarks/folder_identity.py --data-root DATA --work /tmp/identity

Prints one line per check and exits 0 only when everything is identical.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from rotnet.cli import main
from rotnet.config import DataOptions
from rotnet.datasets import load_dataset

RUN = ["--preset", "quick", "--epochs", "1", "--set", "train_per_class=500", "--device", "cpu"]
DETERMINISTIC = ("epoch", "lr", "train_loss", "train_acc", "test_acc")


def lines(folder: Path) -> list[dict]:
    records = map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
    return [{k: r[k] for k in DETERMINISTIC} for r in records]


def run() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, required=True, help="the folder holding cifar-10-batches-py")
    p.add_argument("--work", type=Path, required=True, help="a new folder for the export and the runs")
    args = p.parse_args()
    out = args.work / "cifar10-png"
    t = time.perf_counter()
    if not out.exists():
        assert main(["export-images", "cifar10", str(out), "--data-root", str(args.data_root), "--no-download"]) == 0
    print(f"export: {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    pickled = load_dataset("cifar10", 32, 0, DataOptions(args.data_root, download=False))
    folder = load_dataset(str(out.resolve()), 32, 0, DataOptions())
    print(f"read the folder (decode once, then memory-map): {time.perf_counter() - t:.0f} s")
    ok = True
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        same = torch.equal(getattr(pickled, name), getattr(folder, name))
        ok &= same
        print(f"{name} {tuple(getattr(pickled, name).shape)}: {'identical' if same else 'DIFFERENT'}")
    common = ["--data-root", str(args.data_root), "--no-download", *RUN]
    a, b = args.work / "runs-pickle", args.work / "runs-folder"
    assert main(["train", "rotation", "--runs-root", str(a), *common]) == 0
    flags = ["--dataset", str(out), "--image-size", "32", "--normalization", "seed"]
    assert main(["train", "rotation", "--runs-root", str(b), *flags, *common]) == 0
    ma = lines(a / "resnet18/rotation@500pc/seed0")
    mb = lines(b / "cifar10-png-32px/resnet18/rotation@500pc/seed0")
    same = ma == mb
    ok &= same
    print(f"metrics.jsonl {'identical' if same else 'DIFFERENT'}: {ma} vs {mb}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run())
