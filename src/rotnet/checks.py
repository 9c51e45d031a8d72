"""Every check of a run before it trains or is reused (`check_run`): its lock, its record read once, its configuration,
its data and the rotation weights a transfer run starts from (read and hashed once)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from rotnet import checkpoint as ckpt
from rotnet.config import ADDED, NOT_PROTOCOL, RunConfig, config_diff, run_diff
from rotnet.data import (
    Dataset,
    data_diff,
    diff_text,
    is_named,
    lies_in,
    normalization,
    output_count,
    short_classes,
    subset_size,
)
from rotnet.errors import RotnetError, warn_once
from rotnet.files import user_path
from rotnet.health import weights_problem
from rotnet.layout import (
    CHECKPOINTS,
    CONFIG,
    MANIFEST,
    RESULT,
    WEIGHTS,
    find_runs,
    not_a_run,
    parse_run_dir,
    read_json,
    run_dir,
    runs_below,
)
from rotnet.lifecycle import RunContext
from rotnet.lock import refuse_locked
from rotnet.loop import plural, smallest_step
from rotnet.models import build_model, check_keys
from rotnet.record import RunRecord, open_run, read_weights, weights_file
from rotnet.runtime import recorded_threads


@dataclass(frozen=True)
class Source:
    """Where a from-rotation run's weights must come from: the rotation run its own protocol resolves (same
    preset, files and flags, arch and seed), and the command that makes it."""

    expected: RunConfig
    command: str = ""


@dataclass(frozen=True)
class Checked:
    """What `check_run` passed: the source weights of a from-rotation run (tensors, what to record; None for other
    runs) and the run's record as read and checked (None: no run there yet, or one a --restart keeps aside)."""

    weights: tuple[dict, dict] | None = None
    record: RunRecord | None = None

    @property
    def weights_compared(self) -> bool:
        """Whether the source weights are the ones the record says the run started from, compared by sha256 (step 6
        of `check_run`): then where they lie (`config.WHERE`) is no part of the run."""
        config = self.record.config if self.record is not None else None
        return self.weights is not None and isinstance(config, dict) and isinstance(config.get("init_sha256"), str)


def init_weights(cfg: RunConfig, runs_root: Path, source: Source | None) -> tuple[dict, dict]:
    """The rotation weights a from-rotation run starts from, read and hashed once, and what to record about them.

    An explicit --init (a weights file, or a run folder for its model.safetensors) is taken as given, whatever its
    protocol, and recorded so. Otherwise the rotation run of `source.expected` is looked up and refused if it was
    made with another protocol than the one this run resolves. Weights inside a run pass its record check either way.
    """
    expected = source.expected if source else rotation_of(cfg)
    path = weights_file(cfg.init_path) if cfg.init_path else run_dir(runs_root, expected) / WEIGHTS
    make = (source.command if source else "") or f"rotnet train rotation --arch {cfg.arch} --seed {cfg.seed}"
    # A named run folder, or a finished source run kept without its weights, says what it lacks (read_weights); an
    # unfinished or missing source run is to be made.
    speaks = (path.parent / (CONFIG if cfg.init_path else RESULT)).is_file()
    if not path.is_file() and not speaks:
        refuse_locked(path.parent, "take rotation weights from")  # being trained: not to be made again
        if cfg.init_path:
            if runs_below(named := user_path(cfg.init_path)):  # a runs root, say
                raise not_a_run(named, f"no {WEIGHTS}; --init names a run folder or a weights file")
            raise RotnetError(f"no rotation weights at {cfg.init_path}; check the --init path")
        raise RotnetError(
            f"no rotation weights at {path}; {other_rotation_runs(cfg, runs_root, path)}make them with: {make} "
            f"--runs-root {runs_root}"
        )
    # Read once, through the record of the run they lie in, however they were named (a folder, the file)
    path, tensors, meta, made = read_weights(path, "take rotation weights from", need=(RESULT,), cached=True)
    src_cfg = meta.get("config")
    if isinstance(src_cfg, dict) and src_cfg.get("task") not in (None, "rotation"):
        raise RotnetError(f"{path} holds weights of a {src_cfg.get('task')} run, not of a rotation run")
    if cfg.init_path and isinstance(src_cfg, dict):
        refuse_other_model(path, src_cfg, cfg)
        refuse_other_pretraining(path, src_cfg.get("dataset", RunConfig().dataset), cfg)
    # Every tensor the model will take, checked before anything is written: loaded only once the run had started,
    # a --restart had set the old run aside for weights that then did not load (examples.safetensors, say).
    with torch.device("meta"):  # shapes and dtypes only: no memory, no init to compute, for every run a plan checks
        body = {k: v for k, v in build_model(cfg.arch, 4, cfg.stem).state_dict().items() if not k.startswith("fc.")}
    check_keys({k: v for k, v in tensors.items() if not k.startswith("fc.")}, body, f"the tensors in {path}")
    if not cfg.init_path:
        if not isinstance(src_cfg, dict):
            raise RotnetError(f"{path} does not record the configuration that made it; pass it with --init PATH")
        ignore = NOT_PROTOCOL + (("freeze_bn",) if expected.trainable == "all" else ())  # no effect on all-trainable
        diff = config_diff(src_cfg, expected.to_dict(), ignore)
        if diff:
            raise RotnetError(
                f"the rotation run {path.parent} was made with another protocol than this run resolves "
                f"({'; '.join(diff)}). To start from its weights anyway, add --init {path} to this command; "
                f"{other_rotation_runs(cfg, runs_root, path)}to train rotation weights of this protocol: {make} "
                f"--runs-root {runs_root} --restart (that run is kept under a new name)"
            )
    record = {
        "init": "rotation",
        "init_from": "--init" if cfg.init_path else "rotation run",
        "init_weights": str(Path(path).absolute()),  # found again by verify from any working folder
        "init_sha256": ckpt.digest(tensors),
        "init_source_config": src_cfg if isinstance(src_cfg, dict) else None,
        "init_source_data": source_data(made),
    }
    return tensors, record


def source_data(made: RunRecord | None) -> dict | None:
    """The data rotation weights were pretrained on, as the run that made them recorded it (its fingerprint and where
    it read it), or None for weights outside a run or a record without one."""
    found = made.config.get("dataset") if made is not None and isinstance(made.config, dict) else None
    return found | {"root": made.config.get("data_root")} if isinstance(found, dict) else None


def refuse_other_pretraining_data(cfg: RunConfig, pretraining: Dataset, init_record: dict) -> None:
    """A from-rotation run starts from a rotation run of the very files it names as its pretraining data (its own
    dataset's, or --pretrain-dataset's): a name ("cifar10", a folder's) said nothing of which copy, so weights
    pretrained on other files made a row that reads as one pipeline on one data. Explicit --init weights are taken as
    given (recorded, and the report says so)."""
    made_on = init_record.get("init_source_data")
    if cfg.init_path or not isinstance(made_on, dict):
        return
    diff = data_diff(made_on, pretraining.fingerprint)  # a moved copy is the same data
    if diff:
        root = made_on.get("root")
        if is_named(pretraining.name):
            fix = "use the --data-root they were trained on" + (f" ({root})" if root else "")
        else:  # an image folder: named by its path
            flag = "--pretrain-dataset" if cfg.pretrain_dataset else "--dataset"
            fix = f"pass {flag} {root}" if root else f"pass {flag} the folder they were trained on"
        raise RotnetError(
            f"the rotation weights {init_record['init_weights']} were pretrained on other {pretraining.name} files "
            f"than this run names ({diff_text(diff)}); {fix}, or add --init "
            f"{init_record['init_weights']} to start from them anyway"
        )


def refuse_other_model(path: Path, made: dict, cfg: RunConfig) -> None:
    """Explicit --init weights of another arch or stem, named as such from what they record (their tensors' names
    and shapes differ from the model's, which said only "weights do not match the model" and listed tensors)."""
    theirs = {k: made[k] for k in ("arch", "stem") if k in made}
    if any(v != getattr(cfg, k) for k, v in theirs.items()):
        said = " ".join(f"--{k} {v}" for k, v in theirs.items())
        raise RotnetError(
            f"{path} holds rotation weights of {' and '.join(f'{k} {v}' for k, v in theirs.items())}, but this run "
            f"builds {cfg.arch} with the {cfg.stem} stem; pass {said}, or --init weights of the latter"
        )


def refuse_other_pretraining(path: Path, made_on: str, cfg: RunConfig) -> None:
    """Explicit --init weights must be of the pretraining data the run names: a from-rotation run is filed and
    reported by it ("cifar10 (pretrained on photos)"), so weights of other data made a silently wrong row."""
    claimed = cfg.pretrain_dataset or cfg.dataset
    if made_on != claimed:
        fix = "leave out --pretrain-dataset" if made_on == cfg.dataset else f"pass --pretrain-dataset {made_on}"
        raise RotnetError(
            f"{path} holds rotation weights pretrained on {made_on}, but this run names {claimed} as its pretraining "
            f"data; {fix} (the run is filed and reported by it)"
        )


def other_rotation_runs(cfg: RunConfig, runs_root: Path, path: Path) -> str:
    """'' or "other rotation weights of this arch and seed: --init A, --init B; ", from the finished rotation runs
    under runs_root (another data segment, a subset, an older copy) that are not at `path`."""
    found = [
        f / WEIGHTS
        for f in find_runs(runs_root)
        if (rid := parse_run_dir(f, runs_root)) is not None
        and (rid.arch, rid.experiment, rid.seed) == (cfg.arch, "rotation", cfg.seed)
        and (f / WEIGHTS).is_file()
        and f / WEIGHTS != path
    ]
    if not found:
        return ""
    return f"other rotation weights of {cfg.arch} seed {cfg.seed} here: {', '.join(f'--init {p}' for p in found[:3])}; "


def rotation_of(cfg: RunConfig) -> RunConfig:
    """The rotation run a from-rotation run starts from when no protocol says more: same arch, seed, stem, data."""
    return RunConfig(
        experiment="rotation",
        arch=cfg.arch,
        seed=cfg.seed,
        stem=cfg.stem,
        dataset=cfg.pretrain_dataset or cfg.dataset,
        image_size=cfg.image_size,
    )


def check_run(
    cfg: RunConfig,
    context: RunContext,
    source: Source | None = None,
    data: Dataset | None = None,
    weights=None,
    held: bool = False,
    with_source: bool = True,
) -> Checked:
    """Every check of a run before it trains or is reused, once, in this order; the first that fails raises.

    0. the epochs it is asked to keep (--keep-epoch) are epochs it trains;
    1. the folder's lock: no other process works on it (skipped when this process holds it: `held`);
    2. the source weights of a from-rotation run: read and hashed once, of this run's protocol;
    3. its record, read once (`record.open_run`): sealed files unchanged and self-consistent;
    4. its configuration: the same as this run's (a partial run's record must name every key: no default fills in);
    5. its data (when given): the same files it was trained on;
    6. the source weights are the ones the record started from (finished or not).
    `weights`, when given, are ones an earlier call returned (not read again); with_source=False skips 2 and 6 (a
    plan whose rotation run is yet to train).
    """
    folder = run_dir(context.runs_root, cfg)
    if beyond := [e for e in context.run_options.keep_epochs if e > cfg.epochs]:
        raise RotnetError(
            f"--keep-epoch {beyond[0]}: {folder} trains {cfg.epochs} epoch(s); name one of 1-{cfg.epochs}"
        )
    if context.world.is_main and not held:  # other ranks: rank 0 holds it for them
        refuse_locked(folder)
    if cfg.init == "rotation" and weights is None and with_source:
        weights = init_weights(cfg, context.runs_root, source)
    if data is not None and weights is not None and not cfg.pretrain_dataset:  # the other data: train_one, a plan
        refuse_other_pretraining_data(cfg, data, weights[1])
    if context.run_options.restart or not ((folder / CONFIG).exists() or (folder / MANIFEST).exists()):
        return Checked(weights)
    finished = (folder / RESULT).is_file()  # reused, so its weights are part of what it claims
    purpose, need = ("reuse", (RESULT, WEIGHTS)) if finished else ("continue", ())
    record = open_run(folder, purpose, need=need, held=True)  # its lock: step 1
    if record.config is None and (folder / CONFIG).exists():
        raise RotnetError(f"{folder / CONFIG} is unreadable; move the run away or use --restart")
    if record.config is None:  # a manifest alone (a run killed before its config.json): its checkpoints' seal
        return Checked(weights, record)
    if not finished:
        refuse_missing_keys(folder, record.config)
    checked = Checked(weights, record)
    refuse_changed_config(folder, cfg, record.config, checked.weights_compared)
    if data is not None:
        refuse_other_data(folder, data, record.config)
    if weights is not None:
        refuse_other_source(folder, cfg, context.runs_root, record.config, weights[1]["init_sha256"])
    return checked


def refuse_changed_config(folder: Path, cfg: RunConfig, record: dict, weights_compared: bool = False) -> None:
    """A run continues, or is reused, only under the configuration it recorded: name the keys that differ (where
    its rotation weights lie is none of them when what they are is compared: `config.run_diff`)."""
    diff = run_diff(record["config"], cfg.to_dict(), weights_compared)
    if diff:
        raise RotnetError(
            f"{folder} holds a run with a different configuration ({'; '.join(diff)}); "
            "use --restart to start over (the old run is kept), or another --runs-root"
        )


def refuse_missing_keys(folder: Path, record: dict) -> None:
    """A run continues, or is verified, only under the configuration it recorded: a key it predates counts as the
    value runs had before that key existed (config.ADDED); any other missing key would take today's default, a
    setting the run never had, and is refused."""
    missing = sorted(set(RunConfig().to_dict()) - set(record["config"]) - set(ADDED))
    if missing:
        raise RotnetError(
            f"{folder / CONFIG} was written by rotnet {record.get('rotnet_version', '?')} and does not record "
            f"{', '.join(missing)}; continue it with that version (commit {record.get('git_commit', '?')}) "
            "or --restart"
        )


def refuse_other_source(folder: Path, cfg: RunConfig, runs_root: Path, record: dict, have: str) -> None:
    """A from-rotation run, finished or not, continues or is reused only beside the rotation weights it was trained
    from: once its rotation run was trained again into other weights, its number no longer belongs to that run."""
    want = record.get("init_sha256")
    if not isinstance(want, str) or want == have:
        return
    raise RotnetError(
        f"{folder} was trained from other rotation weights (sha256 {want[:12]}...) than it would start from now "
        f"({have[:12]}...); train it again from them with: rotnet train {cfg.experiment} --restart"
        f" --runs-root {runs_root} (and your other flags)"
    )


def resume_threads(folder: Path, record: dict | None = None) -> int | None:
    """The CPU thread count a partial run resumes on: the one it started with (CPU sums depend on it), as its
    config.json recorded it (`record`, when it was read already). None for a run with no checkpoint or a finished
    one: those start on any count."""
    if (folder / RESULT).is_file() or not any((folder / CHECKPOINTS).glob("e*-s*.safetensors")):
        return None
    return recorded_threads(record if record is not None else read_json(folder / CONFIG))


def refuse_other_data(
    folder: Path,
    data: Dataset,
    record: dict,
    fix: str = "",
) -> None:
    """A run resumes, is reused or is verified only on the data it was trained on; `fix` says what to do instead
    (by default: the data it names, or --restart)."""
    old = record.get("dataset")
    if not isinstance(old, dict):
        return
    diff = data_diff(old, data.fingerprint)  # a moved copy is the same data
    if diff:
        where = record.get("data_root")
        if not fix:  # an image folder is named by its path, not found under --data-root
            fix = "use its --data-root" if is_named(data.name) else "name the image folder it was trained on"
            fix += f" ({where}), or" if where else ", or"
            fix += " --restart to start over (the old run is kept)"
        raise RotnetError(f"{folder} was trained on other data ({diff_text(diff)}); {fix}")


def refuse_broken_source(cfg: RunConfig, model: nn.Module, data: Dataset, init_info: dict) -> None:
    """Rotation weights (a run's or --init's) that load but cannot work, refused before a step is trained."""
    if cfg.init != "rotation":
        return
    problem = weights_problem(model, data.test_images, normalization(cfg, data), channels_last=False)
    if problem:
        raise RotnetError(f"the rotation weights {init_info['init_weights']} cannot start a run: {problem}")


def refuse_untrainable(cfg: RunConfig, data: Dataset, ranks: int = 1) -> int:
    """What a run needs of its data, checked before its folder is made and, in a plan, before any run of it trains:
    class labels for classification, and two or more samples in every step on every rank (batch norm cannot train
    on one: torch raises mid-epoch on 32 px images, and on larger ones a lone image's statistics stand in for a
    batch's). Returns the model's output count."""
    outputs = output_count(cfg, data)
    n = subset_size(data.train_labels, cfg.train_per_class)  # counted, not drawn
    fewest = smallest_step(cfg, n, ranks)
    if n and fewest < 2:
        # the nearest batch sizes that leave no step short, to say which would do
        fits = [b for b in range(max(cfg.batch_size - 64, 2), cfg.batch_size + 65) if b != cfg.batch_size]
        fits = [b for b in fits if smallest_step(replace(cfg, batch_size=b), n, ranks) >= 2]
        near = sorted(sorted(fits, key=lambda b: abs(b - cfg.batch_size))[:2])
        where = f" on one of {ranks} processes" if ranks > 1 else ""
        choose = f"choose another --batch-size ({' or '.join(map(str, near))} would do)" if near else "add images"
        raise RotnetError(
            f"a step of {cfg.experiment} would train on {plural(fewest, 'sample')}{where} ({n:,} image{'s' * (n != 1)}"
            f" in batches of {cfg.batch_size}), and batch norm needs 2 or more; {choose}"
        )
    return outputs


def refuse_writing_into_data(cfg: RunConfig, runs_root: Path) -> None:
    """Nothing of a run is written inside the image folder it reads: a folder holding rotnet's outputs is never read as
    images, so a runs root there (a plan's log, a report) made the next command find no images at all. Told from the
    folder's path, before its images are read (a large folder's were prepared first, then refused)."""
    if is_named(cfg.dataset):
        return
    for written in (Path(runs_root), run_dir(runs_root, cfg)):
        if lies_in(written, cfg.dataset):
            what = "runs root" if written == Path(runs_root) else f"run folder under runs root {runs_root}"
            raise RotnetError(f"the {what}, {written}, lies inside the image folder {cfg.dataset} that the run "
                              "reads; name a runs root elsewhere")  # fmt: skip


def warn_short_classes(cfg: RunConfig, data: Dataset) -> None:
    """A subset of N per class takes all of a smaller class (a smoke test runs on whatever data it is given): say
    which, by name; result.json records each class's count. Data without class labels is one class: N images in
    all (the smoke preset runs on any folder), which is said, as "per class" would not be what happens."""
    if cfg.train_per_class and not data.labeled:
        n = min(cfg.train_per_class, len(data.train_labels))
        warn_once(
            ("unlabeled subset", data.name, data.root, cfg.train_per_class),
            f"train_per_class={cfg.train_per_class}: {data.name} has no class labels, so {n:,} of its "
            f"{len(data.train_labels):,} images are used in all",
        )
        return
    short = short_classes(data.train_labels, cfg.train_per_class) if cfg.train_per_class else {}
    if short:
        names = [f"{class_name(data, c)} ({n})" for c, n in sorted(short.items())]
        warn_once(
            ("short", data.name, data.root, cfg.train_per_class, tuple(sorted(short.items()))),
            f"fewer than {cfg.train_per_class} training images per class in {', '.join(names)}: all of them are used",
        )


def warn_without_knn(cfg: RunConfig, data: Dataset) -> None:
    """A kNN monitor needs class labels, two classes or more: asked of data without them, say that none is logged
    (it said nothing; on one class it logged 100% at every epoch)."""
    if cfg.knn_every and (not data.labeled or data.num_classes < 2):
        lacks = "no class labels" if not data.labeled else f"one class ({data.class_names[0]})"
        warn_once(
            ("knn", data.name, data.root),
            f"--knn-every {cfg.knn_every}: {data.name} has {lacks}, so no kNN accuracy is logged",
        )


def class_name(data: Dataset, c: int) -> str:
    return data.class_names[c] if 0 <= c < len(data.class_names) else "unlabeled"
