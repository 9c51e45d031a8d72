"""Shared helpers for tests: a tiny config and an in-process CLI runner."""

from __future__ import annotations

import json
from pathlib import Path

from rotnet.cli import main

# Small enough to run in a second or two on a CPU: 80 images, batch 32, 2 epochs.
TINY = ["--epochs", "2", "--batch-size", "32", "--set", "eval_batch_size=64"]


def cli(*args: str, root: Path, data: Path) -> int:
    return main([*args, "--runs-root", str(root), "--data-root", str(data), "--no-download", *TINY])


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
