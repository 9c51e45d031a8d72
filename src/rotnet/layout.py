"""The run-folder scheme, in one place: ROOT/[DATA/]ARCH/EXPERIMENT[@Npc]/seedN, its file names, finding runs,
reading what a run recorded, and which folders are rotnet's outputs."""

from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rotnet.config import RunConfig, dataset_slug
from rotnet.errors import RotnetError
from rotnet.files import file_in_the_way, open_regular, read_regular, user_path

CONFIG = "config.json"  # the resolved configuration and its provenance
METRICS = "metrics.jsonl"  # one line per epoch
WEIGHTS = "model.safetensors"  # final weights, loadable into plain torchvision
RESULT = "result.json"  # present only when the run finished
EXAMPLES = "examples.safetensors"  # a few test images and their predictions, for the report
FAILED = "failed.json"  # why the run failed (reproduce writes it)
CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"  # every file above and each checkpoint, with its sha256 (record.py)
REPORT_MARKER = ".rotnet-report"  # in a runs root: the files `rotnet report` wrote there
VERIFY = "verify.json"  # what the last `rotnet verify` compared, and its verdict
LOCK = ".lock"  # flock'ed for the run's life; holds the owner's pid
MANIFEST_FORMAT = "rotnet-manifest-1"  # manifest.json's "format" (record.py writes it)


def has_rotnet_version(d: Any) -> bool:
    return isinstance(d, dict) and isinstance(d.get("rotnet_version"), str)


# What marks a folder rotnet wrote, by what only rotnet writes into a file, never by a name alone (datasets hold
# files called manifest.json or config.json): a run (its manifest, or config.json of a run or an export), a runs
# root (a plan's record, a report's marker). Such a folder is never read as images.
OUTPUT_SIGNS = {
    MANIFEST: lambda d: isinstance(d, dict) and d.get("format") == MANIFEST_FORMAT,
    "reproduce.json": has_rotnet_version,
    "label-efficiency.json": has_rotnet_version,
    REPORT_MARKER: lambda d: (
        (isinstance(d, list) and all(isinstance(n, str) for n in d))  # rotnet <= 0.6
        or (isinstance(d, dict) and all(isinstance(v, str | None) for v in d.values()))  # name -> sha256 as written
    ),
    CONFIG: lambda d: has_rotnet_version(d) and isinstance(d.get("config"), dict),
}


def is_rotnet_output(folder: Path, names: set[str] | list[str]) -> bool:
    """Whether a folder holding these file names is one rotnet wrote: one of its marker files holds what rotnet
    writes there."""
    names = set(names)
    return any(name in names and sign(read_marker(Path(folder) / name)) for name, sign in OUTPUT_SIGNS.items())


def read_marker(path: Path) -> Any:
    """A small JSON file's value, or None: read only when it is a regular file (a FIFO or a device would block or
    never end) of at most 1 MiB, never through a link."""
    try:
        with open_regular(path, follow=False) as f:
            if os.fstat(f.fileno()).st_size > 1 << 20:
                return None
            data = f.read()
    except (RotnetError, OSError):
        return None
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


INVOCATION_KEYS = ("command", "git_commit", "started", "finished", "wall_seconds", "runs")
TIMES = ("started", "finished", "wall_seconds")  # seconds: finite numbers
LISTS = ("runs",)  # of run names
# the other fields of a plan's log that readers show: text
TEXTS = ("command", "git_commit", "preset", "rotnet_version", "torch", "torchvision", "device_name")


def finite(x: Any) -> bool:
    """A number that a record's reader can compute with: an int or float, not a bool, not nan or inf."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def fits(key: str, value: Any) -> bool:
    """Whether a field of a plan's log holds what rotnet writes there (a number of seconds, a list of run names,
    text); any other field passes. The log can be edited, or another tool's: a field that does not fit reads as
    unknown."""
    if key in TIMES:
        return finite(value)
    if key in LISTS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return key not in TEXTS or isinstance(value, str)


def plan_log(path: Path) -> dict:
    """A plan's log (reproduce.json) as its readers take it: {} for none or not a JSON object; each top-level field
    that does not fit what rotnet writes left out (its history: `invocations`)."""
    log = read_json(path)
    return {k: v for k, v in log.items() if fits(k, v)} if isinstance(log, dict) else {}


def invocations(log: Any) -> list[dict]:
    """Every invocation a plan's record (reproduce.json) holds, oldest first: its `earlier` ones, then its own, each
    with INVOCATION_KEYS ("runs": the runs it planned; older records kept them for the last one only; a field that
    does not fit: None). Every reader of a plan's history goes through here; [] for no record."""
    if not isinstance(log, dict):
        return []
    earlier = log.get("earlier") if isinstance(log.get("earlier"), list) else []
    entries = [e for e in [*earlier, log] if isinstance(e, dict)]
    return [{k: e.get(k) if fits(k, e.get(k)) else None for k in INVOCATION_KEYS} for e in entries]


def merge_logs(old: Any, new: dict) -> dict:
    """Two logs of plans on one runs root as one: the plan started last on top (its whole record), every other
    invocation in `earlier`, oldest first, each once by its start time. Of two copies of one invocation the one that
    says it finished stands, else new's: plans on one root may end in any order. How a plan writes its log over the
    one there, and how records from another runs root are taken in (tools/restage_results.py)."""
    if not isinstance(old, dict):
        return new
    copies: dict = {}
    for n, log in enumerate((old, new)):
        for i, invocation in enumerate(logged(log)):
            key = started(invocation) or f"unknown {n}.{i}"
            if key not in copies or invocation.get("finished") or not copies[key].get("finished"):
                copies[key] = invocation
    top = max((new, old), key=started)  # a tie: new, the same plan written again
    copy = copies.pop(started(top), None)
    top = top | copy if copy and copy.get("finished") and not top.get("finished") else top
    return top | {"earlier": sorted(copies.values(), key=started)}


def started(invocation: dict) -> float:
    """When an invocation started (0 where its log, edited or foreign, says no time)."""
    value = invocation.get("started")
    return value if fits("started", value) else 0


def logged(log: dict) -> list[dict]:
    """The invocations a plan's log holds, oldest first: its earlier ones as stored (entries older rotnets wrote keep
    their keys), its own as a log keeps one in `earlier`."""
    stored = [e for e in log.get("earlier") or [] if isinstance(e, dict)]
    return [*stored, invocations(log)[-1]]


def has_checkpoint(folder: Path) -> bool:
    """Whether a run folder holds a checkpoint to resume from (what a stop may say was saved)."""
    return any((Path(folder) / CHECKPOINTS).glob("e*-s*.safetensors"))


def runs_root_for(preset: str, runs_root: str | Path | None = None) -> Path:
    """runs/PRESET unless a runs root is named: runs of different presets never meet, and every command and the
    Python API find each other's. One run's folder named as a runs root, or a folder inside one, is refused (its runs
    would nest inside that run)."""
    if runs_root is None:
        return Path("runs") / Path(preset).stem
    if not str(runs_root).strip():  # an unset variable's "": never the current folder, nor silently the default
        raise RotnetError("the runs root is an empty path; name a folder (or leave it out for runs/PRESET)")
    runs_root = user_path(runs_root)
    above = runs_root_above(runs_root)
    if above is not None:
        raise RotnetError(f"runs root {runs_root} is one run's folder; name the runs root that holds it: {above}")
    inside = run_holding(runs_root)
    if inside is not None:  # a folder made in a run's folder: its runs would nest in that run's record
        raise RotnetError(f"runs root {runs_root} lies inside the run folder {inside}; name a runs root outside it")
    if (outer := runs_root_holding(runs_root)) is not None:  # reads no record: a plan reads each once
        raise RotnetError(
            f"runs root {runs_root} is a folder of the runs root {outer} (an arch's or an experiment's); "
            f"its runs would nest among that root's, which would read them as its own: name the runs root: {outer}"
        )
    return Path(runs_root)


def runs_root_holding(folder: Path) -> Path | None:
    """The runs root that folder is an arch's or an experiment's folder of (ROOT/ARCH, ROOT/ARCH/EXPERIMENT), from
    a run one or two levels below it that lies where its record puts it in another runs root; None for a runs root,
    or a folder that holds no such run (a run moved where its record does not put it is its own report's
    "inconsistent"). No runs root holds a run one or two levels down, so this reads no record of a root's own runs;
    a dataset's folder, whose runs lie at a run's depth, is told by the report, which reads them anyway."""
    for pattern in ("seed*", "*/seed*"):  # bounded: never a walk of all below (a home folder)
        for run in sorted(folder.glob(pattern)):
            try:
                record = read_record(run) if is_run_folder(run) and parse_run_dir(run) else None
            except RotnetError:
                record = None
            if record is None or not placed_as_recorded(run, record["config"]):
                continue
            if root_of(run, record["config"]) != folder.resolve():  # from the record read above: no second read
                return runs_root_above(run)  # as the user spelled it, for the message
    return None


def placed_as_recorded(run: Path, config: dict) -> bool:
    """Whether a run folder's path spells what its configuration says: its arch, experiment, seed and data."""
    segment, rid = data_segment(config), parse_run_dir(run)
    parts = Path(run).resolve().parts
    return (
        rid is not None
        and (rid.arch, rid.experiment, rid.seed) == (config.get("arch"), config.get("experiment"), config.get("seed"))
        and (not segment or (len(parts) > 4 and parts[-4] == segment))
    )


@dataclass(frozen=True)
class RunId:
    arch: str
    experiment: str
    seed: int
    per_class: int = 0  # a class-balanced subset run (label efficiency)
    data: str = ""  # the data segment: "" for CIFAR-10 at 32 px, else e.g. "stl10", "pets-64px_from_stl10-unlabeled"

    @property
    def relative(self) -> Path:
        name = self.experiment + (f"@{self.per_class}pc" if self.per_class else "")
        return Path(self.data) / self.arch / name / f"seed{self.seed}"


def data_segment(cfg: RunConfig | dict) -> str:
    """The folder a run's data adds to its path: none for the reference's CIFAR-10; else the dataset, its size if set,
    and the pretraining dataset of a transfer from another one. Also of a recorded configuration (a dict: a key
    it predates has its default)."""
    d = cfg if isinstance(cfg, dict) else cfg.to_dict()
    dataset, size, pretrain = d.get("dataset", "cifar10"), d.get("image_size", 0), d.get("pretrain_dataset", "")
    if dataset == "cifar10" and not size and not pretrain:
        return ""
    out = dataset_slug(str(dataset)) + (f"-{size}px" if size else "")
    return out + (f"_from_{dataset_slug(str(pretrain))}" if pretrain else "")


def run_id(cfg: RunConfig) -> RunId:
    return RunId(cfg.arch, cfg.experiment, cfg.seed, cfg.train_per_class, data_segment(cfg))


def run_dir(runs_root: Path, cfg: RunConfig) -> Path:
    """ROOT/[DATA/]ARCH/EXPERIMENT/seedN; a class-balanced subset run is EXPERIMENT@Npc (label efficiency)."""
    return Path(runs_root) / run_id(cfg).relative


def root_of(folder: Path, config: dict) -> Path:
    """The runs root a run folder lies in, from its recorded configuration (ROOT/[DATA/]ARCH/EXPERIMENT/seedN)."""
    return Path(folder).resolve().parents[3 if data_segment(config) else 2]


def recorded_root(run: Path, config: object) -> Path | None:
    """The runs root (resolved) a run folder lies in by its record, when its path spells what the record says (else
    None: a run moved where its record does not put it, or a record that is no configuration)."""
    try:
        return root_of(run, config) if isinstance(config, dict) and placed_as_recorded(run, config) else None
    except (TypeError, ValueError, IndexError):  # a record's fields may hold anything
        return None


def source_run(root: Path, record: dict) -> Path | None:
    """The rotation run a from-rotation run started from, as its record names it (`init_source_config`), laid out
    in the runs root `root`: wherever that root was moved or copied and the command runs from, and whatever data
    the source trained on (another data segment). None when the record names none."""
    source = record.get("init_source_config")
    if record.get("init_from") != "rotation run" or not isinstance(source, dict):
        return None
    try:
        rid = RunId(source["arch"], "rotation", int(source["seed"]), int(source.get("train_per_class", 0)))
    except (KeyError, TypeError, ValueError):
        return None
    return Path(root) / replace(rid, data=data_segment(source)).relative


def kept_name(folder: Path, n: int) -> Path:
    """Where `--restart` keeps the n-th run that stood at folder before (FOLDER.oldN)."""
    return folder.with_name(f"{folder.name}.old{n}")


def kept_runs(folder: Path) -> list[Path]:
    """The runs `--restart` kept from folder, oldest first (FOLDER.old1, .old2, ...)."""
    kept = [p for p in folder.parent.glob(f"{folder.name}.old*") if p.name[len(folder.name) + 4 :].isdigit()]
    return sorted(kept, key=lambda p: int(p.name[len(folder.name) + 4 :]))


def parse_run_dir(folder: Path, root: Path | None = None) -> RunId | None:
    """The RunId a folder spells: its last three parts, and the data segment before them when it lies four levels
    under root. None if it spells none. The folder is the one it is, however it was named (`.`, `seed0/../seed0`, a
    link the user made to it): its real path spells it."""
    folder = Path(folder).resolve()
    root = Path(root).resolve() if root is not None else None
    parts = folder.parts[-3:]
    if len(parts) < 3 or not parts[2].startswith("seed") or not parts[2][4:].isdigit():
        return None
    experiment, at, per_class = parts[1].partition("@")
    if at and not (per_class.endswith("pc") and per_class[:-2].isdigit()):
        return None
    data = folder.parts[-4] if root is not None and len(folder.relative_to(root).parts) == 4 else ""
    return RunId(parts[0], experiment, int(parts[2][4:]), int(per_class[:-2]) if at else 0, data)


def find_runs(root: Path, shallowest: int = 3) -> list[Path]:
    """Run folders under a runs root (those holding a config.json), with or without a data segment; reached through
    no link (rotnet makes none: a folder linked in from elsewhere holds someone else's runs). `shallowest`: the
    least depth a run lies at below root (3: ARCH/EXPERIMENT/seedN; 1 below an experiment's folder)."""
    found, level = [], [Path(root)]
    for depth in range(1, 5):  # ROOT/[DATA/]ARCH/EXPERIMENT/seedN
        below = []
        for folder in level:
            try:
                below += [Path(e.path) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
        found += [p for p in below if depth >= shallowest and p.name.startswith("seed")]
        level = below
    return sorted(p for p in found if parse_run_dir(p) and (p / CONFIG).is_file() and not (p / CONFIG).is_symlink())


def is_run_folder(folder: Path) -> bool:
    """Whether a folder is a run's: it holds a manifest, or is spelled ARCH/EXPERIMENT/seedN with a config.json (a run
    from before runs were sealed, or a half-copied one). `rotnet export`'s folder (the run's files without its
    record, for a model hub) and a model folder with a config.json of its own are not."""
    folder = Path(folder)
    return (folder / MANIFEST).exists() or ((folder / CONFIG).is_file() and parse_run_dir(folder) is not None)


def refuse_output_folder(out: Path) -> None:
    """What `export` and `export-images` write into: a new or empty folder, and none inside a run folder (its files
    would sit among a sealed run's, and `export RUN RUN/hub` put a second copy of its weights there)."""
    out = Path(out)
    if (in_the_way := file_in_the_way(out)) is not None:
        raise in_the_way
    if out.exists() and any(out.iterdir()):
        raise RotnetError(f"{out} exists and is not an empty folder; name a new one")
    refuse_inside_run(out)
    if (root := runs_root_around(out.absolute())) is not None:  # an export there reads as an inconsistent run
        raise RotnetError(
            f"{out} is spelled as a run folder (ARCH/EXPERIMENT/seedN) in the runs root {root}, whose report and "
            "plans would take it for a run; name a folder elsewhere"
        )


def refuse_inside_run(folder: Path, what: str = "") -> None:
    """A folder the user names for rotnet to write into (an export's, `--feature-cache`, `--cache-dir`, a data root a
    dataset is downloaded into) is no run folder and lies in none: its files would sit among a sealed run's (`export
    RUN RUN/hub` put a second copy of the weights there, `--feature-cache RUN` the probe's features)."""
    named = f"{what} {folder}" if what else str(folder)
    for run in [Path(folder).absolute(), *Path(folder).absolute().parents]:
        if is_run_folder(run):
            where = "is" if run == Path(folder).absolute() else "lies inside"
            raise RotnetError(f"{named} {where} the run folder {run}; name a folder elsewhere")


def runs_root_around(folder: Path) -> Path | None:
    """The runs root a folder spelled ROOT/[DATA/]ARCH/EXPERIMENT/seedN lies in, or None: ROOT holds a plan's log or a
    report's marker, or [DATA/] holds a sealed run beside it (a folder of exports laid out as runs holds none)."""
    if parse_run_dir(folder) is None:
        return None
    level = folder.parents[2]  # ROOT, or the DATA folder in it
    if any((run / MANIFEST).exists() and len(run.relative_to(level).parts) == 3 for run in find_runs(level)):
        return level
    for root in folder.parents[2:4]:
        names = {n for n in ("reproduce.json", "label-efficiency.json", REPORT_MARKER) if (root / n).is_file()}
        if names and is_rotnet_output(root, names):
            return root
    return None


def refuse_copied_run(folder: Path) -> None:
    """A folder with a config.json that is no run (an export, a copy of a run's files) named where a run is wanted:
    refused as none, before anything is read or written there."""
    if (Path(folder) / CONFIG).is_file() and not is_run_folder(folder):
        why = f"a run's files without its {MANIFEST}: an export, or a copy; name the run folder itself"
        raise not_a_run(folder, why)


def run_holding(path: Path) -> Path | None:
    """The run folder a path lies inside, at any depth (RUN/model.safetensors, RUN/checkpoints/e0001-s000000.json,
    a folder to be made in RUN), as the user spelled it; None for a run's folder itself or a path in none. A run here
    is spelled ARCH/EXPERIMENT/seedN and holds a record: a folder that merely holds a manifest.json (a web app's)
    is no run."""
    path = Path(path)
    for n, parent in enumerate(path.resolve().parents, 1):
        if parse_run_dir(parent) is not None and is_run_folder(parent):
            spelled = parent_as_spelled(path, n)
            return parent if spelled == Path(".") else spelled  # "the run folder ." would say little
    return None


def not_a_run(folder: Path, why: str) -> RotnetError:
    """The error for a folder given as a run that holds none; when it does not exist, it names the run folders
    nearest to it (a mistyped experiment, seed, or a preset's @Npc suffix)."""
    folder = Path(folder)
    if folder.exists() and (run := run_holding(folder)) is not None:
        what = "folder" if folder.is_dir() else "file"
        return RotnetError(f"{folder} is a {what} inside the run folder {run}; name that folder")
    if folder.exists():  # a runs root or an experiment's folder: the runs it holds
        below = runs_named(runs_below(folder))
        return RotnetError(f"{folder} is not a rotnet run folder ({why})" + (f"; it holds {below}" if below else ""))
    near = folder.parent
    for _ in range(3):  # up to the runs root of ROOT/[DATA/]ARCH/EXPERIMENT/seedN, and no further
        if near.is_dir():
            break
        near = near.parent
    found = runs_named(runs_below(near), folder)
    return RotnetError(f"{folder} does not exist" + (f"; run folders near it: {found}" if found else ""))


def runs_below(folder: Path) -> list[Path]:
    """Run folders at any depth a runs root's, an arch's or an experiment's folder holds them (none below a file or
    a missing path)."""
    return find_runs(folder, shallowest=1)


def runs_named(found: list[Path], like: Path | None = None) -> str:
    """Up to four run folders (those spelled most like `like` first, else in order), and how many more."""
    found = sorted(found, key=lambda p: (-difflib.SequenceMatcher(None, str(p), str(like)).ratio() if like else 0, p))
    more = f" (and {len(found) - 4} more)" if len(found) > 4 else ""
    return ", ".join(map(str, found[:4])) + more if found else ""


def read_json(path: Path, *, follow: bool = True) -> Any:
    """A JSON file's value, or None when it is missing, not a regular file (`files.read_regular`) or unreadable;
    follow=False: or a link (rotnet's own files: it writes none)."""
    try:
        return json.loads(read_regular(path, follow=follow))
    except (RotnetError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def runs_root_above(folder: Path) -> Path | None:
    """The runs root a run folder lies in (ROOT/[DATA/]ARCH/EXPERIMENT/seedN, the data segment from its record), or
    None when folder is not a readable run folder: what a command given one run where it wants a runs root names."""
    folder = Path(folder)
    try:
        record = read_record(folder) if parse_run_dir(folder) else None
    except RotnetError:
        record = None
    depth = 4 if record and data_segment(record["config"]) else 3
    return parent_as_spelled(folder, depth) if record and len(folder.resolve().parents) >= depth else None


def parent_as_spelled(folder: Path, n: int) -> Path:
    """The folder n levels above folder: as the user spelled it when that names it, else as it is (`.`, `../seed0`
    name none; nor does a spelling through a link: the link's folder is not the one above what it points to)."""
    real = folder.resolve().parents[n - 1]
    spelled = folder.parents[n - 1] if ".." not in folder.parts and len(folder.parents) >= n else None
    return spelled if spelled is not None and spelled.resolve() == real else real


def read_record(folder: Path) -> dict | None:
    """config.json of a run folder (a dict with a 'config' dict), or None when missing; an error when unreadable."""
    path = Path(folder) / CONFIG
    if not path.exists():
        return None
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise RotnetError(f"{path} is unreadable; move the run away or use --restart")
    return record
