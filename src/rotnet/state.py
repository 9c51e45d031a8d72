"""A run's state on disk: checkpoints written and restored, metrics.jsonl, config.json, the final weights' metadata,
and the run folder made, kept aside or removed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from rotnet import checkpoint as ckpt
from rotnet import files
from rotnet.config import RunConfig, run_diff
from rotnet.data import Dataset, normalization
from rotnet.errors import RotnetError
from rotnet.layout import CHECKPOINTS, CONFIG, METRICS, kept_name
from rotnet.lifecycle import RunContext
from rotnet.lock import RunLock
from rotnet.loop import Engine, LoopState
from rotnet.manifest import Seal
from rotnet.models import check_keys
from rotnet.provenance import cpu_identity, provenance
from rotnet.record import RunRecord, manifest_vouch
from rotnet.seeds import contract_diff, stream_contract


def kept_checkpoint_names(context: RunContext) -> set[str]:
    return {ckpt.checkpoint_name(e, 0) for e in context.run_options.keep_epochs}


def save_state(seal: Seal, cfg: RunConfig, engine: Engine, state: LoopState, stream: dict, kept=()) -> None:
    """Checkpoint (model, optimizer, position, running sums, history), then metrics.jsonl from that history; each
    sealed as written."""
    opt_tensors, opt_meta = ckpt.optimizer_to_tensors(engine.optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in engine.model.state_dict().items()}
    tensors |= {f"optim.{k}": v for k, v in opt_tensors.items()} | {"loop.sums": state.sums}
    meta = {
        "config": cfg.to_dict(),
        "stream": stream,
        "epoch": state.epoch,
        "step": state.step,
        "seconds": state.seconds,
        "history": state.history,
        "optimizer": opt_meta,
        "scaler": engine.scaler.state_dict() if engine.scaler is not None else None,
        **({"cpu": cpu_identity()} if stream.get("device") == "cpu" else {}),  # the kernels this state came from
    }
    folder = seal.folder / CHECKPOINTS
    name = f"{CHECKPOINTS}/{ckpt.checkpoint_name(state.epoch, state.step)}"
    seal.write(name, ckpt.encode(tensors, ckpt.checkpoint_meta(meta)))
    seal.removed(ckpt.prune_checkpoints(folder, ckpt.KEEP, kept))
    write_metrics(seal, state)


def write_metrics(seal: Seal, state: LoopState) -> None:
    text = "".join(json.dumps(r) + "\n" for r in state.history)
    seal.write_text(METRICS, text)


def restore_state(
    folder: Path,
    cfg: RunConfig,
    engine: Engine,
    steps: int,
    stream: dict,
    record: RunRecord | None,
    weights_compared: bool = False,
) -> LoopState | None:
    """The newest checkpoint the run's manifest (`record`, as checked; None: no record, which vouches for none)
    vouches for, loaded into engine; None when the folder holds no checkpoint. A checkpoint of another configuration
    or stream contract (stream version, device type, torch version) is refused: the run would silently switch random
    streams mid-way. `weights_compared`: as `checks.Checked`'s."""
    found = ckpt.load_latest_checkpoint(folder / CHECKPOINTS, cfg.epochs, steps, manifest_vouch(record))
    return None if found is None else restore(found, cfg, engine, stream, weights_compared)


def restore(
    found: tuple[dict, dict, Path], cfg: RunConfig, engine: Engine, stream: dict, weights_compared: bool = False
) -> LoopState:
    """A checkpoint's (tensors, metadata, path) loaded into engine, refused if it belongs to another configuration
    or stream contract; returns its loop state."""
    tensors, meta, path = found
    diff = run_diff(meta["config"], cfg.to_dict(), weights_compared)
    if diff:
        raise RotnetError(f"checkpoint {path} belongs to another run ({'; '.join(diff)})")
    changed = contract_diff(meta.get("stream"), stream)
    if changed:
        raise RotnetError(
            f"checkpoint {path} was written under another random-stream contract ({'; '.join(changed)}): resuming "
            "would switch streams mid-run; resume it with the rotnet, torch and device kind that started it "
            "(its config.json), or --restart (the old run is kept)"
        )
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    check_keys(weights, engine.model.state_dict(), f"checkpoint {path.name}")
    engine.model.load_state_dict(weights)
    opt_tensors = {k.removeprefix("optim."): v for k, v in tensors.items() if k.startswith("optim.")}
    try:
        ckpt.load_optimizer(engine.optimizer, opt_tensors, meta["optimizer"])
        if engine.scaler is not None and meta.get("scaler"):
            engine.scaler.load_state_dict(meta["scaler"])
    except (KeyError, ValueError, TypeError) as e:
        raise RotnetError(f"checkpoint {path} has an unreadable optimizer state ({e})") from None
    if "loop.sums" not in tensors:
        raise RotnetError(f"checkpoint {path} lacks its loop state")
    return LoopState(meta["epoch"], meta["step"], tensors["loop.sums"], meta["seconds"], meta["history"])


def write_record(
    seal: Seal, cfg: RunConfig, data: Dataset, context: RunContext, init_info: dict, first: dict | None
) -> None:
    """config.json: the resolved configuration, the stream contract, the data's fingerprint, where the weights came
    from, provenance; a resumed run keeps `first` (its config.json as read) and appends this start's provenance."""
    # This start: what it ran with, and how many processes (torchrun's ranks) trained: its sums depend on both, and
    # verify reads them
    gpu = {"deterministic": context.run_options.deterministic} if context.device.type == "cuda" else {}
    start = provenance(context.device, context.command) | gpu | {"world_size": context.world.size}
    if isinstance(first, dict):  # keep the first start's record, add this one's
        seal.write_text(CONFIG, json.dumps(first | {"resumes": [*first.get("resumes", []), start]}, indent=2) + "\n")
        return
    record = {
        "config": cfg.to_dict(),
        "stream": stream_contract(context.device),
        **start,
        **init_info,
        "data_root": data.root,
        "dataset_checksums_match": data.checksums_match,
        "dataset": data.fingerprint,
        "normalization": dict(zip(("mean", "std"), map(list, normalization(cfg, data)), strict=True)),
        "resumed": False,
    }
    seal.write_text(CONFIG, json.dumps(record, indent=2) + "\n")


def weights_meta(cfg: RunConfig, norm: tuple, classes: list[str], size: int) -> dict:
    """What a user of the weights file needs beside the tensors: how to build the model and feed it."""
    return {
        "config": cfg.to_dict(),
        "arch": cfg.arch,
        "stem": cfg.stem,
        "task": cfg.task,
        "class_names": classes,
        "normalization": {"mean": list(norm[0]), "std": list(norm[1])},  # after ToTensor's 0-1 scaling
        "image_size": size,
    }


def keep_aside(folder: Path) -> Path:
    """Rename folder to the first free FOLDER.oldN (--restart keeps what a user ran before)."""
    n = 1
    while os.path.lexists(kept_name(folder, n)):  # a dangling link is taken too
        n += 1
    target = kept_name(folder, n)
    with RunLock(folder):  # never from under a running process
        os.rename(folder, target)
    return target


def make_dir(folder: Path, runs_root: Path) -> None:
    """The run folder, for its lock; nothing inside it until the lock is held. No folder between the runs root and
    it may be a link (rotnet makes none)."""
    files.refuse_links(folder, runs_root)
    files.make_folder(folder)


def remove_made(folder: Path, created: Path) -> None:
    """Remove a refused run's folder, and the parents it made up to `created` while they are empty: a job beside it
    (reproduce runs several) may be using them."""
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if not parent.is_relative_to(created):
            break
        try:
            parent.rmdir()  # only an empty folder
        except OSError:
            break
