"""The `rotnet` command: train, reproduce, label-efficiency, probe, verify, export-images, export, report, bench.

This module imports nothing heavy: torch loads only once a subcommand runs, so `rotnet --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import warnings
from dataclasses import replace

from rotnet.errors import Diverged, Interrupted, NonFiniteLoss, RotnetError
from rotnet.experiments import EXPERIMENTS
from rotnet.files import file_in_the_way
from rotnet.flags import (
    build_parser,
    command_line,
    data_options,
    parse_ints,
    parse_list,
    protocol_of,
    runs_root_of,
)
from rotnet.protocol import Protocol, plan_archs_and_seeds
from rotnet.signals import signals_held


def options_of(args: argparse.Namespace, protocol: Protocol, log_name: str, extra: dict):
    from rotnet.lifecycle import RunOptions
    from rotnet.plan import PlanOptions

    return PlanOptions(
        runs_root=runs_root_of(args),
        protocol=protocol,
        device=args.device,
        data=data_options(args),
        run_options=RunOptions(
            checkpoint_every=args.checkpoint_every,
            checkpoint_minutes=args.checkpoint_minutes,
            keep_checkpoints=args.keep_checkpoints,
            keep_epochs=tuple(args.keep_epoch),
            loggers=tuple(args.logger),
            restart=args.restart,
            deterministic=not args.nondeterministic,
        ),
        command=args.invocation,
        jobs=getattr(args, "jobs", 1),  # label-efficiency: one run at a time
        log_name=log_name,
        extra=extra,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from rotnet.runner import train_one

    protocol = protocol_of(args, command_line(args))
    train_one(protocol.resolve_plan([(None, None, args.experiment)])[0], options_of(args, protocol, "", {}))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from rotnet.config import ARCHS
    from rotnet.experiments import plan
    from rotnet.runner import execute

    protocol = protocol_of(args, command_line(args, skip=("arch", "seed")))
    archs = parse_list(args.archs, ARCHS, "arch") if args.archs is not None else None
    seeds = parse_ints(args.seeds, "--seeds") if args.seeds is not None else None
    archs, seeds = plan_archs_and_seeds(protocol, archs, seeds)
    experiments = parse_list(args.experiments, tuple(EXPERIMENTS), "experiment") if args.experiments is not None else []
    # Resolve every configuration first: a typo fails before hours of training, not after.
    configs = protocol.resolve_plan(plan(archs, seeds, experiments))
    options = options_of(args, protocol, "reproduce.json", {"archs": archs, "seeds": seeds})
    return 1 if execute(configs, options) else 0


def cmd_label_efficiency(args: argparse.Namespace) -> int:
    from rotnet.label_efficiency import plan_configs
    from rotnet.runner import execute

    sizes = parse_ints(args.per_class, "--per-class", minimum=1)
    if args.min_steps <= 0:
        raise RotnetError(f"--min-steps must be a positive number; got {args.min_steps}")
    protocol = protocol_of(args, command_line(args, skip=("seed",)))
    _, seeds = plan_archs_and_seeds(
        protocol, None, parse_ints(args.seeds, "--seeds") if args.seeds is not None else None
    )
    options = options_of(args, protocol, "label-efficiency.json", {"per_class": sizes, "seeds": seeds})
    configs = plan_configs(protocol, sizes, seeds, args.min_steps, options.data)
    return 1 if execute(configs, options) else 0


def cmd_probe(args: argparse.Namespace) -> int:
    from rotnet.datasets import load_for
    from rotnet.probe import finished_run, probe
    from rotnet.runtime import resolve_device

    if args.pool <= 0 or args.epochs <= 0:
        raise RotnetError("--pool and --epochs must be positive")
    if args.feature_cache and file_in_the_way(args.feature_cache):
        raise RotnetError(f"--feature-cache {args.feature_cache} is not a folder; name a folder to keep features in")
    if args.feature_cache:  # before the data is read (probe.features asks again, for every caller)
        from rotnet.layout import refuse_inside_run

        refuse_inside_run(args.feature_cache, "--feature-cache")
    opened = finished_run(args.run)  # fail on a bad run folder before loading the data
    cfg = opened[0]
    target = {k: v for k, v in (("dataset", args.dataset), ("image_size", args.image_size)) if v is not None}
    probed = replace(cfg, **target)
    data = load_for(probed, data_options(args))
    kw = {"head": args.head, "pool": args.pool, "epochs": args.epochs, "own_data": probed == cfg}
    kw |= {"cache": args.feature_cache, "opened": opened}
    out = probe(args.run, data, resolve_device(args.device), **kw)
    print(f"wrote {out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from rotnet.verify import verify

    if args.epochs <= 0:
        raise RotnetError(f"--epochs must be a positive number; got {args.epochs}")
    if args.all and args.epochs != 1:
        raise RotnetError("give --epochs K or --all, not both")
    if args.from_epoch <= 0:
        raise RotnetError(f"--from-epoch must be 1 or more; got {args.from_epoch}")
    return verify(
        args.run,
        epochs=None if args.all else args.epochs,
        from_epoch=args.from_epoch,
        data=data_options(args),
        device=args.device,
        dataset=args.dataset,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from rotnet.bench import run_bench
    from rotnet.config import ARCHS
    from rotnet.runtime import resolve_device

    if args.steps <= 0 or args.batch_size <= 0 or args.warmup < 0:
        raise RotnetError("--steps and --batch-size must be positive, --warmup zero or more")
    archs = tuple(dict.fromkeys(parse_list(args.archs, ARCHS, "arch")))
    if args.out.exists():  # checked before minutes of measuring, not after
        raise RotnetError(f"{args.out} exists; name a new file with --out (a bench never replaces earlier figures)")
    if not args.out.parent.is_dir():
        raise RotnetError(f"folder not found: {args.out.parent}")
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
        archs=archs,
    )
    return 0


def index_range(split: str, text: str | None) -> tuple[int, int] | None:
    """--SPLIT-range A:B as (A, B); None when not given."""
    if text is None:
        return None
    a, sep, b = text.partition(":")
    if not (sep and a.isdigit() and b.isdigit()):
        raise RotnetError(f"--{split}-range expects A:B, e.g. 0:40000; got {text!r}")
    return int(a), int(b)


def cmd_export_images(args: argparse.Namespace) -> int:
    from rotnet.datasets import load_dataset
    from rotnet.export import export_images
    from rotnet.layout import refuse_output_folder

    spans = {split: index_range(split, getattr(args, f"{split}_range")) for split in ("train", "test")}
    if args.no_test and spans["test"]:
        raise RotnetError("give --no-test or --test-range, not both")
    refuse_output_folder(args.out)  # before the data is read (minutes for a large folder); export_images asks again
    data = load_dataset(args.dataset, args.image_size, 0, data_options(args))
    n = export_images(
        data,
        args.out,
        labeled=not args.unlabeled,
        train_range=spans["train"],
        test=not args.no_test,
        test_range=spans["test"],
    )
    print(f"wrote {n} images to {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rotnet.export import export_run

    print(f"wrote {export_run(args.run, args.out)}/README.md (model card), model.safetensors, config.json")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rotnet.report import write_report

    print(f"wrote {write_report(args.runs_dir, preset=args.preset, claimed=args.preset is not None)}")
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    from rotnet.jobs import run_job

    return run_job(args.file)


COMMANDS = {
    "train": cmd_train,
    "reproduce": cmd_reproduce,
    "label-efficiency": cmd_label_efficiency,
    "probe": cmd_probe,
    "verify": cmd_verify,
    "export": cmd_export,
    "export-images": cmd_export_images,
    "report": cmd_report,
    "bench": cmd_bench,
    "job": cmd_job,
}


# The commands torchrun may start as ranks of one job (they shard the work, and rank 0 alone speaks and writes); under
# torchrun every other one would run whole in each process, each writing the same files.
RANKED = ("train", "reproduce", "label-efficiency", "verify")

# The commands that write checkpoints (verify re-trains in memory only).
TRAINS = ("train", "reproduce", "label-efficiency", "job")

# What a command loads under signals_held: a KeyboardInterrupt inside torch's C++ start-up aborts the process.
# Every command needs torch; report and export no torchvision (2 s of a report's start).
PRELOAD = {"report": ("torch",), "export": ("torch",)}


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"rotnet: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    command = None
    try:
        parser = build_parser()
        if not (sys.argv[1:] if argv is None else argv):  # `rotnet` alone: where to start, not an error
            parser.print_help()
            return 0
        try:
            args = parser.parse_args(argv)
        except RotnetError as e:
            print(f"rotnet: error: {e}", file=sys.stderr)
            return 2
        command = args.command
        args.invocation = shlex.join(["rotnet", *(sys.argv[1:] if argv is None else argv)])  # for provenance
        if not args.debug:
            warnings.showwarning = show_warning
        return dispatch(args)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the handlers are installed
        kept = "; checkpoints already written are kept" if command in TRAINS else ""
        print(f"rotnet: stopped at once{kept}", file=sys.stderr)
        return 130


def dispatch(args: argparse.Namespace) -> int:
    with signals_held():
        for module in PRELOAD.get(args.command, ("torch", "torchvision")):
            importlib.import_module(module)
    from rotnet.distributed import launched_size

    try:
        if args.command not in RANKED and (size := launched_size()) > 1:
            raise RotnetError(
                f"rotnet {args.command} runs in one process; run it without torchrun (it started {size}, each of "
                "which would do the whole command)"
            )
        return COMMANDS[args.command](args)
    except (RotnetError, OSError, Diverged) as e:
        if args.debug:
            raise
        if isinstance(e, Diverged):
            kept = "the last good checkpoint is kept" if isinstance(e, NonFiniteLoss) else "the run is marked failed"
            print(f"rotnet: error: {e}; stopped, {kept}", file=sys.stderr)
            return 3
        if isinstance(e, OSError):  # an unwritable or vanished path that no check caught: still one line
            e = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        print(f"rotnet: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        resume = "; checkpoint saved. Re-run the same command to resume." if e.saved else ""
        print(f"rotnet: {e}{resume}", file=sys.stderr)
        return 128 + e.signum
