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


def reseal(folder: Path) -> None:
    """Rewrite a run's manifest from the files as they are now: what a forger who knows the format would do (the
    manifest is tamper-evident, not a signature), and how a test changes a record without its seal catching it."""
    from rotnet.checkpoint import sha256_file
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
    result |= {k: record["config"][k] for k in ("task", "epochs")}  # as the run that wrote them would have
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
