"""One run's life: its folder (locked), initialization (checked weights), resume, training, final outputs."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from torch import nn

from rotnet import checkpoint as ckpt
from rotnet.checkpoint import first_missing
from rotnet.config import ADDED, NOT_PROTOCOL, RunConfig, config_diff
from rotnet.data import Dataset, balanced_subset, class_counts, normalization, outputs, short_classes
from rotnet.distributed import World, barrier, ranks_agree
from rotnet.errors import Diverged, InUse, RotnetError, warn_once
from rotnet.evaluate import accuracy, confusion, knn_monitor, predict, targets_for
from rotnet.health import weights_problem
from rotnet.kernels import computing_with
from rotnet.layout import (
    CHECKPOINTS,
    CONFIG,
    EXAMPLES,
    FAILED,
    METRICS,
    RESULT,
    WEIGHTS,
    RunLock,
    data_diff,
    find_runs,
    is_locked,
    parse_run_dir,
    read_json,
    run_dir,
)
from rotnet.loggers import Loggers, replay, require_logger
from rotnet.loop import Engine, Hooks, LoopState, build_optimizer, fit, plural
from rotnet.models import check_keys, initial_model, set_trainable, transfer_state
from rotnet.provenance import cpu_identity, provenance
from rotnet.record import RunRecord, Seal, open_run, voucher
from rotnet.runtime import cpu_threads, recorded_threads, threads_text
from rotnet.seeds import contract_diff, stream_contract
from rotnet.signals import StopFlag


@dataclass(frozen=True)
class Saving:
    """How a run keeps its state and logs, declared once (the command line, the API, a parent `reproduce` and its
    job files all carry this): nothing here changes a result."""

    checkpoint_every: int = 0  # also checkpoint every N steps (0: never mid-epoch)
    checkpoint_minutes: float = 10.0  # at an epoch end, checkpoint once this long passed since the last (0: always)
    keep_checkpoints: int = 0  # checkpoints left once a run finished (two are kept while it runs; its weights stay)
    keep_epochs: tuple[int, ...] = ()  # epoch-end checkpoints always written and never pruned (verify --from-epoch)
    loggers: tuple[str, ...] = ()  # tensorboard, csv, wandb (metrics.jsonl is always written)
    restart: bool = False  # keep an existing run under a new name and start over

    def __post_init__(self):
        for name in self.loggers:  # a missing package is named now, before the data loads or a folder is made
            require_logger(name)

    @classmethod
    def from_dict(cls, d: dict) -> Saving:
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class RunContext:
    """How to run, as opposed to what to run: nothing here changes a result."""

    device: torch.device
    runs_root: Path
    saving: Saving = Saving()
    command: str = ""  # the user's command, for provenance ("" = this process's argv)
    stop: StopFlag | None = None
    world: World = World()  # torchrun ranks (one process per device)


@dataclass(frozen=True)
class Source:
    """Where a from-rotation run's weights must come from: the rotation run its own protocol resolves (same
    preset, files and flags, arch and seed), and the command that makes it."""

    expected: RunConfig
    command: str = ""


def init_weights(cfg: RunConfig, runs_root: Path, source: Source | None) -> tuple[dict, dict]:
    """The rotation weights a from-rotation run starts from, read and hashed once, and what to record about them.

    An explicit --init path is taken as given (and recorded so). Otherwise the rotation run of `source.expected`
    is looked up and refused if it was made with another protocol than the one this run resolves.
    """
    expected = source.expected if source else rotation_of(cfg)
    path = Path(cfg.init_path) if cfg.init_path else run_dir(runs_root, expected) / WEIGHTS
    make = (source.command if source else "") or f"rotnet train rotation --arch {cfg.arch} --seed {cfg.seed}"
    if not path.is_file():
        if cfg.init_path:
            raise RotnetError(f"no rotation weights at {path}; check the --init path")
        raise RotnetError(
            f"no rotation weights at {path}; {other_rotation_runs(cfg, runs_root, path)}make them with: {make} "
            f"--runs-root {runs_root}"
        )
    tensors, meta = ckpt.load_source(path)  # read once; the record check below finds its sha256 known
    if not cfg.init_path:
        open_run(path.parent, "take rotation weights from", need=(RESULT, WEIGHTS))
    src_cfg = meta.get("config")
    if isinstance(src_cfg, dict) and src_cfg.get("task") not in (None, "rotation"):
        raise RotnetError(f"{path} holds weights of a {src_cfg.get('task')} run, not of a rotation run")
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
        "init_weights": str(path),
        "init_sha256": ckpt.digest(tensors),
        "init_source_config": src_cfg if isinstance(src_cfg, dict) else None,
    }
    return tensors, record


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


def init_model(cfg: RunConfig, classes: int, weights: tuple[dict, dict] | None) -> tuple[nn.Module, dict]:
    """A fresh model from the run's seed; for init="rotation", every weight but fc from the checked source weights
    (`check_run`'s)."""
    model = initial_model(cfg.arch, classes, cfg.stem, cfg.seed)
    if cfg.init != "rotation":
        return model, {"init": cfg.init}
    tensors, record = weights
    model.load_state_dict(transfer_state(tensors, model))
    return model, record


@dataclass(frozen=True)
class Checked:
    """What `check_run` passed: the source weights of a from-rotation run (tensors, what to record; None for other
    runs) and the run's record as read and checked (None: no run there yet, or one a --restart keeps aside)."""

    weights: tuple[dict, dict] | None = None
    record: RunRecord | None = None


def check_run(
    cfg: RunConfig,
    rt: RunContext,
    source: Source | None = None,
    data: Dataset | None = None,
    weights=None,
    held: bool = False,
    with_source: bool = True,
) -> Checked:
    """Every check of a run before it trains or is reused, once, in this order; the first that fails raises.

    1. the folder's lock: no other process works on it (skipped when this process holds it: `held`);
    2. the source weights of a from-rotation run: read and hashed once, of this run's protocol;
    3. its record, read once (`record.open_run`): sealed files unchanged and self-consistent;
    4. its configuration: the same as this run's (a partial run's record must name every key: no default fills in);
    5. its data (when given): the same files it was trained on;
    6. the source weights are the ones the record started from (finished or not).
    `weights`, when given, are ones an earlier call returned (not read again); with_source=False skips 2 and 6 (a
    plan whose rotation run is yet to train).
    """
    folder = run_dir(rt.runs_root, cfg)
    holder = is_locked(folder) if rt.world.is_main and not held else None  # other ranks: rank 0 holds it for them
    if holder:
        raise InUse(f"{folder} is in use by another rotnet process (pid {holder}); wait for it to finish or stop it")
    if cfg.init == "rotation" and weights is None and with_source:
        weights = init_weights(cfg, rt.runs_root, source)
    if rt.saving.restart or not (folder / CONFIG).exists():
        return Checked(weights)
    finished = (folder / RESULT).is_file()  # reused, so its weights are part of what it claims
    record = open_run(folder, "reuse" if finished else "continue", need=(RESULT, WEIGHTS) if finished else ())
    if record.config is None:
        raise RotnetError(f"{folder / CONFIG} is unreadable; move the run away or use --restart")
    if not finished:
        refuse_missing_keys(folder, record.config)
    refuse_changed_config(folder, cfg, record.config)
    if data is not None:
        refuse_other_data(folder, data, record.config)
    if weights is not None:
        refuse_other_source(folder, cfg, rt.runs_root, record.config, weights[1]["init_sha256"])
    return Checked(weights, record)


def preflight(cfg: RunConfig, rt: RunContext, source: Source | None = None) -> tuple[dict, dict] | None:
    """The checks that need no data, so that they fail before it loads; returns the source weights."""
    return check_run(cfg, rt, source).weights


def refuse_changed_config(folder: Path, cfg: RunConfig, record: dict) -> None:
    """A run continues, or is reused, only under the configuration it recorded: name the keys that differ."""
    diff = config_diff(record["config"], cfg.to_dict())
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


def keep_aside(folder: Path) -> Path:
    """Rename folder to the first free FOLDER.oldN (--restart keeps what a user ran before)."""
    n = 1
    while folder.with_name(f"{folder.name}.old{n}").exists():
        n += 1
    target = folder.with_name(f"{folder.name}.old{n}")
    with RunLock(folder):  # never from under a running process
        os.rename(folder, target)
    return target


def make_dir(folder: Path, runs_root: Path) -> None:
    """The run folder, for its lock; nothing inside it until the lock is held. No folder between the runs root and
    it may be a link (rotnet makes none)."""
    ckpt.refuse_links(folder, runs_root)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RotnetError(f"output directory {folder} is not writable ({e.strerror or e})") from None


def refuse_other_data(folder: Path, data: Dataset, record: dict) -> None:
    """A run resumes, or is reused, only on the data it was trained on."""
    old = record.get("dataset")
    if not isinstance(old, dict):
        return
    diff = data_diff(old, data.fingerprint)  # a moved copy is the same data
    if diff:
        raise RotnetError(
            f"{folder} was trained on other data ({'; '.join(diff[:4])}{' ...' if len(diff) > 4 else ''}); "
            "use its --data-root, or --restart to start over (the old run is kept)"
        )


def kept_epochs(rt: RunContext) -> set[str]:
    return {ckpt.checkpoint_name(e, 0) for e in rt.saving.keep_epochs}


def save_state(seal: Seal, cfg: RunConfig, engine: Engine, state: LoopState, stream: dict, kept=()) -> None:
    """Checkpoint (model, optimizer, position, running sums, history), then metrics.jsonl from that history; each
    sealed as written."""
    opt_tensors, opt_meta = ckpt.optimizer_to_tensors(engine.optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in engine.model.state_dict().items()}
    tensors |= {f"optim.{k}": v for k, v in opt_tensors.items()} | {"loop.sums": state.sums}
    meta = {
        "config": cfg.to_dict(),
        "stream": stream,
        "epoch": state.epoch,
        "step": state.step,
        "seconds": state.seconds,
        "history": state.history,
        "optimizer": opt_meta,
        "scaler": engine.scaler.state_dict() if engine.scaler is not None else None,
        **({"cpu": cpu_identity()} if stream.get("device") == "cpu" else {}),  # the kernels this state came from
    }
    folder = seal.folder / CHECKPOINTS
    name = f"{CHECKPOINTS}/{ckpt.checkpoint_name(state.epoch, state.step)}"
    seal.write(name, ckpt.encode(tensors, ckpt.checkpoint_meta(meta)))
    seal.removed(ckpt.prune_checkpoints(folder, ckpt.KEEP, kept))
    write_metrics(seal, state)


def write_metrics(seal: Seal, state: LoopState) -> None:
    text = "".join(json.dumps(r) + "\n" for r in state.history)
    seal.write_text(METRICS, text)


def restore_state(
    folder: Path, cfg: RunConfig, engine: Engine, steps: int, stream: dict, record: RunRecord | None
) -> LoopState | None:
    """The newest checkpoint the run's manifest (`record`, as checked) vouches for, loaded into engine; None when
    there is none. A checkpoint of another configuration or stream contract (stream version, device type, torch
    version) is refused: the run would silently switch random streams mid-way."""
    if record is None:
        return None
    found = ckpt.load_latest_checkpoint(folder / CHECKPOINTS, cfg.epochs, steps, voucher(record))
    return None if found is None else restore(found, cfg, engine, stream)


def restore(found: tuple[dict, dict, Path], cfg: RunConfig, engine: Engine, stream: dict) -> LoopState:
    """A checkpoint's (tensors, metadata, path) loaded into engine, refused if it belongs to another configuration
    or stream contract; returns its loop state."""
    tensors, meta, path = found
    diff = config_diff(meta["config"], cfg.to_dict())
    if diff:
        raise RotnetError(f"checkpoint {path} belongs to another run ({'; '.join(diff)})")
    changed = contract_diff(meta.get("stream"), stream)
    if changed:
        raise RotnetError(
            f"checkpoint {path} was written under another random-stream contract ({'; '.join(changed)}): resuming "
            "would switch streams mid-run; resume it with the rotnet, torch and device kind that started it "
            "(its config.json), or --restart (the old run is kept)"
        )
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    check_keys(weights, engine.model.state_dict(), f"checkpoint {path.name}")
    engine.model.load_state_dict(weights)
    opt_tensors = {k.removeprefix("optim."): v for k, v in tensors.items() if k.startswith("optim.")}
    try:
        engine.optimizer.load_state_dict(ckpt.optimizer_from_tensors(opt_tensors, meta["optimizer"]))
        if engine.scaler is not None and meta.get("scaler"):
            engine.scaler.load_state_dict(meta["scaler"])
    except (KeyError, ValueError, TypeError) as e:
        raise RotnetError(f"checkpoint {path} has an unreadable optimizer state ({e})") from None
    if "loop.sums" not in tensors:
        raise RotnetError(f"checkpoint {path} lacks its loop state")
    return LoopState(meta["epoch"], meta["step"], tensors["loop.sums"], meta["seconds"], meta["history"])


def refuse_broken_source(cfg: RunConfig, model: nn.Module, data: Dataset, init_info: dict) -> None:
    """Rotation weights (a run's or --init's) that load but cannot work, refused before a step is trained."""
    if cfg.init != "rotation":
        return
    problem = weights_problem(model, data.test_images, normalization(cfg, data), channels_last=False)
    if problem:
        raise RotnetError(f"the rotation weights {init_info['init_weights']} cannot start a run: {problem}")


def train_subset(cfg: RunConfig, data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    if not cfg.train_per_class:
        return data.train_images, data.train_labels
    idx = balanced_subset(data.train_labels, cfg.train_per_class, cfg.seed)
    return data.train_images[idx], data.train_labels[idx]


def remove_made(folder: Path, created: Path) -> None:
    """Remove a refused run's folder, and the parents it made up to `created` while they are empty: a job beside it
    (reproduce runs several) may be using them."""
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if not parent.is_relative_to(created):
            break
        try:
            parent.rmdir()  # only an empty folder
        except OSError:
            break


def warn_short_classes(cfg: RunConfig, data: Dataset) -> None:
    """A subset of N per class takes all of a smaller class (a smoke test runs on whatever data it is given): say
    which, by name; result.json records each class's count."""
    short = short_classes(data.train_labels, cfg.train_per_class) if cfg.train_per_class else {}
    if short:
        names = [f"{class_name(data, c)} ({n})" for c, n in sorted(short.items())]
        warn_once(
            ("short", data.name, data.root, cfg.train_per_class, tuple(sorted(short.items()))),
            f"fewer than {cfg.train_per_class} training images per class in {', '.join(names)}: all of them are used",
        )


def class_name(data: Dataset, c: int) -> str:
    return data.class_names[c] if 0 <= c < len(data.class_names) else "unlabeled"


def build_engine(cfg: RunConfig, model: nn.Module, rt: RunContext, norm: tuple) -> Engine:
    device, world = rt.device, rt.world
    if world.size > 1 and cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same parameter names: checkpoints still load
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = build_optimizer(cfg, set_trainable(model, cfg.trainable), device)
    scaler = torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None
    forward = model
    if world.size > 1:  # averages gradients across ranks; broadcasts rank 0's buffers (BN statistics) each step
        forward = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    forward = torch.compile(forward) if cfg.compile else forward
    return Engine(model, opt, forward, scaler, norm)


def memory_budget(device: torch.device) -> int:
    """Bytes of images a run may place on the device: half of what is free there (host RAM for the CPU)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 2
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError):
        return 1 << 62


def device_data(cfg: RunConfig, data: Dataset, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The run's training images and labels and the test images on the device when they fit in its memory budget
    (the fast path: batches are gathered there); otherwise the images stay in host memory or their memory map and
    each batch is copied over. Test labels stay on the host."""
    images, labels = train_subset(cfg, data)
    test = data.test_images
    if images.nbytes + test.nbytes <= memory_budget(device):
        images, test = images.to(device), test.to(device)
    return images, labels.to(device), test, data.test_labels


def prediction_options(cfg: RunConfig, norm: tuple) -> dict:
    return {
        "batch_size": cfg.eval_batch_size,
        "precision": cfg.precision,
        "channels_last": cfg.channels_last,
        "norm": norm,
    }


class EpochEvaluator:
    """The metrics of an epoch end: test accuracy (and kNN accuracy every knn_every epochs and after the last, on
    labeled data). It keeps the last epoch's predictions, so the run's confusion matrix and examples come from the
    evaluation that scored it instead of a second pass over the test set."""

    def __init__(self, cfg: RunConfig, norm: tuple, images, labels, test_images, test_labels):
        self.cfg, self.kw = cfg, prediction_options(cfg, norm)
        self.images, self.labels, self.test_images, self.test_labels = images, labels, test_images, test_labels
        self.knn = cfg.knn_every and len(labels) and int(labels.min()) >= 0
        self.final: torch.Tensor | None = None  # predictions after cfg.epochs, once this process has made them

    def __call__(self, m: nn.Module, epoch: int) -> dict:
        cfg, t = self.cfg, time.perf_counter()
        pred = predict(m, self.test_images, cfg.task, **self.kw)
        self.final = pred if epoch == cfg.epochs else None
        out = {
            "test_acc": accuracy(pred, self.test_labels, cfg.task),
            "eval_images_per_s": pred.numel() / (time.perf_counter() - t),
        }
        if self.knn and (epoch % cfg.knn_every == 0 or epoch == cfg.epochs):
            out["knn_acc"] = knn_monitor(m, self.images, self.labels, self.test_images, self.test_labels, **self.kw)
        return out

    def final_predictions(self, m: nn.Module) -> torch.Tensor:
        """The final weights' test predictions: the last epoch's, or (a run resumed after its last epoch) new ones."""
        return self.final if self.final is not None else predict(m, self.test_images, self.cfg.task, **self.kw)


def write_record(
    seal: Seal, cfg: RunConfig, data: Dataset, rt: RunContext, init_info: dict, first: dict | None
) -> None:
    """config.json: the resolved configuration, the stream contract, the data's fingerprint, where the weights came
    from, provenance; a resumed run keeps `first` (its config.json as read) and appends this start's provenance."""
    record = {
        "config": cfg.to_dict(),
        "stream": stream_contract(rt.device),
        **provenance(rt.device, rt.command),
        **init_info,
        "data_root": data.root,
        "dataset_checksums_match": data.checksums_match,
        "dataset": data.fingerprint,
        "normalization": dict(zip(("mean", "std"), map(list, normalization(cfg, data)), strict=True)),
        "resumed": first is not None,
    }
    if isinstance(first, dict):  # keep the first start's provenance, add this one's
        record = first | {"resumes": [*first.get("resumes", []), provenance(rt.device, rt.command)]}
    record["world_size"] = rt.world.size
    seal.write_text(CONFIG, json.dumps(record, indent=2) + "\n")


def run(cfg: RunConfig, data: Dataset, rt: RunContext, source: Source | None = None, log=print, weights=None) -> dict:
    """Train one experiment into its run folder (resuming if a checkpoint is there), or reuse it if it finished;
    return its result. `weights`: the source weights a `preflight` of this run returned (not read again)."""
    world = rt.world
    log = log if world.is_main else (lambda *_: None)  # one voice, and only rank 0 writes files
    folder = run_dir(rt.runs_root, cfg)
    if (folder / RESULT).is_file() and not rt.saving.restart:
        record = check_run(cfg, rt, source, data, weights).record
        result = record.result
        written = replay(rt.saving.loggers, folder, cfg, record.history or [], result) if world.is_main else []
        also = f"; wrote its {' and '.join(written)} logs from metrics.jsonl" if written else ""
        also += "; not sent to W&B, which takes a run while it trains" if "wandb" in rt.saving.loggers else ""
        log(f"{folder}: already finished; reusing it{also}")
        return result
    # Before any folder is made: classification needs labels.
    classes = outputs(cfg, data)
    warn_short_classes(cfg, data)
    steps = math.ceil(len(train_subset(cfg, data)[1]) / cfg.batch_size)
    lock, created = None, None
    if world.is_main:
        if rt.saving.restart and folder.exists():
            log(f"{folder}: kept the previous run as {keep_aside(folder).name}")
        created = first_missing(folder)  # what a refusal below removes: the run folder and the parents it needs
        make_dir(folder, rt.runs_root)
        lock = RunLock(folder).acquire()
    try:
        barrier()
        try:
            # Again under the lock (another process may have started it), now with the data; after a restart's
            # keep_aside the folder is new, and is checked as such.
            fresh = replace(rt, saving=replace(rt.saving, restart=False))
            checked = check_run(cfg, fresh, source, data, weights, held=True)
            model, init_info = init_model(cfg, classes, checked.weights)
            refuse_broken_source(cfg, model, data, init_info)
            engine = build_engine(cfg, model, rt, normalization(cfg, data))
            state = restore_state(folder, cfg, engine, steps, stream_contract(rt.device), checked.record)
        except (RotnetError, OSError, RuntimeError):
            if created:  # nothing of a run refused before it started is left behind (a report would list it)
                lock.release()
                remove_made(folder, created)
            raise
        resumed, threads = state is not None, None
        if state is None:
            state = LoopState()
        else:
            started = (
                resume_threads(folder, checked.record.config) if rt.device.type == "cpu" and world.size == 1 else None
            )
            threads = started if started != torch.get_num_threads() else None
            on = f" on {threads_text(threads)}, as the run started" if threads else ""
            log(f"{folder}: resuming at epoch {state.epoch + 1}, step {state.step}{on}")
        seal = Seal.resume(folder, checked.record)
        # CPU sums depend on the thread count (keep the one the run started with) and on the kernels
        with cpu_threads(threads), computing_with(cfg.kernels, rt.device):
            if world.is_main:
                write_record(seal, cfg, data, rt, init_info, checked.record.config if resumed else None)
            loggers = rt.saving.loggers
            sinks = Loggers(loggers, folder, cfg, resumed) if world.is_main and loggers else None
            return train_and_finish(cfg, data, rt, seal, engine, state, log, sinks)
    finally:
        if lock is not None:
            lock.release()


def weights_meta(cfg: RunConfig, norm: tuple, classes: list[str], size: int) -> dict:
    """What a user of the weights file needs beside the tensors: how to build the model and feed it."""
    return {
        "config": cfg.to_dict(),
        "arch": cfg.arch,
        "stem": cfg.stem,
        "task": cfg.task,
        "class_names": classes,
        "normalization": {"mean": list(norm[0]), "std": list(norm[1])},  # after ToTensor's 0-1 scaling
        "image_size": size,
    }


def train_and_finish(
    cfg: RunConfig,
    data: Dataset,
    rt: RunContext,
    seal: Seal,
    engine: Engine,
    state: LoopState,
    log,
    sinks: Loggers | None = None,
) -> dict:
    world, folder, stream = rt.world, seal.folder, stream_contract(rt.device)
    images, labels, test_images, test_labels = device_data(cfg, data, rt.device)
    evaluate = EpochEvaluator(cfg, engine.norm, images, labels, test_images, test_labels)

    last = time.monotonic()

    def save(s: LoopState) -> None:
        """A checkpoint mid-epoch (by steps or on a stop), at a kept epoch, or once checkpoint_minutes passed; at
        other epoch ends only metrics.jsonl, so that a long run of short epochs doesn't write one file per epoch. The
        last epoch's is written only when the finished run keeps checkpoints: its weights follow at once, and a run
        killed before its result is written resumes from the checkpoint before (bit-exact, as from any other)."""
        nonlocal last
        if not world.is_main:
            return
        if sinks and not s.step:
            sinks.epoch(s.history)
        stopping = rt.stop is not None and rt.stop.requested
        kept = not s.step and s.epoch in rt.saving.keep_epochs
        if s.epoch >= cfg.epochs:
            due = stopping or kept or rt.saving.keep_checkpoints > 0
        else:
            due = s.step or stopping or kept or time.monotonic() - last >= rt.saving.checkpoint_minutes * 60
        if due:
            save_state(seal, cfg, engine, s, stream, kept_epochs(rt))
            last = time.monotonic()
        else:
            write_metrics(seal, s)

    if world.is_main:
        steps = math.ceil(len(images) / cfg.batch_size)
        evals = "every epoch" if cfg.eval_every == 1 else f"every {cfg.eval_every} epochs and after the last"
        evals = "after the last epoch" if cfg.eval_every >= cfg.epochs and cfg.eval_every > 1 else evals
        log(
            f"{folder}: {plural(cfg.epochs, 'epoch')} ({cfg.epochs - state.epoch} to go) of {len(images):,} images "
            f"({steps} steps of {cfg.batch_size}), tested on {len(test_images):,} images {evals}"
        )
    started = time.perf_counter()
    history = fit(
        cfg,
        engine,
        images,
        labels,
        state,
        Hooks(evaluate, save, log, sinks.progress if sinks else None),
        checkpoint_every=rt.saving.checkpoint_every,
        stop=rt.stop,
        world=world,
    )
    model = engine.model
    agree = ranks_agree(model)
    if not agree:
        raise RotnetError("the ranks ended with different weights; this is a bug, please report it")
    problem = weights_problem(model, test_images, engine.norm, cfg.channels_last)
    if problem:  # every rank sees it (their weights agree), so none waits for outputs that never come
        why = f"diverged: the final weights have {problem}"
        if world.is_main:  # never called finished: no weights or result written, failed.json says why
            ckpt.atomic_write_text(folder / FAILED, json.dumps({"error": why}) + "\n")
        raise Diverged(f"{folder}: {why}")
    if not world.is_main:
        barrier()  # rank 0 writes the final outputs
        return json.loads((folder / RESULT).read_text())

    # Final outputs: weights that load into plain torchvision, and what the report needs without the data.
    classes = list(data.class_names) if cfg.task == "classification" else ["0", "90", "180", "270"]
    meta = weights_meta(cfg, engine.norm, classes, test_images.shape[-1])
    seal.write(WEIGHTS, ckpt.encode(model.state_dict(), meta))
    pred = evaluate.final_predictions(model)
    examples = {"images": data.test_images[:8].clone(), "pred": pred[:8]}
    seal.write(EXAMPLES, ckpt.encode(examples))
    result = {
        "experiment": cfg.experiment,
        "arch": cfg.arch,
        "seed": cfg.seed,
        "task": cfg.task,
        "test_acc": history[-1]["test_acc"],
        "epochs": len(history),
        "train_seconds": sum(r["seconds"] for r in history),  # every epoch's, across resumes (pauses included)
        "last_invocation_seconds": time.perf_counter() - started,  # this process's training and evaluation only
        "images_per_s": sum(r["images_per_s"] for r in history) / len(history),
        "confusion": confusion(pred, targets_for(pred, test_labels, cfg.task), len(classes)),
        "world_size": world.size,
        "ranks_agree": agree,
        "class_names": classes,
        "dataset": cfg.dataset,
        "pretrain_dataset": cfg.pretrain_dataset,
        "test_images": len(data.test_images),
        "train_images": len(images),
    }
    if cfg.train_per_class:  # up to N of each class: what each one had
        result["train_images_per_class"] = {class_name(data, c): n for c, n in class_counts(labels).items()}
    seal.write_text(RESULT, json.dumps(result, indent=2) + "\n")
    (folder / FAILED).unlink(missing_ok=True)  # an earlier attempt's mark; it finished now
    seal.removed(ckpt.prune_checkpoints(folder / CHECKPOINTS, rt.saving.keep_checkpoints, kept_epochs(rt)))
    if sinks:
        sinks.finish(result)
    n = len(history)
    log(f"{folder}: test accuracy {result['test_acc']:.2f}% after {plural(n, 'epoch')}")
    barrier()
    return result
