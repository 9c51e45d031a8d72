"""The `rotnet` command: train, reproduce, report."""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from pathlib import Path

from rotnet import __version__
from rotnet.config import ARCHS, parse_assignments
from rotnet.errors import RotnetError
from rotnet.experiments import EXPERIMENTS, resolve
from rotnet.train import Interrupted, NonFiniteLoss, StopFlag

# Flags that are shortcuts for `--set key=value`.
SHORTCUTS = {
    "epochs": int,
    "batch_size": int,
    "lr": float,
    "seed": int,
    "precision": str,
    "optimizer": str,
    "schedule": str,
    "weight_decay": float,
    "rotations_per_image": int,
    "train_per_class": int,
    "stem": str,
    "knn_every": int,
}


def add_common(p: argparse.ArgumentParser) -> None:
    from rotnet.data import default_data_root

    p.add_argument("--preset", default="paper", help="paper (the seed's protocol, default), quick, or a .toml path")
    p.add_argument(
        "--config",
        action="append",
        default=[],
        type=Path,
        metavar="TOML",
        help="TOML file of overrides (top-level keys and [[rule]] tables); may repeat",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    for key, kind in SHORTCUTS.items():
        if key != "seed":
            p.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None, help=f"same as --set {key}=...")
    p.add_argument(
        "--freeze-bn",
        action="store_const",
        const=True,
        default=None,
        help="keep frozen layers' BatchNorm statistics fixed (the seed updates them)",
    )
    p.add_argument("--channels-last", action="store_const", const=True, default=None)
    p.add_argument("--compile", action="store_const", const=True, default=None, help="torch.compile the model")
    p.add_argument(
        "--runs-root",
        type=Path,
        default=None,
        help="where run folders go (default: ./runs for train, ./runs/PRESET for reproduce)",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help=f"folder holding cifar-10-batches-py (default $ROTNET_DATA or ./data; now {default_data_root()})",
    )
    p.add_argument("--no-download", action="store_true", help="never download CIFAR-10; fail if it is missing")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda or cuda:N")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="STEPS",
        help="also checkpoint every N steps (default: at each epoch end)",
    )
    p.add_argument("--restart", action="store_true", help="start over; the old run is kept under a new name")


def overrides(args: argparse.Namespace) -> dict:
    out = parse_assignments(args.set)
    for key in SHORTCUTS:
        if getattr(args, key, None) is not None:
            out[key] = getattr(args, key)
    for key in ("freeze_bn", "channels_last", "compile"):
        if getattr(args, key):
            out[key] = True
    if getattr(args, "init", None):
        out["init_path"] = str(args.init)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rotnet", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rotnet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="run one experiment of the report")
    p.add_argument("experiment", help=f"one of: {', '.join(EXPERIMENTS)}")
    p.add_argument("--arch", default="resnet18", help=f"one of: {', '.join(ARCHS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="PATH",
        help="rotation weights (safetensors) for a from-rotation experiment (default: the rotation run)",
    )
    add_common(p)

    p = sub.add_parser("reproduce", help="run the report's experiments in dependency order, then report")
    p.add_argument("--archs", default="resnet18", help="comma-separated, e.g. resnet18,resnet34,resnet50")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument(
        "--experiments",
        default="",
        help="comma-separated (default: every row the seed report has for each arch)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run up to N independent experiments at once (one per GPU; on CPU they share the cores)",
    )
    add_common(p)

    p = sub.add_parser("probe", help="linear (or MLP) probes on frozen features of each stage, vs random init")
    p.add_argument("run", type=Path, help="a finished run folder, e.g. runs/quick/resnet18/rotation/seed0")
    p.add_argument("--head", default="linear", choices=["linear", "mlp"])
    p.add_argument("--pool", type=int, default=1, help="spatial grid of the average pooling (1: global)")
    p.add_argument("--epochs", type=int, default=30, help="epochs of head training on the cached features")
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("label-efficiency", help="full-from-rotation vs full-from-random on n labels per class")
    p.add_argument("--per-class", default="20,100,500,1000,5000", help="comma-separated labelled images per class")
    p.add_argument("--arch", default="resnet18", help=f"one of: {', '.join(ARCHS)}")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (each picks its own nested subsets)")
    p.add_argument("--min-steps", type=int, default=300, help="at least this many optimizer steps per run")
    add_common(p)

    p = sub.add_parser("bench", help="training and evaluation images/s: model only vs rotnet vs the plain pipeline")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in the main table")
    p.add_argument(
        "--sweep",
        action="store_true",
        help="also measure each speed option (precision, channels_last, compile) for rotation pretraining",
    )
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("bench.json"))

    p = sub.add_parser("report", help="write report.md, results.json/csv and plots for a runs folder")
    p.add_argument("runs_dir", type=Path)
    p.add_argument("--preset", default=None, help="label the report with the preset's name")
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from rotnet.data import load_cifar10
    from rotnet.run import Runtime, install_stop_handlers, refuse_changed_config, run, run_dir, setup_device

    args.runs_root = args.runs_root or Path("runs")
    cfg = resolve(
        args.experiment,
        arch=args.arch,
        seed=args.seed,
        preset=args.preset,
        config_files=tuple(args.config),
        overrides=overrides(args),
    )
    if not args.restart:  # fail before the data loads
        refuse_changed_config(run_dir(args.runs_root, cfg), cfg)
    device, world = setup_device(args.device)
    data = load_cifar10(args.data_root, download=not args.no_download)
    stop = StopFlag()
    install_stop_handlers(stop)
    run(cfg, data, Runtime(device, args.runs_root, args.checkpoint_every, args.restart, stop, world))
    return 0


def preset_runs_root(preset: str) -> Path:
    """runs/PRESET: runs of different presets never meet, and label-efficiency shares reproduce's rotation run."""
    return Path("runs") / Path(preset).stem


def cmd_reproduce(args: argparse.Namespace) -> int:
    from rotnet.reproduce import reproduce_from_args

    if args.jobs <= 0:
        raise RotnetError(f"--jobs must be a positive number; got {args.jobs}")
    args.runs_root = args.runs_root or preset_runs_root(args.preset)
    return reproduce_from_args(args, overrides(args))


def cmd_probe(args: argparse.Namespace) -> int:
    from rotnet.data import load_cifar10
    from rotnet.probe import finished_run_config, probe
    from rotnet.run import resolve_device

    if args.pool <= 0 or args.epochs <= 0:
        raise RotnetError("--pool and --epochs must be positive")
    finished_run_config(args.run)  # fail on a bad run folder before loading the data
    data = load_cifar10(args.data_root, download=not args.no_download)
    probe(args.run, data, resolve_device(args.device), head=args.head, pool=args.pool, epochs=args.epochs)
    return 0


def cmd_label_efficiency(args: argparse.Namespace) -> int:
    from rotnet.label_efficiency import label_efficiency_from_args

    if args.min_steps <= 0:
        raise RotnetError(f"--min-steps must be a positive number; got {args.min_steps}")
    args.runs_root = args.runs_root or preset_runs_root(args.preset)
    return label_efficiency_from_args(args, overrides(args))


def cmd_bench(args: argparse.Namespace) -> int:
    from rotnet.bench import run_bench
    from rotnet.run import resolve_device

    if args.steps <= 0 or args.batch_size <= 0 or args.warmup < 0:
        raise RotnetError("--steps and --batch-size must be positive, --warmup zero or more")
    run_bench(
        resolve_device(args.device),
        steps=args.steps,
        warmup=args.warmup,
        batch_size=args.batch_size,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        sweep=args.sweep,
        data_root=args.data_root,
        out=args.out,
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rotnet.report import write_report

    if not args.runs_dir.is_dir():
        raise RotnetError(f"runs folder not found: {args.runs_dir}")
    path = write_report(args.runs_dir, preset=args.preset)
    print(f"wrote {path}")
    return 0


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"rotnet: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.debug:
        warnings.showwarning = show_warning
    commands = {
        "train": cmd_train,
        "reproduce": cmd_reproduce,
        "report": cmd_report,
        "bench": cmd_bench,
        "probe": cmd_probe,
        "label-efficiency": cmd_label_efficiency,
    }
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # restored for in-process callers
    try:
        return commands[args.command](args)
    except RotnetError as e:
        if args.debug:
            raise
        print(f"rotnet: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLoss as e:
        if args.debug:
            raise
        print(f"rotnet: error: {e}; stopped, the last good checkpoint is kept", file=sys.stderr)
        return 3
    except Interrupted as e:
        print(f"rotnet: {e}; checkpoint saved. Re-run the same command to resume.", file=sys.stderr)
        return 130
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
