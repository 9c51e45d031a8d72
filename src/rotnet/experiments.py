"""The seed report's experiments declared as data, and presets (TOML files of overrides) applied to them."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

from rotnet.config import RunConfig, apply, overrides_from_toml, read_toml, validate
from rotnet.errors import RotnetError

ROTATION = RunConfig(experiment="rotation", task="rotation", epochs=45)  # report: 45 epochs
TRANSFER = RunConfig(task="classification", epochs=20)  # report: 20 epochs each
EXPERIMENTS = {
    "rotation": ROTATION,
    "layer4-from-rotation": replace(TRANSFER, experiment="layer4-from-rotation", init="rotation", trainable="layer4"),
    "layer4-from-random": replace(TRANSFER, experiment="layer4-from-random", init="random", trainable="layer4"),
    "full-from-rotation": replace(TRANSFER, experiment="full-from-rotation", init="rotation"),
    "full-from-random": replace(TRANSFER, experiment="full-from-random", init="random"),
}


def preset_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml") for p in resources.files("rotnet.presets").iterdir() if p.name.endswith(".toml")
    )


def load_preset(name: str) -> dict:
    """A preset by name (shipped with rotnet) or by path to a TOML file."""
    if name.endswith(".toml") or "/" in name:
        return read_toml(Path(name))
    if name not in preset_names():
        raise RotnetError(f"unknown preset {name!r}; choose one of {', '.join(preset_names())} or a .toml path")
    with resources.as_file(resources.files("rotnet.presets") / f"{name}.toml") as path:
        return read_toml(path)


def resolve(
    experiment: str,
    *,
    arch: str = "resnet18",
    seed: int = 0,
    preset: str = "paper",
    config_files: tuple[Path, ...] = (),
    overrides: dict | None = None,
) -> RunConfig:
    """The configuration of one run: experiment defaults <- preset <- config files <- command-line overrides.

    Rules in presets and files match on the configuration as it stands (experiment, arch, ...).
    """
    if experiment not in EXPERIMENTS:
        raise RotnetError(f"unknown experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)}")
    cfg = apply(EXPERIMENTS[experiment], {"arch": arch, "seed": seed})
    validate(cfg)
    sources = [(f"preset {preset}", load_preset(preset))] + [(str(f), read_toml(Path(f))) for f in config_files]
    for source, doc in sources:
        cfg = apply(cfg, overrides_from_toml(doc, cfg, source))
    cfg = apply(cfg, overrides or {})
    if cfg.experiment != experiment:
        raise RotnetError("the experiment name cannot be overridden; name it on the command line")
    return validate(cfg)
