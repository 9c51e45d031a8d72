"""The `rotnet` command line's grammar: every subcommand and flag, how a flag becomes a configuration key, and the
parsing of lists and ranges. Like the command itself, it imports nothing heavy."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from rotnet import __version__
from rotnet.config import CHOICES, HELP, RunConfig, check_dataset, coerce, parse_assignments
from rotnet.errors import RotnetError, unknown
from rotnet.experiments import EXPERIMENTS
from rotnet.files import user_path
from rotnet.protocol import Protocol, preset_names

# Keys the experiment itself decides (settable with --set, but no flag of their own); `--init PATH` sets init_path.
NO_FLAG = ("experiment", "task", "init", "trainable", "init_path")
DEFAULTS = RunConfig()


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A usage mistake is a one-line error like any other (exit 2), not a usage dump."""
        raise RotnetError(message if self.prog == "rotnet" else f"{self.prog.removeprefix('rotnet ')}: {message}")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, except where it is None (a config flag: its default is in the help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if shown and "default" not in text and action.option_strings:  # `is`: a default of 0 is shown too
            text += " (default: %(default)s)"
        return text


def add_config_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """A flag per RunConfig field (`--batch-size 64`, `--no-channels-last`), a shortcut for `--set`: given flags
    beat --set, which beats --config files, which beat the preset, which beats the experiment's defaults."""
    g = p.add_argument_group("configuration (each flag overrides the preset, --config files and --set)")
    g.add_argument(
        "--preset",
        default="paper",
        help=f"{', '.join(preset_names())} (shipped), or a .toml path; paper is the reference report's protocol",
    )
    g.add_argument("--config", action="append", default=[], type=path, metavar="TOML", help="overrides; may repeat")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    for f in fields(RunConfig):
        if f.name in NO_FLAG or f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(DEFAULTS, f.name)
        # The experiment decides the epochs (45 rotation, 20 per transfer) and a preset may change them: one default
        # shown for all would be wrong for most.
        text = f"{HELP[f.name]} (default: " + (
            "the experiment's, as the preset sets it)" if f.name == "epochs" else f"{default})"
        )
        if isinstance(default, bool):
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, dest=f.name, help=text)
        else:
            # Choices are shown, and checked by config.validate with the same one-line error as a --set value.
            shown = "{" + ",".join(map(str, CHOICES[f.name])) + "}" if f.name in CHOICES else None
            g.add_argument(flag, type=flag_type(f.name), default=None, dest=f.name, metavar=shown, help=text)


def path(text: str) -> Path:
    """A path argument: an empty one (`--runs-root "$ROOT"` with ROOT unset) is refused, never the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; name a file or folder")
    return user_path(text)


def dataset(text: str) -> str:
    """A dataset argument (a name, or an image folder's path): an empty one is refused as an empty path is."""
    try:
        return check_dataset(text)
    except RotnetError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def flag_type(key: str):
    """A config flag's value read as `--set` and TOML read it (`--epochs 1.0` is 1), checked while parsing."""

    def parse(text: str):
        try:
            return coerce(key, text)
        except RotnetError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def add_data_flags(p: argparse.ArgumentParser, device: bool = True) -> None:
    g = p.add_argument_group("data and device" if device else "data")
    g.add_argument(
        "--data-root",
        type=path,
        default=None,
        help="folder holding the named datasets, e.g. cifar-10-batches-py (default: $ROTNET_DATA, else ./data)",
    )
    g.add_argument("--no-download", action="store_true", help="never download a dataset; fail if it is missing")
    g.add_argument(
        "--cache-dir", type=path, default=None, help="where image folders are prepared (default: FOLDER/.rotnet-cache)"
    )
    g.add_argument(
        "--skip-bad-images", action="store_true", help="skip unreadable images (counted) instead of stopping"
    )
    if device:
        g.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda or cuda:N")


def add_run_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run folders")
    g.add_argument("--runs-root", type=path, default=None, help="where run folders go (default: runs/PRESET)")
    g.add_argument(
        "--checkpoint-every", type=int, default=0, metavar="STEPS", help="also checkpoint every N steps (0: epoch ends)"
    )
    g.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=10.0,
        metavar="M",
        help="at an epoch end, checkpoint when M minutes passed since the last (0: every epoch; always at the end)",
    )
    g.add_argument(
        "--logger",
        action="append",
        default=[],
        choices=["tensorboard", "csv", "wandb"],
        help="also log to RUN/tensorboard, RUN/metrics.csv or W&B; may repeat (metrics.jsonl is always written)",
    )
    g.add_argument("--restart", action="store_true", help="start over; the old run is kept under a new name")
    g.add_argument(
        "--nondeterministic",
        action="store_true",
        help="on a GPU: allow nondeterministic kernels and cuDNN autotuning (faster; the bits then do not repeat, "
        "so verify can only be inconclusive)",
    )
    g.add_argument(
        "--keep-checkpoints",
        type=int,
        default=0,
        metavar="N",
        help="checkpoints left when a run finishes (default 0: a finished run keeps its weights, not its state)",
    )
    g.add_argument(
        "--keep-epoch",
        type=int,
        action="append",
        default=[],
        metavar="K",
        help="also keep the checkpoint of epoch K's end, so that `rotnet verify --from-epoch K+1` can check the run "
        "from there; may repeat",
    )
    add_data_flags(p)


def data_options(args: argparse.Namespace):
    from rotnet.config import DataOptions

    return DataOptions(args.data_root, not args.no_download, args.cache_dir, args.skip_bad_images)


def command_line(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict:
    """--set pairs, then the explicit flags (which win)."""
    out = parse_assignments(args.set)
    for f in fields(RunConfig):
        if f.name not in NO_FLAG and f.name not in skip and getattr(args, f.name, None) is not None:
            out[f.name] = getattr(args, f.name)
    if getattr(args, "init", None):
        out["init_path"] = str(args.init)
    return out


def experiment_name(text: str) -> str:
    """Checked while parsing, before torch loads: a typo costs no start-up."""
    if text not in EXPERIMENTS:
        raise unknown("experiment", text, EXPERIMENTS)
    return text


def protocol_of(args: argparse.Namespace, overrides: dict) -> Protocol:
    return Protocol(args.preset, tuple(args.config), tuple(overrides.items()))


def runs_root_of(args: argparse.Namespace) -> Path:
    from rotnet.layout import runs_root_for  # torch-free

    return runs_root_for(args.preset, args.runs_root)


def list_items(text: str, what: str) -> list[str]:
    """A comma-separated flag's items. An empty item is refused, not skipped: `--seeds "3,$NEXT"` with NEXT unset
    would run seed 3 alone and say nothing (as an empty path is refused, not read as the current folder)."""
    items = [s.strip() for s in text.split(",")]
    if not any(items):
        raise RotnetError(f"the list of {what} is empty; name at least one, or leave the flag out for the default")
    if not all(items):
        raise RotnetError(f"{text!r} has an empty item (a comma too many, or an unset variable?); name each {what}")
    refuse_repeated(items, text, what)
    return items


def refuse_repeated(items: list, text: str, what: str) -> None:
    """An item given twice (`--archs resnet18,resnet18`): bench measured it once and said nothing."""
    twice = next((x for i, x in enumerate(items) if x in items[:i]), None)
    if twice is not None:
        raise RotnetError(f"{text!r} names {twice} twice; name each of the {what} once")


def parse_list(text: str, valid: tuple | None, what: str) -> list[str]:
    items = list_items(text, f"{what}s")
    bad = [s for s in items if valid is not None and s not in valid]
    if bad:
        raise RotnetError(f"unknown {what} {bad[0]!r}; choose from {', '.join(valid or ())}")
    return items


def parse_ints(text: str, what: str, minimum: int = 0) -> list[int]:
    items = list_items(text, f"{what} values")
    try:
        values = [int(s) for s in items]
    except ValueError:
        values = []
    if not values or min(values) < minimum:
        raise RotnetError(f"{what} expects comma-separated integers >= {minimum}; got {text!r}")
    refuse_repeated(values, text, f"{what} values")  # 5,05 is 5 twice
    return values


DESCRIPTION = "Rotation-prediction pretraining of torchvision ResNets, and how much it helps downstream classification."
EPILOG = """start here:
  rotnet reproduce --preset smoke   a few minutes on a 2-core CPU: all five experiments on 2,000 images, the table
  rotnet reproduce --preset quick   ~20 minutes on a 2-core CPU: the full data, short schedules
  rotnet reproduce                  the main job, the report's protocol (ResNet18, CIFAR-10): HOURS, 3.5-11 h on a
                                    2-core CPU (one H200 GPU: ~8 min); it prints each run's and the plan's time left
                                    and resumes where it stopped; then runs/paper/report.md
  rotnet COMMAND --help             each command's flags and their defaults"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rotnet", description=DESCRIPTION, epilog=EPILOG, formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"rotnet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=Formatter)

    p = command("train", "run one experiment of the report")
    p.add_argument("experiment", type=experiment_name, metavar="{" + ",".join(EXPERIMENTS) + "}", help="the experiment")
    p.add_argument(
        "--init",
        type=path,
        default=None,
        metavar="PATH",
        help="a from-rotation run's rotation weights: a run folder or a .safetensors file",
    )
    add_config_flags(p)
    add_run_flags(p)

    p = command("reproduce", "run the report's experiments in dependency order, then write the report")
    p.add_argument("--archs", default=None, help="comma-separated, e.g. resnet18,resnet34,resnet50 (default: resnet18)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2 (default: the config's seed, 0)")
    p.add_argument(
        "--experiments", default=None, help="comma-separated (default: the reference report's rows per arch)"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="run up to N runs at once (one per GPU; CPU: shared cores); 0 (default): 2 on a CPU with 2+ cores "
        "when two long runs can go together (README: Many devices), else 1",
    )
    add_config_flags(p, skip=("arch", "seed"))
    add_run_flags(p)

    p = command("label-efficiency", "full-from-rotation vs full-from-random on n labels per class")
    p.add_argument("--per-class", default="20,100,500,1000,5000", help="comma-separated labelled images per class")
    p.add_argument("--seeds", default=None, help="comma-separated seeds, each picking its own nested subsets")
    p.add_argument("--min-steps", type=int, default=300, help="at least this many optimizer steps per run")
    add_config_flags(p, skip=("seed",))
    add_run_flags(p)

    p = command("probe", "linear (or MLP) probes on frozen features of each stage, vs random init")
    p.add_argument("run", type=path, help="a finished run folder, e.g. runs/quick/resnet18/rotation/seed0")
    p.add_argument(
        "--head",
        default="linear",
        choices=["linear", "mlp"],
        help="the classifier on each stage's features: linear, or mlp (Linear-BN-ReLU-Linear, 512 hidden)",
    )
    p.add_argument(
        "--pool",
        type=int,
        default=1,
        help="spatial grid of the average pooling (1: global; a stage's smaller map is kept whole)",
    )
    p.add_argument("--epochs", type=int, default=30, help="epochs of each head's training on the frozen features")
    p.add_argument(
        "--feature-cache",
        type=path,
        default=None,
        metavar="DIR",
        help="keep the extracted features in DIR, so a probe with another head skips extraction (default: not kept)",
    )
    p.add_argument(
        "--dataset", type=dataset, default=None, help="the labeled data to probe on (default: the run's own)"
    )
    p.add_argument("--image-size", type=int, default=None, help="its image size (default: the run's)")
    add_data_flags(p)

    p = command(
        "verify",
        "check a run's sealed files, re-train its first epochs and re-evaluate its final weights; writes "
        "RUN/verify.json (exit 0 verified, 1 not verified, 3 inconclusive: differs, but made on another CPU)",
    )
    p.add_argument("run", type=path, help="a run folder with config.json and metrics.jsonl")
    p.add_argument("--epochs", type=int, default=1, help="epochs to re-train and compare (default: 1)")
    p.add_argument(
        "--all", action="store_true", help="re-train every recorded epoch: the final weights are then re-made too"
    )
    p.add_argument(
        "--from-epoch",
        type=int,
        default=1,
        metavar="K",
        help="re-train from epoch K, starting from the checkpoint the run kept at the end of epoch K-1 (--keep-epoch)",
    )
    p.add_argument(
        "--dataset",
        type=dataset,
        default=None,
        metavar="PATH",
        help="where a folder run's images are now (moved, or another machine): the same images, checked",
    )
    add_data_flags(p)

    p = command("export-images", "write a dataset as an image folder of PNGs (SPLIT/CLASS/NNNNN.png)")
    p.add_argument("dataset", type=dataset, help="a dataset name (cifar10, ...) or an image folder")
    p.add_argument("out", type=path, help="a new folder")
    p.add_argument("--unlabeled", action="store_true", help="no class folders: SPLIT/NNNNN.png")
    p.add_argument("--train-range", default=None, metavar="A:B", help="only training images A..B-1 (default: all)")
    p.add_argument("--test-range", default=None, metavar="A:B", help="only test images A..B-1 (default: all)")
    p.add_argument("--no-test", action="store_true", help="leave out the test split")
    p.add_argument("--image-size", type=int, default=0, help="resize and center-crop to N (0: as they are)")
    add_data_flags(p, device=False)

    p = command("export", "a finished run as a folder ready for a model hub: weights, config, model card")
    p.add_argument("run", type=path, help="a finished run folder")
    p.add_argument("out", type=path, help="a new folder")

    p = command("report", "write report.md, results.json/csv and plots for a runs folder")
    p.add_argument("runs_dir", type=path, help="a runs root (reproduce's --runs-root): every run under it is read")
    p.add_argument("--preset", default=None, help="label the report with the preset that made its runs (checked)")

    p = command("bench", "training and evaluation images/s: model only vs rotnet vs the plain pipeline")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda or cuda:N")
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before each measurement")
    p.add_argument("--batch-size", type=int, default=128, help="images per step")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="the steps' arithmetic")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="NCHW memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in the main table")
    p.add_argument("--sweep", action="store_true", help="also measure each speed option for rotation pretraining")
    p.add_argument(
        "--archs",
        default="resnet18",
        help="comma-separated; the main table is the first's; several add each one's rotation step and its ratio to "
        "the first's, e.g. resnet18,resnet34,resnet50",
    )
    p.add_argument(
        "--data-root", type=path, default=None, help="CIFAR-10's folder (default: $ROTNET_DATA, else ./data)"
    )
    p.add_argument("--out", type=path, default=Path("bench.json"), help="a new JSON file for the figures")

    p = sub.add_parser("job")  # internal: one run of `reproduce --jobs N`, from the job file the parent wrote
    p.add_argument("file", type=path)
    return parser
