"""A run's configuration: one frozen dataclass, typed overrides from TOML files and `--set key=value`."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from rotnet.errors import RotnetError

ARCHS = ("resnet18", "resnet34", "resnet50")

# Allowed values of the string fields; a typo is an error that lists these.
CHOICES: dict[str, tuple[str, ...]] = {
    "task": ("rotation", "classification"),
    "arch": ARCHS,
    "init": ("random", "rotation"),
    "trainable": ("all", "layer4"),
    "stem": ("imagenet", "cifar"),
    "optimizer": ("adam", "sgd"),
    "schedule": ("step", "cosine"),
    "precision": ("fp32", "bf16", "fp16"),
}
POSITIVE = ("epochs", "batch_size", "lr", "lr_step_epochs", "eval_batch_size", "eval_every", "rotations_per_image")
NON_NEGATIVE = ("weight_decay", "momentum", "lr_gamma", "train_per_class", "knn_every", "seed")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's result. Defaults are the seed report's protocol."""

    experiment: str = "rotation"
    task: str = "rotation"  # "rotation": 4-way (0/90/180/270 degrees); "classification": the 10 classes
    arch: str = "resnet18"
    init: str = "random"  # "rotation": every weight but fc from the rotation run of the same arch and seed
    init_path: str = ""  # explicit weights for init="rotation" ("" = find the rotation run)
    trainable: str = "all"  # "layer4": only layer4.* and fc.* train, as in the report's fine-tuning rows
    stem: str = "imagenet"  # the unmodified torchvision stem (7x7/2 conv + maxpool), as the seed used
    epochs: int = 45  # report: 45 for rotation, 20 for each transfer experiment, 70 for ResNet34/50
    batch_size: int = 128  # images per step (the seed's DataLoader batch)
    optimizer: str = "adam"
    lr: float = 1e-3  # report: Adam lr 0.001
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.0
    schedule: str = "step"  # "step": lr * lr_gamma ** (epoch // lr_step_epochs), the report's StepLR
    lr_step_epochs: int = 10
    lr_gamma: float = 0.1
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch (GPU only in PyTorch)
    freeze_bn: bool = False  # False = the seed: frozen layers' BatchNorm still update running stats
    rotations_per_image: int = 1  # 1 = the seed (one random rotation); 4 = RotNet (all four in a batch)
    train_per_class: int = 0  # 0 = the whole training set; n = a class-balanced subset of n per class
    seed: int = 0
    precision: str = "fp32"  # autocast dtype for the forward pass
    channels_last: bool = True  # NHWC: ~14% faster on CPU (oneDNN), faster on GPU tensor cores; same math
    compile: bool = False  # torch.compile the model
    eval_batch_size: int = 1024
    eval_every: int = 1  # evaluate every N epochs (and after the last); the seed evaluates every epoch
    knn_every: int = 0  # kNN monitor every N epochs (0 = off)

    @property
    def num_classes(self) -> int:
        return 4 if self.task == "rotation" else 10

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELD_TYPES: dict[str, type] = {f.name: type(f.default) for f in fields(RunConfig)}


def validate(cfg: RunConfig) -> RunConfig:
    """Check every field's value; raise RotnetError naming the first bad one."""
    for name, allowed in CHOICES.items():
        value = getattr(cfg, name)
        if value not in allowed:
            raise RotnetError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    for name in POSITIVE:
        if not getattr(cfg, name) > 0:
            raise RotnetError(f"{name} must be a positive number; got {getattr(cfg, name)!r}")
    for name in NON_NEGATIVE:
        if getattr(cfg, name) < 0:
            raise RotnetError(f"{name} must be zero or positive; got {getattr(cfg, name)!r}")
    if cfg.rotations_per_image not in (1, 4):
        raise RotnetError(f"rotations_per_image must be 1 or 4; got {cfg.rotations_per_image}")
    return cfg


def coerce(key: str, value: Any) -> Any:
    """Convert a TOML or command-line value to the field's type, or raise RotnetError."""
    if key not in FIELD_TYPES:
        raise RotnetError(f"unknown configuration key {key!r}; valid keys: {', '.join(FIELD_TYPES)}")
    kind = FIELD_TYPES[key]
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        try:
            if kind is bool:
                if text not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return text in ("true", "1", "yes")
            return kind(text)
        except ValueError:
            raise RotnetError(f"{key} must be a {kind.__name__}; got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RotnetError(f"{key} must be a {kind.__name__}; got {value!r}")
    return value


def apply(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return cfg with overrides applied (keys checked, values coerced)."""
    return replace(cfg, **{k: coerce(k, v) for k, v in overrides.items()})


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """Parse `key=value` strings from `--set`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise RotnetError(f"--set expects key=value; got {item!r}")
        out[key.strip()] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise RotnetError(f"configuration file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise RotnetError(f"{path} is not valid TOML: {e}") from None


def overrides_from_toml(doc: dict[str, Any], cfg: RunConfig, source: str) -> dict[str, Any]:
    """The overrides a TOML document makes for `cfg`.

    Top-level keys apply to every run; each `[[rule]]` has `when` (field -> value or list of values) and `set`
    (field -> value), applied in order when every `when` field of cfg matches.
    """
    known = {"rule", "description"}
    out = {k: v for k, v in doc.items() if k not in known}
    for rule in doc.get("rule", []):
        when, sets = rule.get("when", {}), rule.get("set", {})
        extra = set(rule) - {"when", "set"}
        if extra:
            raise RotnetError(f"{source}: a [[rule]] takes only 'when' and 'set'; got {', '.join(sorted(extra))}")
        unknown = [k for k in when if k not in FIELD_TYPES]
        if unknown:
            raise RotnetError(f"{source}: unknown configuration key {unknown[0]!r} in a rule's 'when'")
        if all(getattr(cfg, k) in (v if isinstance(v, list) else [v]) for k, v in when.items()):
            out.update(sets)
    for key in out:
        if key not in FIELD_TYPES:
            raise RotnetError(f"{source}: unknown configuration key {key!r}; valid keys: {', '.join(FIELD_TYPES)}")
    return out
