"""Training a run, the way `run` and `verify` both do it: how to run (`RunContext`), the model from the run's seed
and its source weights, its data on the device, and `train_epochs`, the one way epochs a..b are trained from a state."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from rotnet.config import RunConfig
from rotnet.data import Dataset, balanced_subset
from rotnet.distributed import World
from rotnet.errors import RotnetError
from rotnet.evaluate import accuracy, knn_monitor, predict
from rotnet.loggers import require_logger
from rotnet.loop import Engine, Hooks, LoopState, build_optimizer, fit
from rotnet.models import initial_model, set_trainable, transfer_state
from rotnet.signals import StopFlag


@dataclass(frozen=True)
class RunOptions:
    """How a run keeps its state and logs and how a GPU computes, declared once (the command line, the API, a parent
    `reproduce` and its job files all carry this): nothing here changes what a result is expected to be."""

    checkpoint_every: int = 0  # also checkpoint every N steps (0: never mid-epoch)
    checkpoint_minutes: float = 10.0  # at an epoch end, checkpoint once this long passed since the last (0: always)
    keep_checkpoints: int = 0  # checkpoints left once a run finished (two are kept while it runs; its weights stay)
    keep_epochs: tuple[int, ...] = ()  # epoch-end checkpoints always written and never pruned (verify --from-epoch)
    loggers: tuple[str, ...] = ()  # tensorboard, csv, wandb (metrics.jsonl is always written)
    restart: bool = False  # keep an existing run under a new name and start over
    deterministic: bool = True  # on a GPU, kernels that give the same bits again (slower); the CPU's always do

    def __post_init__(self):  # checked here, so the command line, the API and a job file are checked alike
        counts = {"keep_checkpoints": "--keep-checkpoints", "checkpoint_every": "--checkpoint-every"}
        for name, flag in counts.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise RotnetError(f"{flag} ({name}) must be a whole number, 0 or more; got {value!r}")
        minutes = self.checkpoint_minutes
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not 0 <= minutes < float("inf"):
            raise RotnetError(f"--checkpoint-minutes (checkpoint_minutes) must be 0 or more; got {minutes!r}")
        if any(not isinstance(e, int) or isinstance(e, bool) or e < 1 for e in self.keep_epochs):
            raise RotnetError(f"--keep-epoch (keep_epochs) must name epochs, 1 or more; got {list(self.keep_epochs)}")
        for name in self.loggers:  # a missing package is named now, before the data loads or a folder is made
            require_logger(name)

    @classmethod
    def from_dict(cls, d: dict) -> RunOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class RunContext:
    """How to run, as opposed to what to run: nothing here changes a result."""

    device: torch.device
    runs_root: Path
    run_options: RunOptions = RunOptions()
    command: str = ""  # the user's command, for provenance ("" = this process's argv)
    stop: StopFlag | None = None
    world: World = World()  # torchrun ranks (one process per device)


def init_model(cfg: RunConfig, classes: int, weights: tuple[dict, dict] | None) -> tuple[nn.Module, dict]:
    """A fresh model from the run's seed; for init="rotation", every weight but fc from the checked source weights
    (`check_run`'s)."""
    model = initial_model(cfg.arch, classes, cfg.stem, cfg.seed)
    if cfg.init != "rotation":
        return model, {"init": cfg.init}
    tensors, record = weights
    model.load_state_dict(transfer_state(tensors, model))
    return model, record


def build_engine(cfg: RunConfig, model: nn.Module, context: RunContext, norm: tuple) -> Engine:
    device, world = context.device, context.world
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


def train_subset(cfg: RunConfig, data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    if not cfg.train_per_class:
        return data.train_images, data.train_labels
    idx = balanced_subset(data.train_labels, cfg.train_per_class, cfg.seed)
    return data.train_images[idx], data.train_labels[idx]


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
        # labels, of two classes or more (checks.warn_without_knn says why none is logged otherwise)
        self.knn = cfg.knn_every and len(labels) and int(labels.min()) >= 0 and int(labels.max()) > int(labels.min())
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


@dataclass(frozen=True)
class Placed:
    """A run's data where it trains (`device_data`), and the evaluation of its epoch ends."""

    images: torch.Tensor
    labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    evaluate: EpochEvaluator


def place(cfg: RunConfig, data: Dataset, engine: Engine, device: torch.device) -> Placed:
    images, labels, test_images, test_labels = device_data(cfg, data, device)
    return Placed(
        images,
        labels,
        test_images,
        test_labels,
        EpochEvaluator(cfg, engine.norm, images, labels, test_images, test_labels),
    )


def train_epochs(
    cfg: RunConfig,
    engine: Engine,
    placed: Placed,
    state: LoopState,
    *,
    until: int | None = None,
    save=None,
    log=print,
    progress=None,
    context: RunContext | None = None,
) -> list[dict]:
    """Train epochs state.epoch+1 .. `until` (the run's last when None) from `state`: the one way epochs are trained,
    by a run (which saves, logs and may be stopped) and by verify (which compares what they made)."""
    hooks = Hooks(placed.evaluate, save or (lambda s: None), log, progress)
    return fit(
        cfg,
        engine,
        placed.images,
        placed.labels,
        state,
        hooks,
        until=until,
        checkpoint_every=context.run_options.checkpoint_every if context else 0,
        stop=context.stop if context else None,
        world=context.world if context else None,
    )
