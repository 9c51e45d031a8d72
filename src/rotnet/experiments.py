"""The reference report's experiments declared as data, the one refusal of a configuration that contradicts its
experiment, the reference report's own numbers, and the runs a plan of its rows needs, in dependency order."""

from __future__ import annotations

import csv
from dataclasses import replace
from importlib import resources

from rotnet.config import CHOICES, RunConfig
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


def reference_results() -> list[dict]:
    """The reference report's numbers, one row per (experiment, arch), with its wording and, for the deeper archs, its
    claim about them ("worse than resnet18")."""
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
