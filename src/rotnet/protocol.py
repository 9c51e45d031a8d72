"""Where a run's configuration comes from (`Protocol`): the experiment's defaults, a preset (TOML files of
overrides shipped with rotnet, or a path), TOML files, then the command line; and a plan's archs and seeds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rotnet.config import RunConfig, coerce, drop_unused, layered, read_toml, refuse_unused, validate
from rotnet.errors import RotnetError, unknown
from rotnet.experiments import EXPERIMENTS, refuse_contradictions


def preset_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml") for p in resources.files("rotnet.presets").iterdir() if p.name.endswith(".toml")
    )


def load_preset(name: str) -> dict:
    """A preset by name (shipped with rotnet) or by path to a TOML file."""
    if not isinstance(name, str | Path):  # the API's preset=None, say
        raise unknown("preset", name, [*preset_names(), "a .toml path"])
    name = str(name)
    if name.endswith(".toml") or "/" in name:
        return read_toml(Path(name))
    if name not in preset_names():
        raise unknown("preset", name, [*preset_names(), "a .toml path"])
    with resources.as_file(resources.files("rotnet.presets") / f"{name}.toml") as path:
        return read_toml(path)


@dataclass(frozen=True)
class Protocol:
    """Where a run's configuration comes from, in increasing priority: the experiment's defaults, a preset,
    TOML files, then the command line (`--set` and explicit flags, already merged, flags last)."""

    preset: str = "paper"
    config_files: tuple[Path, ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()  # command-line key/values, in order

    def resolve(self, experiment: str, **identity: Any) -> RunConfig:
        """The configuration of one run; `identity` (arch=, seed=) beats everything, as a command-line flag."""
        if experiment not in EXPERIMENTS:
            raise unknown("experiment", experiment, EXPERIMENTS)
        documents = [(f"preset {self.preset}", load_preset(self.preset))]
        documents += [(str(f), read_toml(Path(f))) for f in self.config_files]
        command_line = dict(self.overrides) | {k: v for k, v in identity.items() if v is not None}
        names = {"experiment": tuple(EXPERIMENTS)}
        cfg = refuse_contradictions(
            experiment, layered(validate(EXPERIMENTS[experiment]), documents, command_line, names)
        )
        return drop_unused(cfg, dict(self.overrides))

    def resolve_plan(self, runs: Iterable[tuple[str | None, int | None, str]]) -> list[RunConfig]:
        """The configurations of one command's runs, (arch, seed, experiment) each as experiments.plan lists them
        (None: the protocol's own); a value the command line gives a key that every one of them leaves unused is
        refused."""
        configs = [self.resolve(e, arch=a, seed=s) for a, s, e in runs]
        refuse_unused(configs, dict(self.overrides))
        return configs

    def flags(self) -> list[str]:
        """The command-line flags that give this protocol (for hints that repeat the user's own command)."""
        out = [] if self.preset == "paper" else ["--preset", self.preset]
        for f in self.config_files:
            out += ["--config", str(f)]
        for k, v in self.overrides:
            out += ["--set", f"{k}={v}"]
        return out


def resolve(experiment: str, *, preset: str = "paper", config_files=(), overrides: dict | None = None, **identity):
    """Protocol(preset, config_files, overrides).resolve(experiment, **identity)."""
    return Protocol(preset, tuple(config_files), tuple((overrides or {}).items())).resolve(experiment, **identity)


def plan_archs_and_seeds(
    protocol: Protocol, archs: list[str] | None, seeds: list[int] | None
) -> tuple[list[str], list[int]]:
    """The archs and seeds of a plan: those given, else the protocol's own arch and seed (a preset, a file or an
    override may set them); a key given both ways is refused rather than one of them silently ignored."""
    given = dict(protocol.overrides)
    for key, values in (("arch", archs), ("seed", seeds)):
        if key in given and values is not None:
            listed = ",".join(map(str, values))
            raise RotnetError(f"the {key} is given twice, as {key}={given[key]} and as --{key}s {listed}; give one")
    base = protocol.resolve("rotation")
    # Each seed as the int it names: the API's seeds="0" or np.arange(3) were recorded in reproduce.json as given.
    return archs or [base.arch], [coerce("seed", s) for s in seeds] if seeds is not None else [base.seed]


def rotation_source(cfg: RunConfig, protocol: Protocol) -> RunConfig:
    """The rotation run that a from-rotation run's protocol resolves: same arch and seed, same preset, files and
    command-line keys."""
    return protocol.resolve("rotation", arch=cfg.arch, seed=cfg.seed)
