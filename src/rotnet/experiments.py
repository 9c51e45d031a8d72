"""The reference report's experiments declared as data, presets (TOML files of overrides), the reproduce plan, and the
reference report's own numbers."""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from rotnet.config import CHOICES, RunConfig, layered, read_toml, validate
from rotnet.errors import RotnetError, unknown

ROTATION = RunConfig(experiment="rotation", task="rotation", epochs=45)  # report: 45 epochs
TRANSFER = RunConfig(task="classification", epochs=20)  # report: 20 epochs each
EXPERIMENTS = {
    "rotation": ROTATION,
    "layer4-from-rotation": replace(TRANSFER, experiment="layer4-from-rotation", init="rotation", trainable="layer4"),
    "layer4-from-random": replace(TRANSFER, experiment="layer4-from-random", init="random", trainable="layer4"),
    "full-from-rotation": replace(TRANSFER, experiment="full-from-rotation", init="rotation"),
    "full-from-random": replace(TRANSFER, experiment="full-from-random", init="random"),
}


# The keys that make an experiment what it is (its run folder is named after it): no layer may change them.
DEFINING = ("experiment", "task", "init", "trainable")


def refuse_contradictions(experiment: str, cfg: RunConfig) -> RunConfig:
    """The one place where a configuration that contradicts its experiment is refused, whichever layer (preset,
    file, rule, --set, flag) set it: a run of one kind would be written into another's folder, or a setting would be
    silently ignored."""
    declared = EXPERIMENTS[experiment]
    changed = [k for k in DEFINING if getattr(cfg, k) != getattr(declared, k)]
    if changed:
        said = ", ".join(f"{k}={getattr(cfg, k)}" for k in changed)
        wanted = ", ".join(f"{k}={getattr(declared, k)}" for k in changed)
        fits = [n for n, e in EXPERIMENTS.items() if all(getattr(e, k) == getattr(cfg, k) for k in DEFINING[1:])]
        hint = f"; that is the experiment {fits[0]}: name it instead" if fits and "experiment" not in changed else ""
        raise RotnetError(f"{said} contradicts the experiment {experiment} ({wanted}){hint}")
    if cfg.init_path and cfg.init != "rotation":
        other = experiment.replace("-from-random", "-from-rotation")
        use = f"train {other} --init PATH" if other != experiment else "a -from-rotation experiment"
        raise RotnetError(f"--init names weights to start from, but {experiment} starts from random init; use {use}")
    return cfg


def preset_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml") for p in resources.files("rotnet.presets").iterdir() if p.name.endswith(".toml")
    )


def load_preset(name: str) -> dict:
    """A preset by name (shipped with rotnet) or by path to a TOML file."""
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
        return refuse_contradictions(
            experiment, layered(validate(EXPERIMENTS[experiment]), documents, command_line, names)
        )

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


def reference_results() -> list[dict]:
    """The reference report's numbers, one row per (experiment, arch), with the report's wording."""
    with resources.files("rotnet").joinpath("reference_results.csv").open() as f:
        return [{**row, "epochs": int(row["epochs"]), "test_acc": float(row["test_acc"])} for row in csv.DictReader(f)]


def plan(archs: list[str], seeds: list[int | None], experiments: list[str]) -> list[tuple[str, int | None, str]]:
    """(arch, seed, experiment) in dependency order. Without explicit experiments, each arch gets the rows the
    reference report has for it; a from-rotation experiment always brings its rotation run."""
    for kind, names, known in (("experiment", experiments, EXPERIMENTS), ("arch", archs, CHOICES["arch"])):
        for name in names:
            if name not in known:
                raise unknown(kind, name, known)
    reported = {(r["arch"], r["experiment"]) for r in reference_results()}
    out = []
    for arch in archs:
        wanted = experiments or [e for e in EXPERIMENTS if (arch, e) in reported]
        if any(EXPERIMENTS[e].init == "rotation" for e in wanted) and "rotation" not in wanted:
            wanted = ["rotation", *wanted]
        ordered = sorted(wanted, key=list(EXPERIMENTS).index)  # rotation is first in EXPERIMENTS
        out += [(arch, seed, e) for seed in seeds for e in ordered]
    return out


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
    return archs or [base.arch], seeds if seeds is not None else [base.seed]


def rotation_source(cfg: RunConfig, protocol: Protocol) -> RunConfig:
    """The rotation run that a from-rotation run's protocol resolves: same arch and seed, same preset, files and
    command-line keys."""
    return protocol.resolve("rotation", arch=cfg.arch, seed=cfg.seed)
