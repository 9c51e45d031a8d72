"""A run's record, read once: `read_run` reads a run folder's record files once, checks them against its manifest
(rotnet.manifest), against what each must hold (rotnet.schema), against each other and against where the folder
sits, and returns them parsed; `open_run` is the one door for commands that act on a run, `read_weights` for
weights a user names."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from rotnet import checkpoint as ckpt
from rotnet.config import RunConfig
from rotnet.errors import RotnetError
from rotnet.files import read_file, sha256_file, user_path
from rotnet.layout import (
    CHECKPOINTS,
    CONFIG,
    EXAMPLES,
    MANIFEST,
    METRICS,
    RESULT,
    WEIGHTS,
    data_segment,
    is_run_folder,
    not_a_run,
    parse_run_dir,
    run_holding,
    runs_below,
)
from rotnet.lock import refuse_locked
from rotnet.manifest import owned_files, read_manifest, sha256_parts
from rotnet.schema import config_problems, confusion_problems, parse_metrics, result_problems

# What a run's numbers rest on: with these whole, a run whose weights or examples are gone (results committed as
# records) still reports its numbers; everything that needs the other files refuses without them.
RECORD_FILES = (CONFIG, METRICS, RESULT, MANIFEST)

# The first rotnet that seals every run it writes: a record that says it was made by this one or a later one is
# sealed or broken, never "unsealed" (deleting the seal must not make a record read as an old one).
SEALING_VERSION = (0, 4)


@dataclass(frozen=True)
class Inspection:
    """What a run folder holds, checked: status is "sealed" (everything as rotnet wrote it and self-consistent),
    "unsealed" (no manifest: made before rotnet 0.4; only the consistency checks apply), "incomplete" (a file the
    record lists is gone), "tampered" (a file differs from the manifest, or is not in it) or "inconsistent" (the
    files disagree with each other or with the folder's name)."""

    status: str
    problems: tuple[str, ...] = ()
    missing: tuple[str, ...] = field(default=())

    @property
    def trusted(self) -> bool:
        return self.status in ("sealed", "unsealed")

    @property
    def record_whole(self) -> bool:
        """Its numbers can be believed: trusted, or incomplete only for files no number rests on (weights,
        examples), as in a record committed without its weights."""
        return self.trusted or (self.status == "incomplete" and not set(self.missing) & set(RECORD_FILES))


@dataclass(frozen=True)
class RunRecord:
    """A run folder's record, read once: config.json, result.json and metrics.jsonl parsed from the very bytes that
    were checked against the manifest, the manifest itself, and what the check found. A command reads it once and
    passes it down; nothing after the check reads those files again."""

    folder: Path
    inspection: Inspection
    listed: tuple[dict[str, str], dict[str, str | None]] | None = None  # the manifest (read_manifest), if any
    config: dict | None = None  # config.json: a dict with a "config" dict; None when absent or unreadable
    result: dict | None = None  # result.json (finished runs); None when absent or unreadable
    history: list[dict] | None = None  # metrics.jsonl's epochs; [] when absent, None when not epoch records
    has: frozenset[str] = frozenset()  # which of CONFIG, RESULT, METRICS are present as regular files

    @property
    def status(self) -> str:
        return self.inspection.status


def read_regular(path: Path) -> bytes | None:
    """A record file's bytes, or None when it is absent, a link or unreadable (rotnet writes no links)."""
    if not path.is_file():
        return None
    try:
        return read_file(path, base=path.parent)  # opened in its folder, never through a link
    except (OSError, RotnetError):
        return None


def parse_json(data: bytes | None):
    try:
        return json.loads(data) if data is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def read_run(folder: Path, root: Path | None = None) -> RunRecord:
    """Read a run folder's record once and check it against its manifest (every file listed present and unchanged,
    every file present listed) and against itself and where it sits under `root` when given (see `consistency`)."""
    folder = Path(folder)
    try:
        listed = read_manifest(folder)
    except RotnetError as e:
        return RunRecord(folder, Inspection("tampered", (str(e),)))
    raw = {name: read_regular(folder / name) for name in (CONFIG, RESULT, METRICS)}
    config, result = parse_json(raw[CONFIG]), parse_json(raw[RESULT])
    config = config if isinstance(config, dict) and isinstance(config.get("config"), dict) else None
    history = parse_metrics(raw[METRICS])
    has = frozenset(n for n, data in raw.items() if data is not None)
    problems, missing, status = [], [], "sealed" if listed is not None else "unsealed"
    if listed is None and claims_seal(parse_json(raw[CONFIG])):  # its seal is gone
        missing.append(MANIFEST)
    if listed is not None:
        files, previous = listed
        for name, sha in files.items():
            path = folder / name
            if name.startswith(CHECKPOINTS + "/"):
                continue  # no claim: deleting one frees disk; a damaged one is skipped on resume (`vouch`)
            if path.is_symlink() or not path.is_file():
                if not (name in previous and previous[name] is None):  # else: its first write never happened
                    missing.append(name)
                continue
            try:
                got = sha256_parts(raw[name]) if raw.get(name) is not None else sha256_file(path)
            except RotnetError:  # no longer a regular file since the check above
                missing.append(name)
                continue
            if got not in (sha, previous.get(name)):  # old or new: a write under way when it stopped
                problems.append(f"{name} differs from what rotnet wrote (sha256 in {MANIFEST})")
        problems += [f"{name} is not in {MANIFEST}" for name in owned_files(folder) if name not in files]
    problems += consistency(
        folder, parse_json(raw[CONFIG]), result if RESULT in has else None, history, RESULT in has, root
    )
    if problems:
        status = "tampered" if listed is not None and not problems[0].startswith("inconsistent") else "inconsistent"
        problems = [p.removeprefix("inconsistent: ") for p in problems]  # the status says it once
    elif missing:
        status = "incomplete"
        problems = [f"{name} is missing" for name in missing]
    inspection = Inspection(status, tuple(problems), tuple(missing))
    return RunRecord(folder, inspection, listed, config, result if isinstance(result, dict) else None, history, has)


def inspect(folder: Path) -> Inspection:
    """What `read_run` found in a run folder (for readers that need only the verdict)."""
    return read_run(folder).inspection


def claims_seal(record) -> bool:
    """Whether a config.json says it was made by a rotnet that seals its runs: its rotnet_version (a record without
    one is none that any rotnet wrote), or a key only such a rotnet writes (the stream contract, the CPU)."""
    if not isinstance(record, dict):
        return False
    version = record.get("rotnet_version")
    found = re.match(r"(\d+)\.(\d+)", version) if isinstance(version, str) else None
    return "stream" in record or "cpu" in record or found is None or (int(found[1]), int(found[2])) >= SEALING_VERSION


def manifest_vouch(record: RunRecord | None):
    """For checkpoint loading: what is wrong with a checkpoint file as the run's manifest (as `read_run` read it)
    sees it ('' if nothing). A run without a manifest vouches for none: an unsealed checkpoint could hold anything."""
    listed = record.listed if record is not None else None

    def vouch(path: Path) -> str:
        if listed is None:
            return f"the run has no {MANIFEST} to vouch for it (made before rotnet 0.4)"
        name = f"{CHECKPOINTS}/{path.name}"
        if name not in listed[0]:
            return f"it is not in {MANIFEST}"
        try:
            sha = sha256_file(path)
        except RotnetError as e:  # a FIFO or a link put among the checkpoints: skipped like a damaged one
            return str(e)
        return "" if sha in (listed[0][name], listed[1].get(name)) else "it differs from what rotnet wrote"

    return vouch


def consistency(
    folder: Path, record, result, history: list[dict] | None, finished: bool, root: Path | None = None
) -> list[str]:
    """Where a record (config.json, result.json and metrics.jsonl as read) disagrees with itself or with where it
    sits: the folder's arch, experiment and seed against config.json and result.json; result.json's epochs against
    config.json's (a run writes its result only after its last planned epoch); result.json's accuracy and epochs
    against metrics.jsonl; with the runs root, the data folder it sits in against config.json's data."""
    out = []
    cfg = record.get("config") if isinstance(record, dict) else None
    rid = parse_run_dir(folder, root)
    if isinstance(cfg, dict) and rid is not None:
        said = {"arch": rid.arch, "experiment": rid.experiment, "seed": rid.seed}
        got = {k: cfg.get(k) for k in said} | {"train_per_class": cfg.get("train_per_class", 0)}  # EXPERIMENT@Npc
        said["train_per_class"] = rid.per_class
        out += [
            f"inconsistent: {CONFIG} says {k} {got[k]!r}, the folder {said[k]!r}" for k in said if got[k] != said[k]
        ]
        where, data = rid.data or "cifar10", data_segment(cfg) or "cifar10"
        if root is not None and where != data:  # a run copied under another data folder
            out.append(f"inconsistent: {CONFIG} says data {data!r}, the folder {where!r}")
    if isinstance(cfg, dict):
        out += config_problems(cfg)
    if not finished:
        return out
    if not isinstance(result, dict):
        return [*out, f"inconsistent: {RESULT} is unreadable"]
    out += result_problems(result, cfg)
    if isinstance(cfg, dict):
        out += [
            f"inconsistent: {RESULT} says {k} {result.get(k)!r}, {CONFIG} {cfg.get(k)!r}"
            for k in ("arch", "experiment", "seed", "dataset", "pretrain_dataset")
            if k in result and result.get(k) != cfg.get(k, RunConfig().to_dict()[k])
        ]
        if result.get("epochs") != cfg.get("epochs"):  # an unsealed record's config.json edited: no manifest to see it
            out.append(f"inconsistent: {RESULT} says {result.get('epochs')!r} epochs, {CONFIG} {cfg.get('epochs')!r}")
    if not history:
        return [*out, f"inconsistent: {RESULT} exists but {METRICS} holds no epochs"]
    last = history[-1]
    if result.get("test_acc") != last.get("test_acc"):
        out.append(
            f"inconsistent: {RESULT} says test_acc {result.get('test_acc')!r}, the last line of {METRICS} "
            f"{last.get('test_acc')!r}"
        )
    if result.get("epochs") != len(history):
        out.append(f"inconsistent: {RESULT} says {result.get('epochs')!r} epochs, {METRICS} has {len(history)}")
    return out + confusion_problems(result)


def open_run(folder: Path, purpose: str, *, need: tuple[str, ...] = (), held: bool = False) -> RunRecord:
    """The one door to a run's record for a command that acts on it (resume, reuse, verify, export, probe, load):
    refused while another process works on it (`held`: the caller holds its lock, or checked it); the record read
    once (`read_run`); a tampered or inconsistent one is refused, naming what is wrong; so is an incomplete one, or
    one without the files in `need`. Returns the record as checked, to pass down."""
    folder = Path(folder)
    if not held:
        refuse_locked(folder, purpose)
    rec = read_run(folder)
    seen = rec.inspection
    if seen.status in ("tampered", "inconsistent"):
        more = f" (and {len(seen.problems) - 1} more)" if len(seen.problems) > 1 else ""
        raise RotnetError(
            f"cannot {purpose} {folder}: its record is {seen.status}: {seen.problems[0]}{more}; "
            "train it again with --restart (the old run is kept)"
        )
    absent = [*seen.missing, *(n for n in need if not (folder / n).is_file() and n not in seen.missing)]
    if absent:
        raise RotnetError(f"cannot {purpose} {folder}: {absence(folder, seen, absent)}")
    return rec


def absence(folder: Path, seen: Inspection, absent: list[str]) -> str:
    """Why files a command needs are not in a run: it has not finished; it finished and its record was kept without
    its weights or examples (the report's "record only"); or files its record lists are gone."""
    finished = (folder / RESULT).is_file()
    if finished and seen.record_whole and set(absent) <= {WEIGHTS, EXAMPLES}:
        files, them = (f"{absent[0]} is", "it") if len(absent) == 1 else (f"{' and '.join(absent)} are", "them")
        return f"the run finished, but its {files} not here (a record kept without {them}); put {them} back"
    if not finished and not seen.missing:
        return f"the run has not finished ({', '.join(absent)} missing)"
    return f"{', '.join(absent)} missing"


def weights_file(named: Path | str) -> Path:
    """The weights file a user names: a run folder stands for its model.safetensors."""
    if not isinstance(named, str | os.PathLike) or not str(named).strip():  # "": never the working folder
        raise RotnetError(f"{named!r} names no weights; name a run folder or a .safetensors file")
    named = user_path(named)
    # RUN/config.json, RUN/examples.safetensors (test images), a resume checkpoint RUN/checkpoints/*.safetensors (a
    # training state): the run was meant. Its weights are read through its record.
    weights = named.is_file() and named.name == WEIGHTS and is_run_folder(named.parent)
    if named.exists() and not weights and run_holding(named):
        raise not_a_run(named, "")
    return named / WEIGHTS if named.is_dir() else named


def read_weights(
    named: Path | str, purpose: str, *, need: tuple[str, ...] = (), cached: bool = False
) -> tuple[Path, dict, dict, RunRecord | None]:
    """The one door to weights a user names (`--init`, `load_backbone`, `metadata`), by a run folder or by a file:
    a file inside a run folder is read only through that run's record (`open_run`, with `need` and the file), so
    an edited or half-copied run is refused however it is named; a file outside any run has only its own checksum.
    An export's folder, or a model folder with a config.json of its own, is no run (`layout.is_run_folder`).
    Returns the file, its tensors and metadata, read once (`cached`: `checkpoint.load_source`'s cache), and the
    record of the run it lies in (None outside a run)."""
    path, named = weights_file(named), user_path(named)  # checked by weights_file first
    folder = path.parent
    in_run = is_run_folder(folder)
    if not in_run and not path.is_file() and runs_below(Path(named)):  # a runs root, say
        raise not_a_run(Path(named), f"no {WEIGHTS}")
    if in_run and not path.is_file():
        open_run(folder, purpose, need=(*need, path.name))  # says what is missing, or what is wrong first
    tensors, meta = (ckpt.load_source if cached else ckpt.load_tensors)(path)  # first: the record check then
    record = None
    if in_run:  # finds its sha256 known (read once)
        record = open_run(folder, purpose, need=(*need, WEIGHTS) if path.name == WEIGHTS else need)
    return path, tensors, meta, record
