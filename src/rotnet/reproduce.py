"""`rotnet reproduce`: every experiment of the report in dependency order, reusing finished runs, then the report."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import torch

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
    from rotnet.data import load_cifar10
    from rotnet.report import write_report
    from rotnet.run import Runtime, install_stop_handlers, refuse_changed_config, run, run_dir, setup_device
    from rotnet.train import StopFlag

    root = args.runs_root
    if not args.restart:
        for cfg in configs:
            refuse_changed_config(run_dir(root, cfg), cfg)
    device, world = setup_device(args.device)
    data = load_cifar10(args.data_root, download=not args.no_download)
    stop = StopFlag()
    install_stop_handlers(stop)
    rt = Runtime(device, root, args.checkpoint_every, args.restart, stop, world)
    say = print if world.is_main else (lambda *_, **__: None)
    started = time.time()
    record = {
        **provenance(device),
        "preset": args.preset,
        **extra,
        "runs": [str(run_dir(root, c).relative_to(root)) for c in configs],
        "started": started,
    }
    if world.is_main:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / log_name, json.dumps(record, indent=2) + "\n")
    failed: set[tuple[str, int]] = set()  # (arch, seed) whose rotation run failed
    errors = 0
    try:
        if getattr(args, "jobs", 1) > 1 and world.size == 1:
            errors = run_parallel(configs, args, device, stop)
            configs = []
        for cfg in configs:
            folder = run_dir(root, cfg)
            if cfg.init == "rotation" and (cfg.arch, cfg.seed) in failed:
                say(f"skipping {folder}: its rotation run failed")
                continue
            say(f"== {folder.relative_to(root)} ({cfg.epochs} epochs)", flush=True)
            try:
                run(cfg, data, rt)
                (folder / FAILED).unlink(missing_ok=True)
            except (NonFiniteLoss, RotnetError) as e:
                # One failed run doesn't stop the others; the report shows it as failed.
                say(f"rotnet: error: {folder.relative_to(root)}: {e}")
                errors += 1
                if folder.is_dir() and world.is_main:
                    atomic_write_text(folder / FAILED, json.dumps({"error": str(e)}) + "\n")
                if cfg.experiment == "rotation":
                    failed.add((cfg.arch, cfg.seed))
    finally:
        if world.is_main:
            record |= {"finished": time.time(), "wall_seconds": time.time() - started}
            atomic_write_text(root / log_name, json.dumps(record, indent=2) + "\n")
            print(f"wrote {write_report(root, preset=args.preset)}")
    return 1 if errors else 0


def train_command(cfg, args, device: str) -> list[str]:
    """The `rotnet train` command line that reproduces cfg exactly (every key set explicitly)."""
    sets = [
        x for k, v in cfg.to_dict().items() if k not in ("experiment", "arch", "seed") for x in ("--set", f"{k}={v}")
    ]
    return [
        sys.executable,
        "-m",
        "rotnet",
        "train",
        cfg.experiment,
        "--arch",
        cfg.arch,
        "--seed",
        str(cfg.seed),
        "--preset",
        "paper",
        *sets,
        "--runs-root",
        str(args.runs_root),
        "--device",
        device,
        "--checkpoint-every",
        str(args.checkpoint_every),
        *(["--data-root", str(args.data_root)] if args.data_root else []),
        *(["--no-download"] if args.no_download else []),
    ]


def run_parallel(configs: list, args, device, stop) -> int:
    """Run up to args.jobs experiments at once, each in its own `rotnet train` process, a transfer experiment only
    after its rotation run has finished. GPUs: one job per device (CUDA_VISIBLE_DEVICES); CPU: the jobs share the
    cores (OMP_NUM_THREADS = cores / jobs). Returns the number of failed runs; logs go to ROOT/logs/."""
    from rotnet.run import RESULT, run_dir

    root = Path(args.runs_root)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    slots = list(range(min(args.jobs, gpus))) if gpus else list(range(args.jobs))
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    pending, running, errors = list(configs), {}, 0

    def ready(cfg) -> bool:
        if cfg.init != "rotation" or cfg.init_path:
            return True
        rotation = [c for c in configs if c.experiment == "rotation" and (c.arch, c.seed) == (cfg.arch, cfg.seed)]
        return all((run_dir(root, c) / RESULT).is_file() for c in rotation)

    while pending or running:
        for cfg in [c for c in pending if ready(c)]:
            if not slots or stop.requested:
                break
            slot = slots.pop(0)
            env = os.environ | ({"CUDA_VISIBLE_DEVICES": str(slot)} if gpus else {"OMP_NUM_THREADS": str(threads)})
            name = "/".join(run_dir(root, cfg).parts[-3:])
            log = open(root / "logs" / (name.replace("/", "_") + ".log"), "a")
            cmd = train_command(cfg, args, "cuda" if gpus else "cpu")
            running[subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)] = (cfg, slot, log, name)
            pending.remove(cfg)
            print(f"== started {name} on {'cuda:' + str(slot) if gpus else f'cpu ({threads} threads)'}", flush=True)
        for proc in [p for p in running if p.poll() is not None]:
            cfg, slot, log, name = running.pop(proc)
            log.close()
            slots.append(slot)
            print(f"== {name}: {'done' if proc.returncode == 0 else f'failed (exit {proc.returncode})'}", flush=True)
            if proc.returncode:
                errors += 1
                if run_dir(root, cfg).is_dir():
                    atomic_write_text(
                        run_dir(root, cfg) / FAILED,
                        json.dumps({"error": f"exit code {proc.returncode}; see logs/{log.name.split('/')[-1]}"})
                        + "\n",
                    )
                if cfg.experiment == "rotation":  # its transfer runs can never start
                    blocked = [c for c in pending if c.init == "rotation" and (c.arch, c.seed) == (cfg.arch, cfg.seed)]
                    pending = [c for c in pending if c not in blocked]
                    errors += len(blocked)
        if stop.requested and not running:
            break
        time.sleep(0.2)
    return errors


def runs_for(root: Path) -> list[Path]:
    """Run folders under a runs root: ROOT/ARCH/EXPERIMENT[@Npc]/seedN."""
    return sorted(p for p in Path(root).glob("*/*/seed*") if p.is_dir() and p.name[4:].isdigit())
