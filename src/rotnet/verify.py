"""`rotnet verify RUN`: anyone can check a result. Re-train the first epochs of a run from its recorded
configuration, on the same data (fingerprint checked), and compare every deterministic field of metrics.jsonl."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from rotnet import checkpoint as ckpt
from rotnet.config import NO_OPTIONS, DataOptions, from_dict
from rotnet.data import normalization, outputs
from rotnet.datasets import load_for
from rotnet.errors import RotnetError
from rotnet.layout import METRICS, WEIGHTS, RunId, data_diff, parse_run_dir, read_record
from rotnet.loop import Hooks, LoopState, fit
from rotnet.report import read_metrics
from rotnet.run import Runtime, build_engine, device_data, epoch_evaluator, init_model
from rotnet.runtime import cpu_threads, recorded_threads, resolve_device, threads_text

# What an epoch's record holds that is a pure function of the configuration, the data and the device kind.
FIELDS = ("epoch", "lr", "train_loss", "train_acc", "test_acc", "knn_acc")


class _Enough(Exception):
    """Raised from the save hook once the epochs to compare are done."""


def source_weights(folder: Path, record: dict) -> Path:
    """The rotation weights a transfer run started from: where it recorded them, else its sibling rotation run
    (a copied results folder); either must have the recorded sha256."""
    rid = parse_run_dir(folder) or RunId("?", "?", 0)
    candidates = [Path(record.get("init_weights", "")), folder.parent.parent / "rotation" / f"seed{rid.seed}" / WEIGHTS]
    want = record.get("init_sha256")
    for path in candidates:
        if path.is_file():
            tensors, _ = ckpt.load_tensors(path)
            if ckpt.digest(tensors) == want:
                return path
    raise RotnetError(
        f"{folder} started from rotation weights (sha256 {str(want)[:12]}...) that are not at "
        f"{' or '.join(str(c) for c in candidates)}; verify needs them"
    )


def verify(
    folder: Path,
    *,
    epochs: int = 1,
    data: DataOptions = NO_OPTIONS,
    device: str = "auto",
) -> int:
    """Print match/mismatch per field and epoch; 0 only on an exact match on the same kind of device. Writes
    nothing: the re-run lives in memory."""
    folder = Path(folder)
    record = read_record(folder)
    if record is None:
        raise RotnetError(f"{folder} is not a rotnet run folder (no config.json)")
    cfg = from_dict(record["config"], str(folder / "config.json"))
    recorded = read_metrics(folder / METRICS)
    if recorded is None:
        raise RotnetError(f"{folder / METRICS} is unreadable")
    if not recorded:
        raise RotnetError(f"{folder} has no finished epoch to compare")
    epochs = min(epochs, len(recorded), cfg.epochs)
    if cfg.init == "rotation":
        cfg = replace(cfg, init_path=str(source_weights(folder, record)))
    data = load_for(cfg, data)
    old = record.get("dataset")
    if isinstance(old, dict):  # the same images, wherever they are
        diff = data_diff({k: v for k, v in old.items() if k not in ("root", "path")}, data.fingerprint)
        if diff:
            raise RotnetError(f"the data differs from the run's ({'; '.join(diff[:4])}); point --data-root at it")
    dev = resolve_device(device)
    same_kind = str(record.get("device", "cpu")).split(":")[0] == dev.type
    threads = recorded_threads(record) if dev.type == "cpu" and same_kind else None
    rt = Runtime(dev, folder)  # a transfer run's weights are named explicitly above: nothing is looked up there
    on = f" ({threads_text(threads)}, as recorded)" if threads else ""
    print(f"{folder}: re-training {epochs} epoch{'s' * (epochs != 1)} of {cfg.epochs} on {dev}{on}", flush=True)

    def save(state: LoopState) -> None:
        if state.step == 0 and state.epoch >= epochs:
            raise _Enough

    state = LoopState()
    with cpu_threads(threads):  # CPU sums depend on the thread count: re-train on as many as the run did
        model, _ = init_model(cfg, rt.runs_root, outputs(cfg, data))
        engine = build_engine(cfg, model, rt, normalization(cfg, data))
        images, labels, test_images, test_labels = device_data(cfg, data, dev)
        # the run's own epoch-end metrics
        evaluate = epoch_evaluator(cfg, engine.norm, images, labels, test_images, test_labels)
        try:
            fit(cfg, engine, images, labels, state, Hooks(evaluate, save, log=lambda _: None))
        except _Enough:
            pass
    mismatches = 0
    for old_row, new_row in zip(recorded[:epochs], state.history, strict=False):
        for key in FIELDS:
            if key not in old_row and key not in new_row:
                continue
            a, b = old_row.get(key), new_row.get(key)
            ok = a == b
            mismatches += not ok
            print(f"epoch {old_row['epoch']} {key}: recorded {a!r} re-run {b!r} {'match' if ok else 'MISMATCH'}")
    where = f"{record.get('device_name', '?')} vs {dev}"
    if mismatches:
        print(f"{folder}: {mismatches} field(s) differ over {epochs} epoch(s) ({where})")
        return 1
    if not same_kind:
        print(f"{folder}: matches, but on another kind of device ({where}); not counted as verified")
        return 1
    on = f"; re-trained on {threads_text(threads)}, as recorded" if threads else ""
    print(f"{folder}: verified, {epochs} epoch(s) identical ({json.dumps(list(FIELDS))}){on}")
    return 0
