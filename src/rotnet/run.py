"""One run on disk: its directory, configuration check, initialization, resume, and final outputs."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rotnet import checkpoint as ckpt
from rotnet.config import RunConfig
from rotnet.data import Cifar10, balanced_subset
from rotnet.distributed import World, barrier, init_from_env, ranks_agree
from rotnet.errors import RotnetError
from rotnet.features import extract, knn_accuracy
from rotnet.models import build_model, check_keys, set_trainable, transfer_state
from rotnet.provenance import provenance
from rotnet.seeds import derive_seed
from rotnet.train import LoopState, StopFlag, accuracy, fit, predict

CONFIG, METRICS, WEIGHTS, RESULT, EXAMPLES = (
    "config.json",
    "metrics.jsonl",
    "model.safetensors",
    "result.json",
    "examples.safetensors",
)


@dataclass(frozen=True)
class Runtime:
    """How to run, as opposed to what to run: nothing here changes a result."""

    device: torch.device
    runs_root: Path
    checkpoint_every: int = 0  # also checkpoint every N steps (0: epoch ends only)
    restart: bool = False  # keep an existing run under a new name and start over
    stop: StopFlag | None = None
    world: World = World()  # torchrun ranks (one process per device)


def run_dir(runs_root: Path, cfg: RunConfig) -> Path:
    """ROOT/ARCH/EXPERIMENT/seedN; a class-balanced subset run is EXPERIMENT@Npc (label efficiency)."""
    name = cfg.experiment + (f"@{cfg.train_per_class}pc" if cfg.train_per_class else "")
    return Path(runs_root) / cfg.arch / name / f"seed{cfg.seed}"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise RotnetError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RotnetError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def setup_device(name: str) -> tuple[torch.device, World]:
    """The device for this process and its place among torchrun's ranks (a world of one without torchrun)."""
    world = init_from_env(name)
    device = resolve_device(name)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    return device, world


def config_diff(old: dict, new: dict) -> list[str]:
    """The keys whose values differ. A key the old run lacks was added to rotnet later, with a default that keeps
    the earlier behaviour, so it counts as that default."""
    old = RunConfig().to_dict() | old
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def refuse_changed_config(folder: Path, cfg: RunConfig) -> None:
    """Raise RotnetError naming the keys that differ if folder holds a run of another configuration."""
    config_file = folder / CONFIG
    if not config_file.is_file():
        return
    try:
        old = json.loads(config_file.read_text())["config"]
    except (json.JSONDecodeError, KeyError, OSError):
        raise RotnetError(f"{config_file} is unreadable; move the run away or use --restart") from None
    diff = config_diff(old, cfg.to_dict())
    if diff:
        raise RotnetError(
            f"{folder} holds a run with a different configuration ({'; '.join(diff)}); "
            "use --restart to start over (the old run is kept), or another --runs-root"
        )


def prepare_dir(folder: Path, cfg: RunConfig, restart: bool) -> None:
    """Create the run folder, refusing a changed config; with restart, keep the old run under a new name."""
    if restart and folder.exists():
        n = 1
        while folder.with_name(f"{folder.name}.old{n}").exists():
            n += 1
        os.rename(folder, folder.with_name(f"{folder.name}.old{n}"))
    refuse_changed_config(folder, cfg)
    try:
        (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RotnetError(f"output directory {folder} is not writable ({e.strerror or e})") from None


def rotation_weights_path(runs_root: Path, cfg: RunConfig) -> Path:
    if cfg.init_path:
        return Path(cfg.init_path)
    return run_dir(runs_root, RunConfig(experiment="rotation", arch=cfg.arch, seed=cfg.seed)) / WEIGHTS


def init_model(cfg: RunConfig, runs_root: Path) -> tuple[nn.Module, dict]:
    """A fresh model, seeded; for init="rotation", every weight but fc from the rotation run."""
    torch.manual_seed(derive_seed("init", cfg.seed))
    model = build_model(cfg.arch, cfg.num_classes, cfg.stem)
    info: dict = {"init": cfg.init}
    if cfg.init == "rotation":
        path = rotation_weights_path(runs_root, cfg)
        if not path.is_file():
            how = (
                "check the --init path"
                if cfg.init_path
                else (
                    f"make them with: rotnet train rotation --arch {cfg.arch} --seed {cfg.seed} --runs-root {runs_root}"
                )
            )
            raise RotnetError(f"no rotation weights at {path}; {how}")
        source, meta = ckpt.load_tensors(path)
        src_cfg = meta.get("config", {})
        if src_cfg and src_cfg.get("task") != "rotation":
            raise RotnetError(f"{path} holds weights of a {src_cfg.get('task')} run, not of a rotation run")
        model.load_state_dict(transfer_state(source, model))
        info |= {"init_weights": str(path), "init_sha256": ckpt.digest(source)}
    return model, info


def build_optimizer(cfg: RunConfig, params: list[nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    # fused kernels: one launch for all parameters on a GPU instead of several per tensor
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        **fused,
    )


def save_state(
    folder: Path,
    cfg: RunConfig,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    state: LoopState,
) -> None:
    """Checkpoint (model, optimizer, position, running sums, history), then metrics.jsonl from that history."""
    opt_tensors, opt_meta = ckpt.optimizer_to_tensors(opt.state_dict())
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"optim.{k}": v for k, v in opt_tensors.items()} | {"loop.sums": state.sums}
    meta = {
        "config": cfg.to_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "seconds": state.seconds,
        "history": state.history,
        "optimizer": opt_meta,
        "scaler": scaler.state_dict() if scaler is not None else None,
    }
    ckpt.save_checkpoint(folder / "checkpoints", state.epoch, state.step, tensors, meta)
    ckpt.atomic_write_text(folder / METRICS, "".join(json.dumps(r) + "\n" for r in state.history))


def restore_state(
    folder: Path,
    cfg: RunConfig,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> LoopState | None:
    found = ckpt.load_latest_checkpoint(folder / "checkpoints")
    if found is None:
        return None
    tensors, meta, path = found
    diff = config_diff(meta.get("config", {}), cfg.to_dict())
    if diff:
        raise RotnetError(f"checkpoint {path} belongs to another run ({'; '.join(diff)})")
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    check_keys(weights, model.state_dict(), f"checkpoint {path.name}")
    model.load_state_dict(weights)
    opt_tensors = {k.removeprefix("optim."): v for k, v in tensors.items() if k.startswith("optim.")}
    opt.load_state_dict(ckpt.optimizer_from_tensors(opt_tensors, meta["optimizer"]))
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    return LoopState(meta["epoch"], meta["step"], tensors["loop.sums"], meta["seconds"], meta["history"])


def train_subset(cfg: RunConfig, data: Cifar10) -> tuple[torch.Tensor, torch.Tensor]:
    if not cfg.train_per_class:
        return data.train_images, data.train_labels
    idx = balanced_subset(data.train_labels, cfg.train_per_class, cfg.seed)
    return data.train_images[idx], data.train_labels[idx]


def confusion(pred: torch.Tensor, target: torch.Tensor, k: int) -> list[list[int]]:
    return torch.bincount(target.reshape(-1) * k + pred.reshape(-1), minlength=k * k).view(k, k).tolist()


def run(cfg: RunConfig, data: Cifar10, rt: Runtime, log=print) -> dict:
    """Train one experiment into its run folder (resuming if a checkpoint is there); return its result."""
    world = rt.world
    log = log if world.is_main else (lambda *_: None)  # one voice, and only rank 0 writes files
    folder = run_dir(rt.runs_root, cfg)
    if (folder / RESULT).is_file() and not rt.restart:
        refuse_changed_config(folder, cfg)
        log(f"{folder}: already finished; reusing it")
        return json.loads((folder / RESULT).read_text())
    if world.is_main:
        prepare_dir(folder, cfg, rt.restart)
    barrier()
    device = rt.device
    model, init_info = init_model(cfg, rt.runs_root)
    if world.size > 1 and cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same parameter names: checkpoints still load
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    params = set_trainable(model, cfg.trainable)
    opt = build_optimizer(cfg, params, device)
    scaler = torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None
    state = restore_state(folder, cfg, model, opt, scaler)
    resumed = state is not None
    if state is None:
        state = LoopState()
    else:
        log(f"{folder}: resuming at epoch {state.epoch + 1}, step {state.step}")
    record = {
        "config": cfg.to_dict(),
        **provenance(device),
        **init_info,
        "data_root": data.root,
        "dataset_checksums_match": data.checksums_match,
        "dataset": data.fingerprint,
        "resumed": resumed,
    }
    config_path = folder / CONFIG
    if resumed and config_path.is_file():  # keep the first start's provenance, add this one's
        first = json.loads(config_path.read_text())
        record = first | {"resumes": [*first.get("resumes", []), provenance(device)]}
    record["world_size"] = world.size
    if world.is_main:
        ckpt.atomic_write_text(config_path, json.dumps(record, indent=2) + "\n")

    images, labels = train_subset(cfg, data)
    images, labels = images.to(device), labels.to(device)
    test_images, test_labels = data.test_images.to(device), data.test_labels
    pred_kw = {
        "batch_size": cfg.eval_batch_size,
        "precision": cfg.precision,
        "channels_last": cfg.channels_last,
    }

    def evaluate(m: nn.Module, epoch: int) -> dict:
        t = time.perf_counter()
        pred = predict(m, test_images, cfg.task, **pred_kw)
        out = {
            "test_acc": accuracy(pred, test_labels, cfg.task),
            "eval_images_per_s": pred.numel() / (time.perf_counter() - t),
        }
        if cfg.knn_every and (epoch % cfg.knn_every == 0 or epoch == cfg.epochs):
            out["knn_acc"] = knn_monitor(m, images, labels, test_images, test_labels, cfg)
        return out

    forward = model
    if world.size > 1:  # averages gradients across ranks; broadcasts rank 0's buffers (BN statistics) each step
        forward = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    forward = torch.compile(forward) if cfg.compile else forward
    started = time.perf_counter()
    history = fit(
        cfg,
        model,
        opt,
        images,
        labels,
        evaluate,
        state,
        lambda s: save_state(folder, cfg, model, opt, scaler, s) if world.is_main else None,
        checkpoint_every=rt.checkpoint_every,
        stop=rt.stop,
        forward=forward,
        scaler=scaler,
        log=log,
        world=world,
    )
    agree = ranks_agree(model)
    if not agree:
        raise RotnetError("the ranks ended with different weights; this is a bug, please report it")
    if not world.is_main:
        barrier()  # rank 0 writes the final outputs
        return json.loads((folder / RESULT).read_text())

    # Final outputs: weights that load into plain torchvision, and what the report needs without the data.
    ckpt.save_tensors(folder / WEIGHTS, model.state_dict(), {"config": cfg.to_dict()})
    pred = predict(model, test_images, cfg.task, **pred_kw)
    k = cfg.num_classes
    target = torch.arange(4).expand_as(pred) if cfg.task == "rotation" else test_labels
    ckpt.save_tensors(folder / EXAMPLES, {"images": data.test_images[:8], "pred": pred[:8]})
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
        "confusion": confusion(pred, target, k),
        "world_size": world.size,
        "ranks_agree": agree,
        "class_names": list(data.class_names) if cfg.task == "classification" else ["0", "90", "180", "270"],
    }
    ckpt.atomic_write_text(folder / RESULT, json.dumps(result, indent=2) + "\n")
    log(f"{folder}: test accuracy {result['test_acc']:.2f}% after {len(history)} epochs")
    barrier()
    return result


def knn_monitor(model: nn.Module, train_images, train_labels, test_images, test_labels, cfg: RunConfig) -> float:
    """Weighted kNN (k=200, cosine, T=0.1) accuracy of penultimate (global-pooled layer4) features against the
    CIFAR-10 class labels, whatever the task: how linearly usable the features are, as pretraining goes."""
    kw = {
        "stages": ("layer4",),
        "batch_size": cfg.eval_batch_size,
        "precision": cfg.precision,
        "channels_last": cfg.channels_last,
    }
    train = extract(model, train_images, **kw)["layer4"]
    test = extract(model, test_images, **kw)["layer4"]
    return knn_accuracy(train, train_labels.cpu(), test, test_labels.cpu())


def install_stop_handlers(stop: StopFlag) -> None:
    """First Ctrl-C / SIGTERM: finish the current step, save, exit. A second Ctrl-C stops at once."""

    def handler(signum, frame):
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
