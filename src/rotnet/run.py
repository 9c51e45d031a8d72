"""One run's life: its folder (locked), initialization (checked weights), resume, training, final outputs."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rotnet import checkpoint as ckpt
from rotnet.config import NOT_PROTOCOL, RunConfig, config_diff
from rotnet.data import Dataset, balanced_subset, normalization, outputs
from rotnet.distributed import World, barrier, ranks_agree
from rotnet.errors import InUse, RotnetError
from rotnet.evaluate import accuracy, confusion, knn_monitor, predict, targets_for
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
    is_locked,
    read_json,
    read_record,
    refuse_changed_config,
    run_dir,
)
from rotnet.loggers import Loggers
from rotnet.loop import Engine, Hooks, LoopState, build_optimizer, fit
from rotnet.models import check_keys, initial_model, set_trainable, transfer_state
from rotnet.provenance import provenance
from rotnet.runtime import cpu_threads, recorded_threads, threads_text
from rotnet.signals import StopFlag


@dataclass(frozen=True)
class Runtime:
    """How to run, as opposed to what to run: nothing here changes a result."""

    device: torch.device
    runs_root: Path
    checkpoint_every: int = 0  # also checkpoint every N steps (0: never mid-epoch)
    checkpoint_minutes: float = 10.0  # at an epoch end, checkpoint once this long passed since the last (0: always)
    restart: bool = False  # keep an existing run under a new name and start over
    keep_checkpoints: int = 1  # checkpoints left once a run finished (two are kept while it runs)
    loggers: tuple[str, ...] = ()  # tensorboard, csv, wandb (metrics.jsonl is always written)
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
    """The rotation weights a from-rotation run starts from, checked, and what to record about them.

    An explicit --init path is taken as given (and recorded so). Otherwise the rotation run of `source.expected`
    is looked up and refused if it was made with another protocol than the one this run resolves.
    """
    expected = source.expected if source else rotation_of(cfg)
    path = Path(cfg.init_path) if cfg.init_path else run_dir(runs_root, expected) / WEIGHTS
    make = (source.command if source else "") or f"rotnet train rotation --arch {cfg.arch} --seed {cfg.seed}"
    if not path.is_file():
        how = "check the --init path" if cfg.init_path else f"make them with: {make} --runs-root {runs_root}"
        raise RotnetError(f"no rotation weights at {path}; {how}")
    tensors, meta = ckpt.load_tensors(path)
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
                f"{path} was made with another protocol than this run's ({'; '.join(diff)}); make the right "
                f"weights with: {make} --runs-root {runs_root}  (or name weights explicitly with --init PATH)"
            )
    record = {
        "init": "rotation",
        "init_from": "--init" if cfg.init_path else "rotation run",
        "init_weights": str(path),
        "init_sha256": ckpt.digest(tensors),
        "init_source_config": src_cfg if isinstance(src_cfg, dict) else None,
    }
    return tensors, record


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


def init_model(cfg: RunConfig, runs_root: Path, classes: int, source: Source | None = None) -> tuple[nn.Module, dict]:
    """A fresh model from the run's seed; for init="rotation", every weight but fc from the checked source."""
    model = initial_model(cfg.arch, classes, cfg.stem, cfg.seed)
    if cfg.init != "rotation":
        return model, {"init": cfg.init}
    tensors, record = init_weights(cfg, runs_root, source)
    model.load_state_dict(transfer_state(tensors, model))
    return model, record


def preflight(cfg: RunConfig, rt: Runtime, source: Source | None = None) -> None:
    """The checks that need no data, so that they fail before it loads: the run folder's config, the weights."""
    folder = run_dir(rt.runs_root, cfg)
    holder = is_locked(folder) if rt.world.is_main else None  # other torchrun ranks: rank 0 holds it for them
    if holder:
        raise InUse(f"{folder} is in use by another rotnet process (pid {holder}); wait for it to finish or stop it")
    if not rt.restart:
        refuse_changed_config(folder, cfg)
    if cfg.init == "rotation" and not (folder / RESULT).is_file():
        init_weights(cfg, rt.runs_root, source)
    elif not rt.restart:
        refuse_other_source(folder, cfg, rt.runs_root, source)


def refuse_other_source(folder: Path, cfg: RunConfig, runs_root: Path, source: Source | None) -> None:
    """A finished from-rotation run is reused only beside the rotation weights it was trained from: once its
    rotation run was trained again into other weights, its number no longer belongs to that run."""
    if cfg.init != "rotation" or cfg.init_path:
        return
    want = (read_record(folder) or {}).get("init_sha256")
    path = run_dir(runs_root, source.expected if source else rotation_of(cfg)) / WEIGHTS
    if not isinstance(want, str) or not path.is_file():
        return
    have = ckpt.digest(ckpt.load_tensors(path)[0])
    if have != want:
        raise RotnetError(
            f"{folder} was trained from other rotation weights (sha256 {want[:12]}...) than {path} holds now "
            f"({have[:12]}...); train it again from them with: rotnet train {cfg.experiment} --restart"
            f" --runs-root {runs_root} (and your other flags)"
        )


def resume_threads(folder: Path) -> int | None:
    """The CPU thread count a partial run resumes on: the one it started with (CPU sums depend on it), as its
    config.json recorded it. None for a run with no checkpoint or a finished one: those start on any count."""
    if (folder / RESULT).is_file() or not any((folder / CHECKPOINTS).glob("e*-s*.safetensors")):
        return None
    return recorded_threads(read_record(folder))


def keep_aside(folder: Path) -> Path:
    """Rename folder to the first free FOLDER.oldN (--restart keeps what a user ran before)."""
    n = 1
    while folder.with_name(f"{folder.name}.old{n}").exists():
        n += 1
    target = folder.with_name(f"{folder.name}.old{n}")
    with RunLock(folder):  # never from under a running process
        os.rename(folder, target)
    return target


def make_dir(folder: Path) -> None:
    """The run folder, for its lock; nothing inside it until the lock is held."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RotnetError(f"output directory {folder} is not writable ({e.strerror or e})") from None


def refuse_other_data(folder: Path, data: Dataset) -> None:
    """A run resumes, or is reused, only on the data it was trained on."""
    record = read_record(folder)
    old = (record or {}).get("dataset")
    if not isinstance(old, dict):
        return
    diff = data_diff({"root": record.get("data_root"), **old}, {"root": data.root, **data.fingerprint})
    if diff:
        raise RotnetError(
            f"{folder} was trained on other data ({'; '.join(diff[:4])}{' ...' if len(diff) > 4 else ''}); "
            "use its --data-root, or --restart to start over (the old run is kept)"
        )


def save_state(folder: Path, cfg: RunConfig, engine: Engine, state: LoopState) -> None:
    """Checkpoint (model, optimizer, position, running sums, history), then metrics.jsonl from that history."""
    opt_tensors, opt_meta = ckpt.optimizer_to_tensors(engine.optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in engine.model.state_dict().items()}
    tensors |= {f"optim.{k}": v for k, v in opt_tensors.items()} | {"loop.sums": state.sums}
    meta = {
        "config": cfg.to_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "seconds": state.seconds,
        "history": state.history,
        "optimizer": opt_meta,
        "scaler": engine.scaler.state_dict() if engine.scaler is not None else None,
    }
    ckpt.save_checkpoint(folder / CHECKPOINTS, state.epoch, state.step, tensors, meta)
    write_metrics(folder, state)


def write_metrics(folder: Path, state: LoopState) -> None:
    ckpt.atomic_write_text(folder / METRICS, "".join(json.dumps(r) + "\n" for r in state.history))


def restore_state(folder: Path, cfg: RunConfig, engine: Engine) -> LoopState | None:
    found = ckpt.load_latest_checkpoint(folder / CHECKPOINTS)
    if found is None:
        return None
    tensors, meta, path = found
    diff = config_diff(meta["config"], cfg.to_dict())
    if diff:
        raise RotnetError(f"checkpoint {path} belongs to another run ({'; '.join(diff)})")
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


def train_subset(cfg: RunConfig, data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    if not cfg.train_per_class:
        return data.train_images, data.train_labels
    idx = balanced_subset(data.train_labels, cfg.train_per_class, cfg.seed)
    return data.train_images[idx], data.train_labels[idx]


def build_engine(cfg: RunConfig, model: nn.Module, rt: Runtime, norm: tuple) -> Engine:
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


def epoch_evaluator(cfg: RunConfig, norm: tuple, images, labels, test_images, test_labels):
    """The metrics of an epoch end: test accuracy (and kNN accuracy every knn_every epochs and after the last, on
    labeled data)."""
    kw = prediction_options(cfg, norm)
    knn = cfg.knn_every and len(labels) and int(labels.min()) >= 0

    def evaluate(m: nn.Module, epoch: int) -> dict:
        t = time.perf_counter()
        pred = predict(m, test_images, cfg.task, **kw)
        out = {
            "test_acc": accuracy(pred, test_labels, cfg.task),
            "eval_images_per_s": pred.numel() / (time.perf_counter() - t),
        }
        if knn and (epoch % cfg.knn_every == 0 or epoch == cfg.epochs):
            out["knn_acc"] = knn_monitor(m, images, labels, test_images, test_labels, **kw)
        return out

    return evaluate


def write_record(folder: Path, cfg: RunConfig, data: Dataset, rt: Runtime, init_info: dict, resumed: bool) -> None:
    """config.json: the resolved configuration, the data's fingerprint, where the weights came from, provenance."""
    record = {
        "config": cfg.to_dict(),
        **provenance(rt.device, rt.command),
        **init_info,
        "data_root": data.root,
        "dataset_checksums_match": data.checksums_match,
        "dataset": data.fingerprint,
        "normalization": dict(zip(("mean", "std"), map(list, normalization(cfg, data)), strict=True)),
        "resumed": resumed,
    }
    first = read_json(folder / CONFIG) if resumed else None
    if isinstance(first, dict):  # keep the first start's provenance, add this one's
        record = first | {"resumes": [*first.get("resumes", []), provenance(rt.device, rt.command)]}
    record["world_size"] = rt.world.size
    ckpt.atomic_write_text(folder / CONFIG, json.dumps(record, indent=2) + "\n")


def run(cfg: RunConfig, data: Dataset, rt: Runtime, source: Source | None = None, log=print) -> dict:
    """Train one experiment into its run folder (resuming if a checkpoint is there); return its result."""
    world = rt.world
    log = log if world.is_main else (lambda *_: None)  # one voice, and only rank 0 writes files
    folder = run_dir(rt.runs_root, cfg)
    if (folder / RESULT).is_file() and not rt.restart:
        refuse_changed_config(folder, cfg)
        refuse_other_data(folder, data)
        refuse_other_source(folder, cfg, rt.runs_root, source)
        result = read_json(folder / RESULT)
        if not isinstance(result, dict):
            raise RotnetError(f"{folder / RESULT} is unreadable; use --restart to train this run again")
        log(f"{folder}: already finished; reusing it")
        return result
    classes = outputs(cfg, data)  # before any folder is made: classification needs labels
    lock = None
    if world.is_main:
        if rt.restart and folder.exists():
            log(f"{folder}: kept the previous run as {keep_aside(folder).name}")
        created = not folder.exists()
        make_dir(folder)
        lock = RunLock(folder).acquire()
    try:
        barrier()
        if world.is_main:
            refuse_changed_config(folder, cfg)  # again, under the lock: another process may have started it
            refuse_other_data(folder, data)
        try:
            model, init_info = init_model(cfg, rt.runs_root, classes, source)
        except RotnetError:
            if world.is_main and created:  # nothing of a run that never started is left behind
                lock.release()
                shutil.rmtree(folder, ignore_errors=True)
            raise
        engine = build_engine(cfg, model, rt, normalization(cfg, data))
        state = restore_state(folder, cfg, engine)
        resumed, threads = state is not None, None
        if state is None:
            state = LoopState()
        else:
            started = resume_threads(folder) if rt.device.type == "cpu" and world.size == 1 else None
            threads = started if started != torch.get_num_threads() else None
            on = f" on {threads_text(threads)}, as the run started" if threads else ""
            log(f"{folder}: resuming at epoch {state.epoch + 1}, step {state.step}{on}")
        with cpu_threads(threads):  # CPU sums depend on the thread count: keep the one the run started with
            if world.is_main:
                write_record(folder, cfg, data, rt, init_info, resumed)
            sinks = Loggers(rt.loggers, folder, cfg, resumed) if world.is_main and rt.loggers else None
            return train_and_finish(cfg, data, rt, folder, engine, state, log, sinks)
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
    rt: Runtime,
    folder: Path,
    engine: Engine,
    state: LoopState,
    log,
    sinks: Loggers | None = None,
) -> dict:
    world = rt.world
    images, labels, test_images, test_labels = device_data(cfg, data, rt.device)
    pred_kw = prediction_options(cfg, engine.norm)
    evaluate = epoch_evaluator(cfg, engine.norm, images, labels, test_images, test_labels)

    last = time.monotonic()

    def save(s: LoopState) -> None:
        """A checkpoint mid-epoch (by steps or on a stop), at the last epoch, or once checkpoint_minutes passed; at
        other epoch ends only metrics.jsonl, so that a long run of short epochs doesn't write one file per epoch."""
        nonlocal last
        if not world.is_main:
            return
        if sinks and not s.step:
            sinks.epoch(s.history)
        stopping = rt.stop is not None and rt.stop.requested
        due = s.step or s.epoch >= cfg.epochs or stopping or time.monotonic() - last >= rt.checkpoint_minutes * 60
        if due:
            save_state(folder, cfg, engine, s)
            last = time.monotonic()
        else:
            write_metrics(folder, s)

    started = time.perf_counter()
    history = fit(
        cfg,
        engine,
        images,
        labels,
        state,
        Hooks(evaluate, save, log, sinks.progress if sinks else None),
        checkpoint_every=rt.checkpoint_every,
        stop=rt.stop,
        world=world,
    )
    model = engine.model
    agree = ranks_agree(model)
    if not agree:
        raise RotnetError("the ranks ended with different weights; this is a bug, please report it")
    if not world.is_main:
        barrier()  # rank 0 writes the final outputs
        return json.loads((folder / RESULT).read_text())

    # Final outputs: weights that load into plain torchvision, and what the report needs without the data.
    classes = list(data.class_names) if cfg.task == "classification" else ["0", "90", "180", "270"]
    ckpt.save_tensors(
        folder / WEIGHTS, model.state_dict(), weights_meta(cfg, engine.norm, classes, test_images.shape[-1])
    )
    pred = predict(model, test_images, cfg.task, **pred_kw)
    ckpt.save_tensors(folder / EXAMPLES, {"images": data.test_images[:8].clone(), "pred": pred[:8]})
    result = {
        "experiment": cfg.experiment,
        "arch": cfg.arch,
        "seed": cfg.seed,
        "task": cfg.task,
        "test_acc": history[-1]["test_acc"],
        "epochs": len(history),
        "train_seconds": sum(r["seconds"] for r in history),
        "wall_seconds": time.perf_counter() - started,
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
    ckpt.atomic_write_text(folder / RESULT, json.dumps(result, indent=2) + "\n")
    (folder / FAILED).unlink(missing_ok=True)  # an earlier attempt's mark; it finished now
    ckpt.prune_checkpoints(folder / CHECKPOINTS, rt.keep_checkpoints)
    if sinks:
        sinks.finish(result)
    n = len(history)
    log(f"{folder}: test accuracy {result['test_acc']:.2f}% after {n} epoch{'s' * (n != 1)}")
    barrier()
    return result
