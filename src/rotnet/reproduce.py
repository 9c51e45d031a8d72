"""`rotnet reproduce`: every experiment of the report in dependency order, reusing finished runs, then the report."""

from __future__ import annotations

import csv
import json
import time
from importlib import resources
from pathlib import Path

from rotnet.checkpoint import atomic_write_text
from rotnet.config import ARCHS
from rotnet.errors import RotnetError
from rotnet.experiments import EXPERIMENTS, resolve
from rotnet.provenance import provenance
from rotnet.train import NonFiniteLoss

FAILED = "failed.json"


def seed_results() -> list[dict]:
    """The seed report's numbers, one row per (experiment, arch), with the report's wording."""
    with resources.files("rotnet").joinpath("seed_results.csv").open() as f:
        return [{**row, "epochs": int(row["epochs"]), "test_acc": float(row["test_acc"])} for row in csv.DictReader(f)]


def parse_list(text: str, valid: tuple[str, ...] | None, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if valid is not None and s not in valid]
    if bad:
        raise RotnetError(f"unknown {what} {bad[0]!r}; choose from {', '.join(valid)}")
    return items


def plan(archs: list[str], seeds: list[int], experiments: list[str]) -> list[tuple[str, int, str]]:
    """(arch, seed, experiment) in dependency order. Without explicit experiments, each arch gets the rows the seed
    report has for it; a from-rotation experiment always brings its rotation run."""
    reported = {(r["arch"], r["experiment"]) for r in seed_results()}
    out = []
    for arch in archs:
        wanted = experiments or [e for e in EXPERIMENTS if (arch, e) in reported]
        if any(EXPERIMENTS[e].init == "rotation" for e in wanted) and "rotation" not in wanted:
            wanted = ["rotation", *wanted]
        ordered = sorted(wanted, key=list(EXPERIMENTS).index)  # rotation is first in EXPERIMENTS
        out += [(arch, seed, e) for seed in seeds for e in ordered]
    return out


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in parse_list(text, None, "seed")]
    except ValueError:
        raise RotnetError(f"--seeds expects comma-separated integers; got {text!r}") from None


def reproduce_from_args(args, overrides: dict) -> int:
    archs = parse_list(args.archs, ARCHS, "arch")
    seeds = parse_seeds(args.seeds)
    experiments = parse_list(args.experiments, tuple(EXPERIMENTS), "experiment")
    # Resolve every configuration first: a typo fails before hours of training, not after.
    configs = [
        resolve(e, arch=a, seed=s, preset=args.preset, config_files=tuple(args.config), overrides=overrides)
        for a, s, e in plan(archs, seeds, experiments)
    ]
    return execute(configs, args, "reproduce.json", {"archs": archs, "seeds": seeds})


def execute(configs: list, args, log_name: str, extra: dict) -> int:
    """Run configs in order under args.runs_root (reusing finished runs, resuming partial ones), log the
    invocation to ROOT/log_name, and write the report, also when interrupted."""
    from rotnet.data import default_data_root, load_cifar10
    from rotnet.report import write_report
    from rotnet.run import Runtime, install_stop_handlers, refuse_changed_config, resolve_device, run, run_dir
    from rotnet.train import StopFlag

    root = args.runs_root
    if not args.restart:
        for cfg in configs:
            refuse_changed_config(run_dir(root, cfg), cfg)
    device = resolve_device(args.device)
    data = load_cifar10(args.data_root or default_data_root(), download=not args.no_download)
    stop = StopFlag()
    install_stop_handlers(stop)
    rt = Runtime(device, root, args.checkpoint_every, args.restart, stop)
    started = time.time()
    record = {
        **provenance(device),
        "preset": args.preset,
        **extra,
        "runs": [str(run_dir(root, c).relative_to(root)) for c in configs],
        "started": started,
    }
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / log_name, json.dumps(record, indent=2) + "\n")
    failed: set[tuple[str, int]] = set()  # (arch, seed) whose rotation run failed
    errors = 0
    try:
        for cfg in configs:
            folder = run_dir(root, cfg)
            if cfg.init == "rotation" and (cfg.arch, cfg.seed) in failed:
                print(f"skipping {folder}: its rotation run failed")
                continue
            print(f"== {folder.relative_to(root)} ({cfg.epochs} epochs)", flush=True)
            try:
                run(cfg, data, rt)
                (folder / FAILED).unlink(missing_ok=True)
            except (NonFiniteLoss, RotnetError) as e:
                # One failed run doesn't stop the others; the report shows it as failed.
                print(f"rotnet: error: {folder.relative_to(root)}: {e}")
                errors += 1
                if folder.is_dir():
                    atomic_write_text(folder / FAILED, json.dumps({"error": str(e)}) + "\n")
                if cfg.experiment == "rotation":
                    failed.add((cfg.arch, cfg.seed))
    finally:
        record |= {"finished": time.time(), "wall_seconds": time.time() - started}
        atomic_write_text(root / log_name, json.dumps(record, indent=2) + "\n")
        print(f"wrote {write_report(root, preset=args.preset)}")
    return 1 if errors else 0


def runs_for(root: Path) -> list[Path]:
    """Run folders under a runs root: ROOT/ARCH/EXPERIMENT[@Npc]/seedN."""
    return sorted(p for p in Path(root).glob("*/*/seed*") if p.is_dir() and p.name[4:].isdigit())
