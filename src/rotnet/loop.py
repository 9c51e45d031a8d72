"""One training loop for every experiment: a task only decides how a batch becomes (inputs, targets)."""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from rotnet.augment import REFERENCE_NORM, rotate, to_input, train_augment
from rotnet.checkpoint import digest
from rotnet.config import RunConfig
from rotnet.distributed import World, all_reduce, shard
from rotnet.errors import Interrupted, NonFiniteLoss
from rotnet.models import autocast, train_mode
from rotnet.seeds import generator
from rotnet.signals import StopFlag


@dataclass
class LoopState:
    """Where training stands: the next (epoch, step) to run, and the current epoch's running sums."""

    epoch: int = 0
    step: int = 0
    sums: torch.Tensor = field(default_factory=lambda: torch.zeros(3, dtype=torch.float64))  # loss, correct, n
    seconds: float = 0.0  # training time of the current epoch so far (for images/s)
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Engine:
    """What trains: `model` is what gets updated and saved; `forward` is what gets called (a compiled or
    DistributedDataParallel wrapper of it, or the model itself); `scaler` only for fp16; `norm` the (mean, std)
    that turns uint8 images into its inputs."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    forward: nn.Module | None = None
    scaler: torch.amp.GradScaler | None = None
    norm: tuple = REFERENCE_NORM


@dataclass(frozen=True)
class Hooks:
    """What the loop calls out to: metrics at an epoch end, saving a checkpoint, a line of log."""

    evaluate: Callable[[nn.Module, int], dict]  # (model, epochs done) -> {"test_acc": ..., ...}
    save: Callable[[LoopState], None]
    log: Callable[[str], None] = print
    progress: Callable[[int, dict], None] | None = None  # (global step, running scalars) every 20 steps


def lr_at(cfg: RunConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate as a pure function of position. "step" is the reference's StepLR(step_size=10, gamma=0.1);
    "cosine" anneals per step to 0 over the run (CosineAnnealingLR with T_max = all steps)."""
    if cfg.schedule == "step":
        return cfg.lr * cfg.lr_gamma ** (epoch // cfg.lr_step_epochs)
    t = (epoch * steps_per_epoch + step) / (cfg.epochs * steps_per_epoch)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def build_optimizer(cfg: RunConfig, params: list[nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    # fused kernels: one launch for all parameters on a GPU instead of several per tensor
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, **fused
    )


def make_batch(
    cfg: RunConfig, images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, norm: tuple = REFERENCE_NORM
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (B, 3, H, W) and class labels -> normalized inputs and targets for cfg.task."""
    images = train_augment(images, gen)
    if cfg.task == "rotation":
        if cfg.rotations_per_image == 4:  # RotNet: all four rotations of each image in the same batch
            b = images.shape[0]
            images = images.repeat_interleave(4, dim=0)
            targets = torch.arange(4, device=images.device).repeat(b)
        else:  # the reference: one random rotation per image
            targets = torch.randint(0, 4, (images.shape[0],), generator=gen, device=gen.device)
        images = rotate(images, targets)
    else:
        targets = labels
    return to_input(images, cfg.channels_last, norm), targets


def train_step(
    forward: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    precision: str,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on CrossEntropy (the report's criterion); returns the loss and logits, unread."""
    with autocast(inputs.device, precision):
        logits = forward(inputs)
        loss = nn.functional.cross_entropy(logits.float(), targets)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:  # fp16 only: scale the loss so small gradients don't underflow
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss, logits


def take(images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """images[idx] on idx's device: a gather there when the images live there, else a gather on the host (a memory
    map too large for the device) copied over from pinned memory."""
    if images.device == idx.device:
        return images[idx]
    batch = images[idx.cpu()]
    return batch.pin_memory().to(idx.device, non_blocking=True) if idx.device.type == "cuda" else batch.to(idx.device)


SYNC_EVERY = 20  # steps between two reads of the device's flags and sums (one host sync; the bar's refresh too)


def is_tty() -> bool:
    return sys.stdout.isatty()


@dataclass(frozen=True)
class Control:
    """What a loop acts on besides the data: torchrun's world, a stop request, step checkpoints, and a display
    callback (steps done, running scalars) called at each flag read; none of them changes a number."""

    world: World = field(default_factory=World)
    stop: StopFlag = field(default_factory=StopFlag)
    checkpoint_every: int = 0
    display: Callable[[int, dict], None] | None = None


def smallest_step(cfg: RunConfig, n: int, ranks: int = 1) -> int:
    """The fewest samples one rank's step of train_one_epoch holds in an epoch of n images: the last, smaller batch
    (or a whole one), times the rotations of each image, strided over the ranks as `shard` does."""
    last = n - (math.ceil(n / cfg.batch_size) - 1) * cfg.batch_size
    per_image = cfg.rotations_per_image if cfg.task == "rotation" else 1
    return last * per_image // ranks


def train_one_epoch(cfg: RunConfig, engine: Engine, images, labels, state: LoopState, hooks: Hooks, ctl: Control):
    """Train epoch `state.epoch` from `state.step` to its end; return (last lr, global sums [loss x n, correct, n],
    training seconds, whether a stop was requested) and leave `state` at the epoch's last step. Every SYNC_EVERY
    steps, at checkpoint_every and at the end, the flags are read on every rank alike, whatever the display: a
    non-finite loss raises NonFiniteLoss (naming the first bad step), a stop request saves and raises Interrupted.

    Under torchrun every rank builds the same global batch and takes its own strided shard of it, so the data a run
    sees doesn't depend on the number of ranks and a checkpoint resumes under any number of them.
    """
    model, world, stop = engine.model, ctl.world, ctl.stop
    forward = model if engine.forward is None else engine.forward  # not `or`: a compiled module refuses len()
    device = next(model.parameters()).device
    n, epoch = len(images), state.epoch
    steps = math.ceil(n / cfg.batch_size)  # the reference's DataLoader keeps the last, smaller batch
    order = torch.randperm(n, generator=generator(device, "shuffle", cfg.seed, epoch), device=device)
    # This rank's running sums; a resumed epoch's global sums restart on rank 0 only, so the ranks' sum is right.
    sums = state.sums.to(device) if world.is_main else torch.zeros(3, dtype=torch.float64, device=device)
    first_bad = torch.full((), -1, device=device)
    train_mode(model, cfg.freeze_bn)
    started = time.perf_counter() - state.seconds
    for step in range(state.step, steps):
        lr = lr_at(cfg, epoch, step, steps)
        for group in engine.optimizer.param_groups:
            group["lr"] = lr
        idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        gen = generator(device, "augment", cfg.seed, epoch, step)
        inputs, targets = make_batch(cfg, take(images, idx), take(labels, idx), gen, engine.norm)
        inputs, targets = shard(inputs, world), shard(targets, world)
        loss, logits = train_step(forward, engine.optimizer, inputs, targets, cfg.precision, engine.scaler)
        # Accumulate on the device; nothing here waits for the device (no .item() per step).
        b = targets.numel()
        detached = loss.detach()
        sums += torch.stack(
            [
                detached.double() * b,
                (logits.argmax(1) == targets).sum().double(),
                detached.new_full((), b, dtype=torch.float64),  # a fill kernel, not a host copy
            ]
        )
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(detached), step, first_bad)
        done = step + 1
        due_ckpt = ctl.checkpoint_every and done % ctl.checkpoint_every == 0
        if not (done % SYNC_EVERY == 0 or done == steps or due_ckpt or (world.size == 1 and stop.requested)):
            continue
        flags = all_reduce(torch.stack([first_bad.double(), torch.tensor(float(stop.requested), device=device)]), "max")
        bad, stopping = flags.tolist()
        if bad >= 0:
            raise NonFiniteLoss(epoch, int(bad))
        total = all_reduce(sums).cpu()
        elapsed = time.perf_counter() - started
        if ctl.display:
            t = total.tolist()
            running = {
                "loss": t[0] / t[2],
                "acc": 100 * t[1] / t[2],
                "lr": lr,
                "images_per_s": t[2] / max(elapsed, 1e-9),
            }
            ctl.display(done, running)
        if done < steps:
            state.step, state.sums, state.seconds = done, total, elapsed
            if stopping:
                hooks.save(state)
                raise Interrupted(f"stopped at epoch {epoch + 1}, step {done}", stop.signum)
            if due_ckpt:
                hooks.save(state)
    return lr, total.tolist(), time.perf_counter() - started, stopping


def fit(
    cfg: RunConfig,
    engine: Engine,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    state: LoopState,
    hooks: Hooks,
    *,
    checkpoint_every: int = 0,
    stop: StopFlag | None = None,
    world: World | None = None,
    until: int | None = None,
) -> list[dict]:
    """Train from `state` to epoch `until` (cfg.epochs when None), one `train_one_epoch` at a time. At each epoch end:
    hooks.evaluate (every eval_every epochs and after the last), append the epoch's record (with the sha256 of the
    weights it made) to state.history, hooks.save(state). Also save every `checkpoint_every` steps, and before
    returning on a stop request. Shows a progress bar on a terminal."""
    world = world or World()
    steps = math.ceil(len(train_images) / cfg.batch_size)
    timed = False  # the first steps' speed gives an estimate of the time left, once
    last = cfg.epochs if until is None else min(until, cfg.epochs)
    while state.epoch < last:
        epoch = state.epoch
        bar = tqdm(
            total=steps,
            initial=state.step,
            desc=f"{cfg.experiment} {epoch + 1}/{cfg.epochs}",
            disable=not (is_tty() and world.is_main),
            leave=False,
            dynamic_ncols=True,
        )

        def display(done: int, running: dict, epoch=epoch, bar=bar, first=state.step) -> None:
            nonlocal timed
            if not timed and world.is_main:
                timed = True
                left = ((last - epoch) * steps - done) * cfg.batch_size / max(running["images_per_s"], 1e-9)
                hooks.log(
                    f"{cfg.arch} {cfg.experiment}: about {duration(left)} of training left at "
                    f"{running['images_per_s']:.0f} img/s (timed over {done - first} steps; evaluation not included)"
                )
            bar.update(done - bar.n)
            bar.set_postfix(
                loss=f"{running['loss']:.3f}", acc=f"{running['acc']:.1f}", img_s=f"{running['images_per_s']:.0f}"
            )
            if hooks.progress and world.is_main and done % SYNC_EVERY == 0:
                hooks.progress(epoch * steps + done, running)

        ctl = Control(world, stop or StopFlag(), checkpoint_every, display)
        try:
            lr, (loss_sum, correct, count), train_seconds, stopping = train_one_epoch(
                cfg, engine, train_images, train_labels, state, hooks, ctl
            )
        finally:
            bar.close()
        started = time.perf_counter() - train_seconds
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / count, "train_acc": 100.0 * correct / count}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            record |= hooks.evaluate(engine.model, epoch + 1)
        # The weights this epoch made: verify compares a re-trained epoch by them, and the final weights to the last.
        record["weights_sha256"] = digest(engine.model.state_dict())
        record["images_per_s"] = count / train_seconds
        record["seconds"] = time.perf_counter() - started
        state.history.append(record)
        state.epoch, state.step, state.sums, state.seconds = epoch + 1, 0, torch.zeros(3, dtype=torch.float64), 0.0
        hooks.save(state)
        left = time_left(state.history, last - state.epoch) if state.epoch < last else None
        hooks.log(format_record(cfg, record) + (f" | about {duration(left)} left" if left is not None else ""))
        if stopping and state.epoch < last:
            raise Interrupted(f"stopped after epoch {epoch + 1}", ctl.stop.signum)
    return state.history


def time_left(history: list[dict], to_go: int, recent: int = 5) -> float | None:
    """Seconds the run's next `to_go` epochs take: the median of its last `recent` recorded epochs (evaluation
    included; earlier lives' too) times `to_go`. The median: an epoch spent stopped (SIGSTOP, a laptop asleep) would
    be the whole of a mean just after a resume. None when the record has no epoch seconds."""
    seconds = [h["seconds"] for h in history[-recent:] if isinstance(h.get("seconds"), int | float)]
    return statistics.median(seconds) * to_go if seconds else None


def plural(n: int, noun: str) -> str:
    """'1 epoch', '2 epochs'."""
    return f"{n} {noun}{'s' * (n != 1)}"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def format_record(cfg: RunConfig, r: dict) -> str:
    test = f" | test acc {r['test_acc']:.2f}%" if "test_acc" in r else ""
    test += f" knn {r['knn_acc']:.2f}%" if "knn_acc" in r else ""
    return (
        f"{cfg.arch} {cfg.experiment} epoch {r['epoch']}/{cfg.epochs}: lr {r['lr']:.2e} "
        f"train loss {r['train_loss']:.4f} acc {r['train_acc']:.2f}%{test} "
        f"| {r['images_per_s']:.0f} img/s, {r['seconds']:.1f}s"
    )
