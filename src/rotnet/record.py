"""A run's sealed record: every file rotnet writes into a run folder is listed, with its sha256, in manifest.json,
rewritten atomically after every save; `inspect` is the one place that says whether a folder still holds what rotnet
wrote and whether that record agrees with itself and with where it sits.

The manifest is sealed with a sha256 over its own contents. That catches an edited or half-copied record, not a
forger who recomputes every hash: it is a tamper-evident record, not a signature.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from rotnet.checkpoint import read_file, sha256_file
from rotnet.config import RunConfig, from_dict, with_defaults
from rotnet.errors import RotnetError
from rotnet.files import atomic_write
from rotnet.layout import (
    CHECKPOINTS,
    CONFIG,
    EXAMPLES,
    MANIFEST,
    MANIFEST_FORMAT,
    METRICS,
    RESULT,
    WEIGHTS,
    data_segment,
    parse_run_dir,
    read_json,
)

FORMAT = MANIFEST_FORMAT
# The files of a run folder that make its record (failed.json, verify.json, logger output and the lock are notes
# about a run or views of it, written by others or rewritten freely, and not part of it).
OWNED = (CONFIG, METRICS, RESULT, WEIGHTS, EXAMPLES)
# The first rotnet that seals every run it writes: a record that says it was made by this one or a later one is
# sealed or broken, never "unsealed" (deleting the seal must not make a record read as an old one).
SEALING_VERSION = (0, 4)
# A run's fields for the report and its checks; each must be a finite number where present.
NUMBERS = ("epoch", "lr", "train_loss", "train_acc", "test_acc", "knn_acc", "images_per_s", "seconds")


def seal_of(files: dict[str, str], previous: dict[str, str | None]) -> str:
    doc = {"format": FORMAT, "files": files, "previous": previous}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def sha256_parts(data: bytes | list) -> str:
    h = hashlib.sha256()
    for part in data if isinstance(data, list) else [data]:
        h.update(part)
    return h.hexdigest()


def owned_files(folder: Path) -> list[str]:
    """The files present in folder that belong to its record, as manifest names (checkpoints/NAME)."""
    names = [n for n in OWNED if (folder / n).is_file() or (folder / n).is_symlink()]
    ckpts = sorted(p.name for p in (folder / CHECKPOINTS).glob("e*-s*.safetensors")) if folder.is_dir() else []
    return names + [f"{CHECKPOINTS}/{n}" for n in ckpts]


def read_manifest(folder: Path) -> tuple[dict[str, str], dict[str, str | None]] | None:
    """What a run's manifest lists: (name -> sha256, name -> the sha256 a write under way replaces, None for a
    first write). None when there is no manifest; an error when it is not one rotnet sealed."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    doc = read_json(path)
    files = doc.get("files") if isinstance(doc, dict) else None
    previous = doc.get("previous", {}) if isinstance(doc, dict) else None
    if (
        not isinstance(files, dict)
        or not isinstance(previous, dict)
        or not all(isinstance(v, str) for v in files.values())
    ):
        raise RotnetError(f"{path} is unreadable")
    if doc.get("format") != FORMAT or doc.get("sha256") != seal_of(files, previous):
        raise RotnetError(f"{path} was edited after rotnet sealed it (its sha256 does not match its contents)")
    return files, previous


class Seal:
    """The manifest of one run folder while this process writes it. Each write is two-phase: the manifest first
    lists the new bytes' sha256 beside the one they replace, then the file is written atomically, then the manifest
    forgets the old one. A process killed at any point leaves every file matching its manifest (old or new), and a
    file's sha256 is taken from the bytes written, never re-read from disk (an edit between two saves is not sealed
    in)."""

    def __init__(self, folder: Path, files: dict[str, str] | None = None):
        self.folder, self.files, self.previous = Path(folder), dict(files or {}), {}

    @classmethod
    def resume(cls, folder: Path, record: RunRecord | None) -> Seal:
        """The seal of a run this process continues: what its manifest listed when `open_run` checked it (None: a
        new run)."""
        return cls(folder, record.listed[0] if record is not None and record.listed else {})

    def write(self, name: str, data: bytes | list) -> None:
        """Write FOLDER/name atomically, sealed as above."""
        self.previous[name] = self.files.get(name)
        self.files[name] = sha256_parts(data)
        self.commit()
        atomic_write(self.folder / name, data, base=self.folder.parent)  # through no link
        del self.previous[name]
        self.commit()

    def write_text(self, name: str, text: str) -> None:
        self.write(name, text.encode())

    def removed(self, paths: list[Path]) -> None:
        for p in paths:
            self.files.pop(str(Path(p).relative_to(self.folder)), None)
        self.commit()

    def commit(self) -> None:
        files = {k: self.files[k] for k in sorted(self.files)}
        doc = {"format": FORMAT, "files": files, "previous": self.previous, "sha256": seal_of(files, self.previous)}
        atomic_write(self.folder / MANIFEST, (json.dumps(doc, indent=2) + "\n").encode(), base=self.folder.parent)


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
            got = sha256_parts(raw[name]) if raw.get(name) is not None else sha256_file(path)
            if got not in (sha, previous.get(name)):  # old or new: a write under way when it stopped
                problems.append(f"{name} differs from what rotnet wrote (sha256 in {MANIFEST})")
        problems += [f"{name} is not in {MANIFEST}" for name in owned_files(folder) if name not in files]
    problems += consistency(
        folder, parse_json(raw[CONFIG]), result if RESULT in has else None, history, RESULT in has, root
    )
    if problems:
        status = "tampered" if listed is not None and not problems[0].startswith("inconsistent") else "inconsistent"
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
        return (
            "" if sha256_file(path) in (listed[0][name], listed[1].get(name)) else "it differs from what rotnet wrote"
        )

    return vouch


def is_sha256(x) -> bool:
    return isinstance(x, str) and re.fullmatch(r"[0-9a-f]{64}", x) is not None


def finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def read_metrics(path: Path) -> list[dict] | None:
    """metrics.jsonl's epochs (see `parse_metrics`); [] when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        return parse_metrics(path.read_bytes())
    except OSError:
        return None


def parse_metrics(data: bytes | None) -> list[dict] | None:
    """Epoch records; [] for no file, None when a line is not an epoch record (epochs 1, 2, ... in order, finite
    numbers, a weights digest that is a sha256 where present)."""
    if data is None:
        return []
    out = []
    try:
        lines = data.decode().splitlines()
    except UnicodeDecodeError:
        return None
    for i, line in enumerate(lines):
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # a torn last line (a crash mid-write of rotnet <= 0.1): the epochs before it
                break
            return None
        if not isinstance(r, dict) or r.get("epoch") != i + 1 or not all(finite(r[k]) for k in NUMBERS if k in r):
            return None
        if "weights_sha256" in r and not is_sha256(r["weights_sha256"]):
            return None
        out.append(r)
    return out


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


def is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def is_text(x) -> bool:
    return isinstance(x, str)


# result.json's fields that readers use (report, plots, export, API), each with what it must be where present: a
# record that passes these is one every reader can use without a traceback.
RESULT_FIELDS = {
    "test_acc": (finite, "a number"),
    "epochs": (lambda x: is_count(x) and x > 0, "a positive whole number"),
    "seed": (is_count, "a whole number"),
    "arch": (is_text, "text"),
    "experiment": (is_text, "text"),
    "task": (lambda x: x in ("rotation", "classification"), "rotation or classification"),
    "dataset": (is_text, "text"),
    "pretrain_dataset": (is_text, "text"),
    "train_seconds": (lambda x: finite(x) and x >= 0, "a number of seconds"),
    "last_invocation_seconds": (lambda x: finite(x) and x >= 0, "a number of seconds"),
    "images_per_s": (lambda x: finite(x) and x >= 0, "a number"),
    "test_images": (is_count, "a count"),
    "train_images": (is_count, "a count"),
    "world_size": (lambda x: is_count(x) and x > 0, "a positive whole number"),
    "ranks_agree": (lambda x: isinstance(x, bool), "true or false"),
    "class_names": (lambda x: isinstance(x, list) and all(map(is_text, x)), "a list of names"),
    "train_images_per_class": (lambda x: isinstance(x, dict) and all(map(is_count, x.values())), "counts by class"),
}


def result_problems(result: dict, cfg) -> list[str]:
    """Where result.json is not what rotnet writes (RESULT_FIELDS), or names another task than its configuration."""
    out = [
        f"inconsistent: {RESULT}'s {key} is {result[key]!r}, not {what}"
        for key, (ok, what) in RESULT_FIELDS.items()
        if key in result and not ok(result[key])
    ]
    if "test_acc" not in result:
        out.append(f"inconsistent: {RESULT} has no test_acc")
    if isinstance(cfg, dict) and "task" in result and result["task"] != cfg.get("task", result["task"]):
        out.append(f"inconsistent: {RESULT} says task {result['task']!r}, {CONFIG} {cfg.get('task')!r}")
    return out


def config_problems(cfg: dict) -> list[str]:
    """Where config.json's configuration is not one rotnet could have run (a value of the wrong kind or out of range;
    a key a record predates is read as before it, and a missing key is a resume's concern, not a reader's)."""
    try:
        from_dict(RunConfig().to_dict() | with_defaults(cfg), CONFIG)
    except RotnetError as e:
        return [f"inconsistent: {e}"]
    return []


def is_counts(row) -> bool:
    return isinstance(row, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in row)


def confusion_problems(result: dict) -> list[str]:
    """Where result.json's confusion matrix disagrees with itself: not a square matrix of counts, one row per class
    name, whose diagonal gives its test accuracy."""
    m, names = result.get("confusion"), result.get("class_names")
    if m is None:
        return []
    if not isinstance(m, list) or not m or not all(is_counts(row) and len(row) == len(m) for row in m):
        return [f"inconsistent: {RESULT}'s confusion is not a square matrix of counts"]
    if not isinstance(names, list) or len(names) != len(m) or not all(isinstance(n, str) for n in names):
        return [f"inconsistent: {RESULT} has {len(m)} confusion rows but class_names {names!r}"]
    total = sum(map(sum, m))
    acc = 100 * sum(m[i][i] for i in range(len(m))) / max(total, 1)
    if not finite(result.get("test_acc")) or abs(acc - result["test_acc"]) > 1e-6:
        return [f"inconsistent: {RESULT}'s confusion gives test_acc {acc!r}, it says {result.get('test_acc')!r}"]
    return []


def open_run(folder: Path, purpose: str, *, need: tuple[str, ...] = ()) -> RunRecord:
    """The one door to a run's record for a command that acts on it (resume, reuse, verify, export, probe, load):
    the record read once (`read_run`); a tampered or inconsistent one is refused, naming what is wrong; so is an
    incomplete one, or one without the files in `need`. Returns the record as checked, to pass down."""
    folder = Path(folder)
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
        raise RotnetError(f"cannot {purpose} {folder}: {', '.join(absent)} missing")
    return rec
