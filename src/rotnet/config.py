"""A run's configuration: one frozen dataclass with typed fields, validation, and the TOML override rules."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import tomllib
import typing
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from rotnet.errors import RotnetError, unknown
from rotnet.files import open_regular, user_path

Arch = Literal["resnet18", "resnet34", "resnet50"]
ARCHS: tuple[str, ...] = typing.get_args(Arch)
DATASETS = ("cifar10", "cifar100", "cifar100-coarse", "stl10", "stl10-unlabeled")  # by name; else an image folder


def dataset_slug(dataset: str) -> str:
    """A dataset's name in run-folder paths: the name, or an image folder's own folder name."""
    if dataset in DATASETS:
        return dataset
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(dataset).name) or "folder"
    if len(slug) > MAX_SLUG:  # a file name holds 255 bytes: the slug, a size, a digest and a suffix must fit
        slug = f"{slug[: MAX_SLUG - 9]}-{hashlib.sha256(slug.encode()).hexdigest()[:8]}"
    return slug


MAX_SLUG = 100  # characters of a folder's name kept in run and cache paths (longer: cut, with a digest of the whole)


@dataclass(frozen=True)
class DataOptions:
    """Where data is found and prepared; nothing here changes which images a run sees."""

    root: Path | None = None  # the named datasets' parent folder (default: $ROTNET_DATA, else ./data)
    download: bool = True  # fetch a missing named dataset (never an image folder)
    cache_dir: Path | None = None  # prepared image folders (default: FOLDER/.rotnet-cache)
    skip_bad_images: bool = False  # an unreadable image is skipped (and counted) rather than an error

    def __post_init__(self):  # the API's download="no" was true
        for name in ("download", "skip_bad_images"):
            if not isinstance(getattr(self, name), bool):
                raise RotnetError(f"{name} must be True or False; got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> DataOptions:
        paths = {k: Path(d[k]) if d.get(k) else None for k in ("root", "cache_dir")}
        return cls(**paths, download=bool(d.get("download", True)), skip_bad_images=bool(d.get("skip_bad_images")))


NO_OPTIONS = DataOptions()


def opt(default: Any, help: str) -> Any:  # noqa: A002 - argparse's word
    """A field with its help text (shown by `rotnet train --help`)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's result. Defaults are the reference report's protocol."""

    experiment: str = opt("rotation", "the experiment (named on the command line)")
    task: Literal["rotation", "classification"] = opt(
        "rotation", "rotation: 4-way (0/90/180/270 degrees); classification: the 10 classes"
    )
    arch: Arch = opt("resnet18", "torchvision ResNet")
    init: Literal["random", "rotation"] = opt(
        "random", "rotation: every weight but fc from the rotation run of the same arch and seed"
    )
    init_path: str = opt("", "explicit rotation weights for init=rotation ('' = find the rotation run)")
    trainable: Literal["all", "layer4"] = opt("all", "layer4: only layer4.* and fc.* train (the report's rows 2-3)")
    stem: Literal["imagenet", "cifar"] = opt(
        "imagenet", "imagenet: the unmodified torchvision stem, as the reference; cifar: 3x3 stride-1 conv1, no maxpool"
    )
    dataset: str = opt("cifar10", f"{', '.join(DATASETS)}, or the path of an image folder (see README)")
    pretrain_dataset: str = opt("", "from-rotation runs: the dataset the rotation run trained on ('': the same)")
    image_size: int = opt(0, "resize (shorter side) and center-crop every image to N once (0: the dataset's size)")
    normalization: Literal["auto", "reference", "dataset"] = opt(
        "auto", "auto: the reference's constants on CIFAR-10, else the dataset's own channel mean/std"
    )
    epochs: int = opt(45, "training epochs (report: 45 rotation, 20 per transfer, 70 for ResNet34/50)")
    batch_size: int = opt(128, "images per step (the reference's DataLoader batch)")
    optimizer: Literal["adam", "sgd"] = opt("adam", "report: Adam")
    lr: float = opt(1e-3, "learning rate (report: 0.001)")
    momentum: float = opt(0.9, "SGD momentum")
    nesterov: bool = opt(False, "SGD nesterov momentum")
    weight_decay: float = opt(0.0, "L2 weight decay")
    schedule: Literal["step", "cosine"] = opt(
        "step", "step: lr x lr_gamma every lr_step_epochs (the report's StepLR); cosine: per step to 0"
    )
    lr_step_epochs: int = opt(10, "epochs between lr steps (report: 10)")
    lr_gamma: float = opt(0.1, "lr factor at each step (report: 0.1)")
    sync_bn: bool = opt(False, "under torchrun: BatchNorm statistics over the global batch (GPU only)")
    freeze_bn: bool = opt(False, "frozen layers' BatchNorm keep fixed statistics (the reference updates them)")
    rotations_per_image: Literal[1, 4] = opt(1, "1: one random rotation (the reference); 4: all four (RotNet)")
    train_per_class: int = opt(0, "0: the whole training set; n: a class-balanced subset of n per class")
    seed: int = opt(0, "seed of every random stream (init, shuffle, augmentation, subsets)")
    precision: Literal["fp32", "bf16", "fp16"] = opt("fp32", "autocast dtype of the forward pass")
    channels_last: bool = opt(True, "NHWC memory format: ~14%% faster on CPU (oneDNN) and on GPU; same math")
    compile: bool = opt(False, "torch.compile the model")
    kernels: Literal["native", "portable"] = opt(
        "native", "CPU kernels. native: the fastest for this CPU (the last bits depend on it); portable: the same "
        "bits on any x86-64 CPU, several times slower (README: Verify a result)"
    )  # fmt: skip
    eval_batch_size: int = opt(1024, "images per evaluation batch")
    eval_every: int = opt(1, "evaluate every N epochs and after the last (the reference: every epoch)")
    knn_every: int = opt(0, "kNN monitor every N epochs (0: off)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def pretext(self) -> str:
        """'rotation' for a run that trains the rotation task or starts from its weights, else 'none'."""
        return "rotation" if "rotation" in (self.task, self.init) else "none"


HINTS = typing.get_type_hints(RunConfig)
FIELD_TYPES: dict[str, type] = {f.name: type(f.default) for f in fields(RunConfig)}
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(RunConfig)}
CHOICES: dict[str, tuple] = {k: typing.get_args(t) for k, t in HINTS.items() if typing.get_origin(t) is Literal}
HELP: dict[str, str] = {f.name: f.metadata.get("help", "") for f in fields(RunConfig)}
POSITIVE = ("epochs", "batch_size", "lr", "lr_step_epochs", "lr_gamma", "eval_batch_size", "eval_every")
NON_NEGATIVE = ("weight_decay", "momentum", "train_per_class", "knn_every", "seed")  # image_size: check_image_size
# Keys used only when another key has one of some values (elsewhere a value given for them changes nothing), and
# what a user would pass to use them.
USED_ONLY_WITH = {
    "momentum": ("optimizer", ("sgd",), "--optimizer sgd"),
    "nesterov": ("optimizer", ("sgd",), "--optimizer sgd"),
    "lr_step_epochs": ("schedule", ("step",), "--schedule step"),
    "lr_gamma": ("schedule", ("step",), "--schedule step"),
    "freeze_bn": ("trainable", ("layer4",), "a layer4 experiment"),  # only frozen layers' BatchNorm are affected
    # A from-rotation run uses both through its rotation run (which one it starts from); a from-random run never.
    "rotations_per_image": ("pretext", ("rotation",), "the rotation experiment or one from its weights"),
    "pretrain_dataset": ("pretext", ("rotation",), "the rotation experiment or one from its weights"),
}
# Larger images are refused, not tried: one 4096 px image is 50 MB as uint8 and a ResNet batch of them needs far
# more memory than any machine rotnet targets (--image-size 100000 asked for a 3 TB array).
MAX_IMAGE_SIZE = 4096
# Keys that don't change the trained weights: a source run may differ in these and still be the same protocol.
NOT_PROTOCOL = ("init_path", "eval_batch_size", "eval_every", "knn_every")


def validate(cfg: RunConfig) -> RunConfig:
    """Check every field's value; raise RotnetError naming the first bad one."""
    for name, allowed in CHOICES.items():
        value = getattr(cfg, name)
        if value not in allowed:
            raise RotnetError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise RotnetError(f"{f.name} must be a finite number; got {value!r}")
    for name in POSITIVE:
        if not getattr(cfg, name) > 0:
            raise RotnetError(f"{name} must be a positive number; got {getattr(cfg, name)!r}")
    for name in NON_NEGATIVE:
        if getattr(cfg, name) < 0:
            raise RotnetError(f"{name} must be zero or positive; got {getattr(cfg, name)!r}")
    if cfg.momentum >= 1:  # torch takes any: at 1 or more no gradient is ever forgotten and the steps grow unbounded
        raise RotnetError(f"momentum must be below 1; got {cfg.momentum!r}")
    if cfg.optimizer == "sgd" and cfg.nesterov and cfg.momentum == 0:
        raise RotnetError("nesterov needs a momentum above 0; got momentum 0.0 (pass --momentum, or --no-nesterov)")
    check_dataset(cfg.dataset)
    check_image_size(cfg.image_size)
    return cfg


# The one check of a dataset and of an image size, whoever names them (a run's configuration, `probe --dataset
# --image-size`, `export-images`, `verify --dataset`): rotnet.datasets.load_dataset asks both before reading any data.
def check_dataset(dataset: str, key: str = "dataset") -> str:
    """A dataset's name, or an image folder's path as a shell reads it (`~` expanded)."""
    if not dataset.strip():  # an unset variable: read as ".", the working folder would be taken for an image folder
        raise RotnetError(f"{key} must name a dataset or an image folder; got {dataset!r}")
    return dataset if dataset in DATASETS else str(user_path(dataset))


def check_image_size(size: int) -> int:
    if not 0 <= size <= MAX_IMAGE_SIZE or 0 < size < 8:
        raise RotnetError(f"image_size must be 0 (the dataset's own) or from 8 to {MAX_IMAGE_SIZE}; got {size}")
    return size


def drop_unused(cfg: RunConfig, given: dict[str, Any]) -> RunConfig:
    """cfg with each key the command line gives but this run leaves unused at its default (`reproduce --freeze-bn`:
    the layer4 runs freeze BatchNorm, the rotation run records what it did, and stays the run a plain reproduce made,
    which it reuses). A preset's or a file's values are the protocol's, and kept."""
    unused = {k: DEFAULTS[k] for k in given if k in USED_ONLY_WITH and not uses(cfg, k)}
    return replace(cfg, **unused) if unused else cfg


def uses(cfg: RunConfig, key: str) -> bool:
    decider, used_with, _ = USED_ONLY_WITH[key]
    return getattr(cfg, decider) in used_with


def refuse_unused(cfgs: list[RunConfig], given: dict[str, Any]) -> None:
    """A value the command line gives a key that every run of the command leaves unused (`--momentum` with Adam,
    `--lr-gamma` under the cosine schedule, `--freeze-bn` with nothing frozen) is refused: it would change nothing,
    yet the runs would record it."""
    for key, value in given.items():
        if key not in USED_ONLY_WITH or coerce(key, value) == DEFAULTS[key]:
            continue
        decider, used_with, hint = USED_ONLY_WITH[key]
        if cfgs and not any(uses(c, key) for c in cfgs):
            had = " or ".join(sorted({str(getattr(c, decider)) for c in cfgs}))
            whose = "this run's" if len(cfgs) == 1 else "every run's"
            raise RotnetError(
                f"{key}={value} changes nothing: {key} is used only with {decider} {' or '.join(used_with)}, and "
                f"{whose} {decider} is {had}; leave it out, or use {hint}"
            )


def canonical(cfg: RunConfig) -> RunConfig:
    """One spelling per run: a rotation run trains on the pretraining dataset (so `--dataset X --pretrain-dataset
    Y` names the same runs for every experiment), only a from-rotation run keeps a pretrain_dataset, when it
    differs from its own, and an image folder is named by its absolute path."""
    check_dataset(cfg.dataset)  # before a blank name is made absolute: the working folder
    if cfg.pretrain_dataset:  # '': the run's own dataset
        check_dataset(cfg.pretrain_dataset, "pretrain_dataset")
    folders = {k: str(user_path(v).absolute()) for k in ("dataset", "pretrain_dataset")
               if (v := getattr(cfg, k)) and v not in DATASETS}  # fmt: skip
    cfg = replace(cfg, **folders)
    if cfg.task == "rotation" and cfg.pretrain_dataset:
        cfg = replace(cfg, dataset=cfg.pretrain_dataset)
    if cfg.init != "rotation" or cfg.pretrain_dataset == cfg.dataset:
        cfg = replace(cfg, pretrain_dataset="")
    return cfg


TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def coerce(key: str, value: Any) -> Any:
    """Convert a TOML, command-line or Python value to the field's type, or raise RotnetError. Text means what the
    same value written in TOML means: `--set epochs=1.0` is `epochs = 1.0`, an integer; a numpy or torch scalar
    means its Python value."""
    if key not in FIELD_TYPES:
        raise RotnetError(f"unknown configuration key {key!r}; valid keys: {', '.join(FIELD_TYPES)}")
    kind, value = FIELD_TYPES[key], todays_value(key, value)
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # a numpy or torch scalar (np.int64(3))
        value = value.item()
    wrong = RotnetError(f"{key} must be {TYPE_WORDS[kind]}; got {value!r}")
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if kind is bool:
            if text not in ("true", "false", "1", "0", "yes", "no"):
                raise wrong
            return text in ("true", "1", "yes")
        try:
            value = int(text) if kind is int and text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise wrong from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise wrong
    if isinstance(value, float) and not math.isfinite(value):
        raise RotnetError(f"{key} must be a finite number; got {value!r}")
    return value


def apply(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return cfg with overrides applied (keys checked, values coerced)."""
    return replace(cfg, **{k: coerce(k, v) for k, v in overrides.items()})


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """Parse `key=value` strings from `--set`. Each value is checked here, also one that a flag overrides (`--set
    epochs=abc --epochs 1` trained, the bad value never read), and a key set to two values is refused (the last
    one won, without a word)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise RotnetError(f"--set expects key=value; got {item!r}")
        key = key.strip()
        checked = coerce(key, value)
        if key in out and coerce(key, out[key]) != checked:
            raise RotnetError(f"{key} is set twice, as --set {key}={out[key]} and --set {key}={value}; give one")
        out[key] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML document from a regular file; anything else (a folder, a FIFO, a device) is refused unread."""
    path = Path(path)
    if not os.path.lexists(path):
        raise RotnetError(f"configuration file not found: {path}")
    try:
        with open_regular(path) as f:
            return tomllib.load(f)
    except OSError as e:
        raise RotnetError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise RotnetError(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise RotnetError(f"{path} is not valid TOML: {e}") from None


def split_toml(
    doc: dict[str, Any], source: str, choices: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[tuple[dict, dict]]]:
    """A TOML document's top-level keys (for every run) and its `[[rule]]` tables as (when, set) pairs.

    A rule's `when` maps fields to a value or a non-empty list of values; its `set` applies when every `when` field
    matches. Each `when` value is checked as a flag's value is (its kind; one of the field's choices, or of
    `choices`, e.g. the experiments' names), so a misspelled rule is refused instead of matching nothing.
    """
    rules = doc.get("rule", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise RotnetError(f"{source}: 'rule' must be [[rule]] tables")
    top = {k: v for k, v in doc.items() if k not in ("rule", "description", "caveat")}
    out = []
    for rule in rules:
        extra = set(rule) - {"when", "set"}
        if extra:
            raise RotnetError(f"{source}: a [[rule]] takes only 'when' and 'set'; got {', '.join(sorted(extra))}")
        when, sets = rule.get("when", {}), rule.get("set", {})
        for name, table in (("when", when), ("set", sets)):
            if not isinstance(table, dict):
                raise RotnetError(f"{source}: a rule's '{name}' must be a table of keys, like {{ epochs = 6 }}")
        if not sets:  # a rule that sets nothing changes no run: a `set` left out, or left empty
            raise RotnetError(f"{source}: a [[rule]] sets nothing; give it a set table, like set = {{ epochs = 6 }}")
        for key in [*when, *sets, *top]:
            if key not in FIELD_TYPES:
                raise RotnetError(f"{source}: unknown configuration key {key!r}; valid keys: {', '.join(FIELD_TYPES)}")
        for key, value in when.items():
            refuse_bad_when(source, key, value, (choices or {}).get(key, CHOICES.get(key)))
        out.append((when, sets))
    for key in top:
        if key not in FIELD_TYPES:
            raise RotnetError(f"{source}: unknown configuration key {key!r}; valid keys: {', '.join(FIELD_TYPES)}")
    return top, out


def refuse_bad_when(source: str, key: str, value: Any, allowed) -> None:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise RotnetError(f"{source}: a rule's when {key} = [] matches no run; name at least one value")
    for v in values:
        try:
            coerced = coerce(key, v)
        except RotnetError as e:
            raise RotnetError(f"{source}: a rule's when: {e}") from None
        if allowed is not None and coerced not in allowed:
            raise unknown(f"{key} in a rule's when ({source}):", v, allowed)


def matches(cfg: RunConfig, when: dict[str, Any]) -> bool:
    return all(getattr(cfg, k) in (v if isinstance(v, list) else [v]) for k, v in when.items())


def layered(
    base: RunConfig, documents: list[tuple[str, dict]], command_line: dict[str, Any], choices: dict | None = None
) -> RunConfig:
    """base <- each document (top-level keys, then its matching rules) in order <- the command line.

    Rules match the run as the top-level keys and the command line describe it (its experiment, task, arch, seed
    ...), so `--arch resnet34` picks the preset's ResNet34 rule; a later layer always wins over an earlier one.
    """
    split = [(source, *split_toml(doc, source, choices)) for source, doc in documents]
    identity = base
    for _, top, _ in split:
        identity = apply(identity, top)
    identity = apply(identity, command_line)
    cfg = base
    for _, top, rules in split:
        cfg = apply(cfg, top)
        for when, sets in rules:
            if matches(identity, when):
                cfg = apply(cfg, sets)
    return validate(canonical(apply(cfg, command_line)))


def uses_reference_normalization(normalization: str, dataset: str) -> bool:
    """Whether a run normalizes with the reference report's CIFAR-10 constants (else with its data's own mean and
    std)."""
    normalization = todays_value("normalization", normalization)
    return normalization == "reference" or (normalization == "auto" and dataset == "cifar10")


# Values renamed since, by key: a record, a TOML file or --set written with the old spelling means today's value.
RENAMED = {"normalization": {"seed": "reference"}}  # 0.7: "seed" named the reference report


def todays_value(key: str, value: Any) -> Any:
    """A value under today's spelling (RENAMED); every value a record or a user gives passes here."""
    renamed = RENAMED.get(key, {})
    return renamed.get(value, value) if isinstance(value, str) else value


# Keys added after rotnet 0.1, each with the value that gives what runs before it did. A record without one of them
# was made before it existed and meant exactly this value: it is filled from here, never from today's defaults (a
# later change of a default must not change what an old record means). A key missing that is not here is a record
# rotnet cannot read without guessing, and resume and verify refuse it.
ADDED = {"dataset": "cifar10", "pretrain_dataset": "", "image_size": 0, "normalization": "auto"}  # in 0.3
ADDED |= {"kernels": "native"}  # later in 0.4: every run before it computed with the native kernels


def with_defaults(recorded: dict) -> dict:
    """A recorded configuration with the keys it predates filled in as `ADDED` says (nothing else is filled) and
    its values under today's spelling."""
    return {k: todays_value(k, v) for k, v in (ADDED | recorded).items()}


def config_diff(old: dict, new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """'key: old -> new' for the keys whose values differ (keys the old run lacks count as their defaults). An image
    folder at another place under the same name is no difference (`moved_folder`): its images are compared by what
    they are, wherever a run's data is checked."""
    old = with_defaults(old)
    keys = sorted((set(old) | set(new)) - set(ignore))
    differ = [k for k in keys if old.get(k) != new.get(k) and not moved_folder(k, old.get(k), new.get(k))]
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differ]


# Where a from-rotation run's weights lay when it started, not what they were: config.json's init_sha256 says that,
# and a run is resumed or reused only beside the same weights (checks.refuse_other_source). Compared as text, the
# same run was refused as "a different configuration" when its weights were named another way (its folder, then
# its model.safetensors; a relative path, then the absolute one; --init, then the lookup in the runs root).
WHERE = ("init_path",)


def run_diff(recorded: dict, new: dict, weights_compared: bool) -> list[str]:
    """What a run's recorded configuration differs in from the one it is resumed or reused under (`config_diff`):
    `WHERE` left out when its weights are compared by sha256."""
    return config_diff(recorded, new, WHERE if weights_compared else ())


def moved_folder(key: str, old: Any, new: Any) -> bool:
    """Whether a dataset key names the same image folder at another place (the same folder name: the same run
    folder), as a run resumed, reused or verified after its folder moved, or on another machine."""
    if key not in ("dataset", "pretrain_dataset") or not (isinstance(old, str) and isinstance(new, str)):
        return False
    return old not in DATASETS and new not in DATASETS and bool(old) and dataset_slug(old) == dataset_slug(new)


def from_dict(d: Any, source: str) -> RunConfig:
    """A RunConfig from a recorded dict (config.json, a job file) holding every key; a RotnetError if it isn't one."""
    if not isinstance(d, dict):
        raise RotnetError(f"{source} holds no configuration record")
    missing = sorted(set(RunConfig().to_dict()) - set(d))
    if missing:  # never filled with today's defaults: see ADDED and with_defaults for records that predate a key
        raise RotnetError(f"{source} does not record {', '.join(missing)}")
    try:
        return validate(apply(RunConfig(), {k: v for k, v in d.items()}))
    except (RotnetError, TypeError) as e:
        raise RotnetError(f"{source} holds an invalid configuration ({e})") from None
