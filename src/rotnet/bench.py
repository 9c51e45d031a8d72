"""`rotnet bench`: training images/s of (a) the model step alone, (b) rotnet's whole pipeline, (c) the reference's plain
pipeline (torchvision-style CIFAR10 dataset + PIL transforms + DataLoader), measured in one run on this machine."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from rotnet.augment import MEAN, STD
from rotnet.config import RunConfig
from rotnet.errors import RotnetError
from rotnet.evaluate import predict
from rotnet.experiments import EXPERIMENTS
from rotnet.files import atomic_write_text
from rotnet.loop import build_optimizer, make_batch, train_step
from rotnet.models import build_model, set_trainable
from rotnet.seeds import generator

TASKS = {"rotation": EXPERIMENTS["rotation"], "layer4": EXPERIMENTS["layer4-from-random"]}


class ReferenceCifar(Dataset):
    """What the reference's pipeline does per image: torchvision.datasets.CIFAR10.__getitem__ (HWC uint8 -> PIL image
    -> transform), then for the rotation task torch.rot90 by a random label."""

    def __init__(self, images_hwc, labels, rotation: bool):
        from torchvision import transforms as T

        self.images, self.labels, self.rotation = images_hwc, labels, rotation
        self.transform = T.Compose(
            [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        x = self.transform(Image.fromarray(self.images[i]))
        if self.rotation:
            k = random.randint(0, 3)
            return torch.rot90(x, k, dims=(1, 2)), k
        return x, int(self.labels[i])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, steps: int, warmup: int, batch: int, device: torch.device) -> float:
    """Images/s of `step(i)` over `steps` calls after `warmup` untimed ones."""
    for i in range(warmup):
        step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    sync(device)
    return steps * batch / (time.perf_counter() - start)


def classes(cfg: RunConfig) -> int:
    return 4 if cfg.task == "rotation" else 10  # CIFAR-10


def setup(cfg: RunConfig, device: torch.device):
    torch.manual_seed(0)
    model = build_model(cfg.arch, classes(cfg)).to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = build_optimizer(cfg, set_trainable(model, cfg.trainable), device)
    forward = torch.compile(model) if cfg.compile else model
    model.train()
    return model, forward, opt


def bench_model_only(cfg, device, steps, warmup) -> float:
    """(a) the ceiling: the same step on synthetic inputs already on the device."""
    model, forward, opt = setup(cfg, device)
    x = torch.randn(cfg.batch_size, 3, 32, 32, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x
    y = torch.randint(0, classes(cfg), (cfg.batch_size,), device=device)
    return timed(lambda i: train_step(forward, opt, x, y, cfg.precision), steps, warmup, cfg.batch_size, device)


def bench_rotnet(cfg, device, images, labels, steps, warmup) -> float:
    """(b) rotnet's pipeline exactly as `fit` runs it: resident uint8 data, batch augmentation, rotation, step."""
    model, forward, opt = setup(cfg, device)
    images, labels = images.to(device), labels.to(device)
    order = torch.randperm(len(images), generator=generator(device, "shuffle", 0, 0), device=device)

    def step(i):
        idx = batch_indices(order, i, cfg.batch_size)
        inputs, targets = make_batch(cfg, images[idx], labels[idx], generator(device, "augment", 0, 0, i))
        train_step(forward, opt, inputs, targets, cfg.precision)

    return timed(step, steps, warmup, cfg.batch_size, device)


def batch_indices(order: torch.Tensor, i: int, size: int) -> torch.Tensor:
    """Step i's images: consecutive batches of the permutation, wrapping round when the steps outrun the data, so
    every step holds `size` images, as the images/s count assumes (the steps after the data's end were short or
    empty)."""
    start = i * size % len(order)
    idx = order[start : start + size]
    return idx if len(idx) == size else torch.cat([idx, order[: size - len(idx)]])


def endless(loader: DataLoader):
    """The loader's batches, epoch after epoch (its workers kept), for as many steps as are timed."""
    while True:
        yield from loader


def bench_plain(cfg, device, images, labels, steps, warmup, workers) -> float:
    """(c) the reference's pipeline: per-image PIL transforms in a DataLoader, batches copied to the device; full
    batches only, so that each step holds the images it is counted for."""
    model, forward, opt = setup(cfg, device)
    dataset = ReferenceCifar(images.permute(0, 2, 3, 1).numpy(), labels.numpy(), cfg.task == "rotation")
    loader = endless(
        DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
        )
    )

    def step(i):
        x, y = next(loader)
        x = x.to(device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x
        train_step(forward, opt, x, y.to(device, non_blocking=True), cfg.precision)

    return timed(step, steps, warmup, cfg.batch_size, device)


def bench_eval(cfg, device, images) -> float:
    model, forward, _ = setup(cfg, device)
    images = images[:5000].to(device)
    kw = {"batch_size": cfg.eval_batch_size, "precision": cfg.precision, "channels_last": cfg.channels_last}
    predict(model, images[:1000], cfg.task, **kw)  # warm-up
    sync(device)
    start = time.perf_counter()
    pred = predict(model, images, cfg.task, **kw)
    return pred.numel() / (time.perf_counter() - start)


def load_images(data_root: Path | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The real training set if present, else random images of the same shape (throughput doesn't care)."""
    import warnings

    from rotnet.readers import load_cifar10

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = load_cifar10(data_root, download=False)
        return data.train_images, data.train_labels, "CIFAR-10"
    except RotnetError:
        gen = torch.Generator().manual_seed(0)
        return (
            torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=gen),
            torch.randint(0, 10, (50_000,), generator=gen),
            "synthetic",
        )


def run_bench(
    device: torch.device,
    *,
    steps: int,
    warmup: int,
    batch_size: int,
    precision: str,
    channels_last: bool,
    compile: bool,
    sweep: bool,
    data_root: Path | None,
    out: Path,
    archs: tuple[str, ...] = ("resnet18",),
) -> dict:
    """The main table for archs[0]; with more archs, each one's rotation step (model only and rotnet's pipeline) and
    its ratio to the first's, measured in the same run (how much longer a deeper model's epochs take here)."""
    images, labels, source = load_images(data_root)
    if not 2 <= batch_size <= len(images):  # batch norm cannot train on one image; a step cannot hold more than all
        raise RotnetError(f"--batch-size must be from 2 to the {len(images):,} training images; got {batch_size}")
    results: dict = {
        "device": str(device),
        "batch_size": batch_size,
        "steps": steps,
        "data": source,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "arch": archs[0],
        "tasks": {},
        "options": [],
        "archs": [],
    }
    speed = {"batch_size": batch_size, "precision": precision, "channels_last": channels_last, "compile": compile}
    for name, base in TASKS.items():
        cfg = replace(base, arch=archs[0], **speed)
        r = {
            "a_model_only": bench_model_only(cfg, device, steps, warmup),
            "b_rotnet": bench_rotnet(cfg, device, images, labels, steps, warmup),
            "c_plain_workers0": bench_plain(cfg, device, images, labels, steps, warmup, 0),
            "c_plain_workers2": bench_plain(cfg, device, images, labels, steps, warmup, 2),
            "eval": bench_eval(cfg, device, images),
        }
        r |= {
            "b/a": r["b_rotnet"] / r["a_model_only"],
            "b/c0": r["b_rotnet"] / r["c_plain_workers0"],
            "b/c2": r["b_rotnet"] / r["c_plain_workers2"],
        }
        results["tasks"][name] = r
        print(f"{name}: " + ", ".join(f"{k} {v:.2f}" if "/" in k else f"{k} {v:.0f}" for k, v in r.items()), flush=True)
    if sweep:  # each speed option on rotation pretraining, rotnet's pipeline (b)
        options = [("fp32", False, False), ("fp32", True, False), ("bf16", False, False), ("bf16", True, False)]
        options += [("fp32", True, True)]  # torch.compile last: it spends a minute or more compiling first
        for prec, cl, comp in options:
            cfg = replace(TASKS["rotation"], arch=archs[0], batch_size=batch_size)
            cfg = replace(cfg, precision=prec, channels_last=cl, compile=comp)
            ips = bench_rotnet(cfg, device, images, labels, steps, warmup)
            results["options"].append({"precision": prec, "channels_last": cl, "compile": comp, "b_rotnet": ips})
            print(f"option precision={prec} channels_last={cl} compile={comp}: {ips:.0f} img/s", flush=True)
    for arch in archs if len(archs) > 1 else ():
        cfg = replace(TASKS["rotation"], arch=arch, **speed)
        r = {"arch": arch, "a_model_only": bench_model_only(cfg, device, steps, warmup)}
        r["b_rotnet"] = bench_rotnet(cfg, device, images, labels, steps, warmup)
        first = results["archs"][0] if results["archs"] else r
        r["b_vs_first"] = r["b_rotnet"] / first["b_rotnet"]
        results["archs"].append(r)
        print(f"arch {arch}: rotation {r['a_model_only']:.0f} / {r['b_rotnet']:.0f} img/s", flush=True)
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    print(table(results))
    return results


def table(results: dict) -> str:
    lines = [
        f"training images/s, {results['arch']}, batch {results['batch_size']}, {results['device']}, "
        f"{results['threads']} threads, {results['data']} data",
        "",
        "| task | (a) model only | (b) rotnet | (c) plain, 0 workers | (c) plain, 2 workers | b/a | b/c0 | b/c2 "
        "| eval img/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["tasks"].items():
        lines.append(
            f"| {name} | {r['a_model_only']:.0f} | {r['b_rotnet']:.0f} | {r['c_plain_workers0']:.0f} | "
            f"{r['c_plain_workers2']:.0f} | {r['b/a']:.2f} | {r['b/c0']:.2f} | {r['b/c2']:.2f} | "
            f"{r['eval']:.0f} |"
        )
    if results["options"]:
        lines += ["", "| precision | channels_last | compile | (b) rotation img/s |", "|---|---|---|---|"]
        lines += [
            f"| {o['precision']} | {o['channels_last']} | {o['compile']} | {o['b_rotnet']:.0f} |"
            for o in results["options"]
        ]
    if results["archs"]:
        first = results["archs"][0]["arch"]
        lines += ["", f"| arch | (a) rotation, model only | (b) rotation, rotnet | b vs {first} |", "|---|---|---|---|"]
        lines += [
            f"| {r['arch']} | {r['a_model_only']:.0f} | {r['b_rotnet']:.0f} | {r['b_vs_first']:.2f}x |"
            for r in results["archs"]
        ]
    return "\n".join(lines)
