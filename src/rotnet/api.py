"""The Python API (re-exported by `rotnet`): train one experiment, reproduce the report, load trained weights into
a plain torchvision ResNet. The same code paths as the `rotnet` command, without its argument parsing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from rotnet.config import DataOptions, RunConfig
from rotnet.errors import RotnetError
from rotnet.experiments import plan
from rotnet.files import user_path
from rotnet.layout import run_dir, runs_root_for
from rotnet.protocol import Protocol, plan_archs_and_seeds


@dataclass(frozen=True)
class Result:
    """A finished run: its folder, its test accuracy (%), its resolved configuration and result.json."""

    folder: Path
    test_acc: float
    config: RunConfig
    result: dict


def _call(name: str, *args: Any, **kwargs: Any) -> str:
    """How the run was asked for, for its provenance: the Python call."""
    return f"rotnet.{name}(" + ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())]) + ")"


def train(
    experiment: str,
    *,
    preset: str = "paper",
    runs_root: str | Path | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    download: bool = True,
    **overrides: Any,
) -> Result:
    """Train one experiment (rotation, layer4-from-rotation, ...) as `rotnet train` does: into
    runs_root/ARCH/EXPERIMENT/seedN (default runs_root: runs/PRESET), resuming or reusing a run that is there.
    Keyword overrides are config keys, e.g. `epochs=2, train_per_class=100, dataset="cifar100"`. Ctrl-C finishes
    the step, saves a checkpoint and raises rotnet.errors.Interrupted; the same call resumes."""
    from rotnet.plan import PlanOptions
    from rotnet.runner import train_one

    protocol = Protocol(preset, (), tuple(overrides.items()))
    cfg = protocol.resolve_plan([(None, None, experiment)])[0]
    root = runs_root_for(preset, runs_root)
    call = _call("train", experiment, preset=preset, **overrides)
    result = train_one(cfg, PlanOptions(root, protocol, device, DataOptions(_path(data_root), download), command=call))
    return Result(run_dir(root, cfg), result["test_acc"], cfg, result)


def reproduce(
    *,
    preset: str = "paper",
    runs_root: str | Path | None = None,
    archs: tuple[str, ...] | str | None = None,
    seeds: tuple[int, ...] | int | None = None,
    experiments: tuple[str, ...] | str = (),
    device: str = "auto",
    data_root: str | Path | None = None,
    download: bool = True,
    jobs: int = 0,
    **overrides: Any,
) -> Path:
    """The report's experiments in dependency order (as `rotnet reproduce`, `jobs` as its --jobs), then the report;
    returns report.md's path. archs and seeds default to the preset's (and overrides') arch and seed. Runs that
    failed are shown as failed in the report; a RotnetError only when nothing could start."""
    from rotnet.plan import PlanOptions
    from rotnet.runner import execute

    protocol = Protocol(preset, (), tuple(overrides.items()))
    archs, seeds, experiments = _listed(archs), _listed(seeds), _listed(experiments) or ()
    for name, given in (("archs", archs), ("seeds", seeds)):
        if given is not None and not given:  # as `--archs ""`: an empty list is a mistake, never "the default"
            raise RotnetError(f"{name}=() names none; name at least one, or leave it out for the default")
    for name, given in (("archs", archs), ("seeds", seeds), ("experiments", experiments)):
        if given and any(v is None for v in given):  # as `--seeds 3,`: (3, None) ran seed 0 beside 3
            raise RotnetError(f"{name}={given!r} holds None; name each one")
    arch_list, seed_list = plan_archs_and_seeds(
        protocol, list(archs) if archs else None, None if seeds is None else list(seeds)
    )
    configs = protocol.resolve_plan(plan(arch_list, seed_list, list(experiments)))
    root = runs_root_for(preset, runs_root)
    data = DataOptions(_path(data_root), download)
    call = _call("reproduce", preset=preset, archs=archs, seeds=seeds, experiments=experiments, **overrides)
    record = {"archs": arch_list, "seeds": seed_list}
    options = PlanOptions(root, protocol, device, data, extra=record, command=call, jobs=jobs)
    execute(configs, options)
    return root / "report.md"


def metadata(run_or_weights: str | Path) -> dict:
    """What a weights file records beside its tensors: arch, stem, task, class_names, normalization (mean and std
    on the 0-1 scale, applied after ToTensor), image_size and the full config."""
    return _read_weights(run_or_weights)[2]


def load_backbone(run_or_weights: str | Path, *, eval_mode: bool = True) -> nn.Module:
    """The trained network as a plain torchvision ResNet (the run's stem applied), from a run folder or a
    model.safetensors file; the checksum is verified and no code in the file is executed. Its `fc` is the run's
    head (4 rotations, or the run's classes); replace it (`model.fc = nn.Identity()`) for features."""
    from rotnet.models import build_model, check_keys

    path, tensors, meta = _read_weights(run_or_weights)
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    arch, stem = meta.get("arch", cfg.get("arch", "resnet18")), meta.get("stem", cfg.get("stem", "imagenet"))
    if "fc.bias" not in tensors:
        raise RotnetError(f"{path} holds no ResNet head (fc.bias); is it a rotnet weights file?")
    model = build_model(arch, len(tensors["fc.bias"]), stem)
    check_keys(tensors, model.state_dict(), str(path))
    model.load_state_dict(tensors)
    return model.eval() if eval_mode else model


def _read_weights(run_or_weights: str | Path) -> tuple[Path, dict, dict]:
    """A weights file, its tensors and metadata (checksum verified, no code executed), through `record.read_weights`:
    a file inside a run folder, named by the folder or by itself, is read only through the run's record."""
    from rotnet.record import read_weights

    return read_weights(run_or_weights, "load weights from")[:3]


def _listed(value: Any) -> tuple | None:
    """A tuple argument given as one value (`archs="resnet18"`, `seeds=0`) is that one value, not its letters; text
    is split at commas as the command line's flag is (`archs="resnet18,resnet34"`); any other collection (a list, a
    range, `np.arange(3)`) is its items."""
    if value is None or isinstance(value, tuple):
        return value
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(","))
    if getattr(value, "shape", None) == () or not isinstance(value, Iterable):
        return (value,)  # (1.5,): checked as a seed
    return tuple(value)


def _path(p: str | Path | None) -> Path | None:
    if p is not None and not str(p).strip():
        raise RotnetError("data_root is an empty path; name a folder (or leave it out for $ROTNET_DATA, else ./data)")
    return user_path(p) if p is not None else None
