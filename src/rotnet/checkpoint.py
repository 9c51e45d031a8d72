"""Checkpoints and weights as safetensors (no pickle), written atomically and verified on load."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from rotnet.errors import RotnetError
from rotnet.files import atomic_write, file_key, read_file, refuse_links

FORMAT = "rotnet-checkpoint-1"
COVERS_META = "sha256(tensors|meta)"  # the checksum covers the metadata as well as the tensors
KEEP = 2  # checkpoints kept while a run trains: the newest, and the one before it to fall back to if it is torn


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes, in key order."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()  # the values, whatever the device and memory format
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself: no copy
    return h.hexdigest()


def sorted_header(blob: bytes) -> list:
    """The same safetensors file with its header's keys sorted, as [length + header, tensor bytes] (a view, not a
    copy). safetensors writes `__metadata__` from a hash map, in an order that changes from process to process;
    sorted, identical runs write byte-identical files."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header with spaces to 8-byte alignment
    return [len(text).to_bytes(8, "little") + text, memoryview(blob)[8 + n :]]


def checksum_of(tensors_digest: str, meta_text: str) -> str:
    """The checksum of a file: its tensors' digest and its metadata text together."""
    return hashlib.sha256(f"{tensors_digest}|{meta_text}".encode()).hexdigest()


def encode(tensors: dict[str, torch.Tensor], meta: dict | None = None) -> list:
    """A safetensors file's bytes (as buffers): tensors moved to CPU, JSON metadata, a checksum over both."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta_text = json.dumps(meta or {}, sort_keys=True)
    metadata = {"sha256": checksum_of(digest(tensors), meta_text), "meta": meta_text, "checksum": COVERS_META}
    return sorted_header(save_bytes(tensors, metadata=metadata))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """Save tensors with JSON metadata and a checksum over both (`encode`), atomically."""
    atomic_write(path, encode(tensors, meta))


def load_tensors(
    path: Path, verify: bool = True, checksummed: bool = False, base: Path | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a safetensors file (never executes code); verify the checksum if it carries one. checksummed=True (rotnet's
    own checkpoints): a file without a checksum is refused, since anything could have been written into it."""
    path = Path(path)
    if not path.is_file():
        raise RotnetError(f"weights file not found: {path}")
    try:
        data = read_file(path, base=base)  # base: reached from it through no link
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n]) if 8 <= 8 + n <= len(data) else None
        if not isinstance(header, dict):
            raise ValueError("no safetensors header")
        metadata = header.get("__metadata__") or {}
        tensors = load_bytes(data)
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError) as e:
        raise RotnetError(f"{path} is not a readable safetensors file ({e})") from None
    meta_text = metadata.get("meta", "{}")
    if checksummed and (metadata.get("checksum") != COVERS_META or "sha256" not in metadata):
        raise RotnetError(f"{path} carries no checksum over its tensors and metadata")
    if verify and "sha256" in metadata:
        # Files of rotnet <= 0.1 (no "checksum" key) checksummed only the tensors.
        covers_meta = metadata.get("checksum") == COVERS_META
        expected = checksum_of(digest(tensors), meta_text) if covers_meta else digest(tensors)
        if expected != metadata["sha256"]:
            raise RotnetError(f"{path} is corrupt: its checksum does not match its contents")
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError:
        raise RotnetError(f"{path} has unreadable metadata") from None
    if not isinstance(meta, dict):
        raise RotnetError(f"{path} has unreadable metadata (not a JSON object)")
    return tensors, meta


_SOURCES: dict[tuple, tuple[dict[str, torch.Tensor], dict]] = {}  # file_key -> load_tensors' result


def load_source(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """`load_tensors` for weights a run starts from, kept for the last two files while they stay the same: a plan's
    four transfer runs of one seed start from one rotation run's weights, read once (the caller must not change
    the tensors)."""
    try:
        key = file_key(os.stat(path), path)
    except OSError:
        return load_tensors(path)  # names the problem
    if key not in _SOURCES:
        _SOURCES[key] = load_tensors(path)
        while len(_SOURCES) > 2:
            del _SOURCES[next(iter(_SOURCES))]
    return _SOURCES[key]


def optimizer_to_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split optimizer.state_dict() into tensors and JSON (no pickle)."""
    tensors, scalars = {}, {}
    for idx, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """optimizer_to_tensors' parts loaded back into `optimizer` (every resume passes here), each state tensor shaped
    like its parameter laid out in memory as the parameter is. A file holds tensors contiguous; a GPU's fused Adam and
    SGD refuse a channels_last weight whose moments are not ("must have same dtype, device, and layout"). The values
    are the same either way."""
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    for p, entries in optimizer.state.items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                entries[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def checkpoint_name(epoch: int, step: int) -> str:
    return f"e{epoch:04d}-s{step:06d}.safetensors"


def checkpoint_meta(meta: dict) -> dict:
    return {"format": FORMAT, **meta}


def prune_checkpoints(folder: Path, keep: int, kept=()) -> list[Path]:
    """Drop all but the newest `keep` checkpoints (a finished run needs fewer than a running one) and those named in
    `kept`; return what was dropped. Only regular files, the kind rotnet writes: a link, a FIFO or a folder put
    there by hand is left alone."""
    refuse_links(folder, Path(folder).parent)
    old = [
        p
        for p in sorted(Path(folder).glob("e*-s*.safetensors"))
        if p.name not in kept and p.is_file() and not p.is_symlink()
    ]
    old = old[: -keep or None]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def checkpoint_problem(meta: dict, epochs: int | None = None, steps: int | None = None) -> str:
    """What is wrong with a checkpoint's metadata record ('' if nothing): fields of the wrong kind, or a position
    (epoch, step) that the run (`epochs` of `steps` steps) can never reach."""
    if meta.get("format") != FORMAT:
        return "not a rotnet checkpoint"
    kinds = {"epoch": int, "step": int, "seconds": float | int, "history": list, "config": dict, "optimizer": dict}
    bad = [k for k, kind in kinds.items() if not isinstance(meta.get(k), kind) or isinstance(meta.get(k), bool)]
    if bad:
        return f"its metadata record is unreadable ({', '.join(bad)})"
    if not all(isinstance(r, dict) for r in meta["history"]) or len(meta["history"]) != meta["epoch"]:
        return "its metadata record is unreadable (history)"
    epoch, step = meta["epoch"], meta["step"]
    if epoch < 0 or step < 0 or (epochs is not None and epoch > epochs) or (steps is not None and step >= steps):
        return f"its position (epoch {epoch}, step {step}) is outside the run ({epochs} epochs of {steps} steps)"
    if epochs is not None and epoch == epochs and step:
        return f"its position (epoch {epoch}, step {step}) is past the run's end"
    return ""


def load_latest_checkpoint(
    folder: Path, epochs: int | None = None, steps: int | None = None, vouch=None
) -> tuple[dict[str, torch.Tensor], dict, Path] | None:
    """The newest checkpoint that loads, carries a checksum and verifies, at a position the run can reach; a torn
    one, one without a checksum or a corrupt one is skipped with a warning. None if there are no checkpoints; an error
    if there are some but none is readable (never start over silently). `vouch(path)`, when given, says what is wrong
    with a file the run's manifest does not vouch for ('' if nothing): such a file is skipped the same way."""
    refuse_links(folder, folder.parent)  # nor is anything read through one
    paths = sorted(folder.glob("e*-s*.safetensors"), reverse=True)
    for path in paths:
        problem = vouch(path) if vouch else ""
        if problem:
            warnings.warn(f"skipping checkpoint {path.name}: {problem}; falling back to the previous one", stacklevel=2)
            continue
        try:
            tensors, meta = load_tensors(path, checksummed=True, base=folder.parent)
        except RotnetError as e:
            warnings.warn(f"skipping checkpoint {path.name}: {e}; falling back to the previous one", stacklevel=2)
            continue
        problem = checkpoint_problem(meta, epochs, steps)
        if problem:
            warnings.warn(f"skipping {path.name}: {problem}; falling back to the previous one", stacklevel=2)
            continue
        return tensors, meta, path
    if paths:
        raise RotnetError(f"no readable checkpoint in {folder}; use --restart to start over (the old run is kept)")
    return None
