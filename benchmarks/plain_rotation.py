"""The reference's rotation task written plainly, apart from rotnet's loop: a second implementation whose curve is set
beside a rotnet run's, to tell a property of the model (ResNet50's 60% after 70 epochs) from one of rotnet.

Only the reading of CIFAR-10 is rotnet's (its reader unpickles safely); the rest is what the reference describes, as a
torchvision user writes it: per-image PIL transforms in a DataLoader (RandomCrop(32, pad 4), flip, ToTensor,
Normalize), one random rotation per image by torch.rot90, the unmodified torchvision `ARCH(num_classes=4)`,
CrossEntropy, Adam lr 1e-3, StepLR(10, 0.1), batch 128. Test: every test image in all four rotations, as rotnet counts.

    python benchmarks/plain_rotation.py --arch resnet50 --epochs 20 --seed 0 --data-root DATA --device cuda \
        --out plain-r50-s0.json [--compare RUN]

One line per epoch; `--compare RUN` adds the rotnet run's test accuracy at the same epoch (its metrics.jsonl).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from rotnet.readers import load_cifar10

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


class RotatedCifar(Dataset):
    """Training images as the reference's CIFAR10 dataset serves them, each turned by a random multiple of 90°."""

    def __init__(self, images_hwc: np.ndarray):
        self.images = images_hwc
        self.transform = T.Compose(
            [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        k = random.randint(0, 3)
        return torch.rot90(self.transform(Image.fromarray(self.images[i])), k, dims=(1, 2)), k


def seed_worker(worker_id: int) -> None:
    random.seed(torch.initial_seed() % 2**32)  # each worker its own rotations, repeatable from --seed


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, images: torch.Tensor, device: torch.device) -> float:
    """Percent of the test images' four rotations whose rotation the model names."""
    model.eval()
    x = T.Normalize(MEAN, STD)(images.float() / 255)
    correct = 0
    for k in range(4):
        for batch in torch.split(torch.rot90(x, k, dims=(2, 3)), 1000):
            correct += (model(batch.to(device)).argmax(1) == k).sum().item()
    return 100 * correct / (4 * len(x))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", type=Path, required=True, help="folder holding cifar-10-batches-py")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--limit", type=int, default=0, help="train and test on the first N images only (a trial)")
    p.add_argument("--compare", type=Path, help="a rotnet run folder: its test accuracy beside each epoch")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    data = load_cifar10(args.data_root, download=False)
    train, test = data.train_images, data.test_images  # uint8 (N, 3, 32, 32)
    if args.limit:
        train, test = train[: args.limit], test[: args.limit]
    loader = DataLoader(
        RotatedCifar(train.permute(0, 2, 3, 1).numpy()),
        batch_size=128,
        shuffle=True,
        num_workers=args.workers,
        worker_init_fn=seed_worker,
        persistent_workers=args.workers > 0,
        pin_memory=device.type == "cuda",
    )
    model = getattr(torchvision.models, args.arch)(num_classes=4).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    theirs = {}
    if args.compare:
        lines = (args.compare / "metrics.jsonl").read_text().splitlines()
        theirs = {r["epoch"]: r["test_acc"] for r in map(json.loads, lines)}

    epochs = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        start, seen, correct, loss_sum = time.perf_counter(), 0, 0, 0.0
        lr = opt.param_groups[0]["lr"]
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen, correct = seen + len(y), correct + (out.argmax(1) == y).sum().item()
            loss_sum += loss.item() * len(y)
        sched.step()
        row = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_sum / seen,
            "train_acc": 100 * correct / seen,
            "test_acc": test_accuracy(model, test, device),
            "seconds": time.perf_counter() - start,
        }
        beside = f" | rotnet {theirs[epoch]:.2f} ({row['test_acc'] - theirs[epoch]:+.2f})" if epoch in theirs else ""
        print(
            f"{args.arch} seed {args.seed} epoch {epoch}/{args.epochs}: lr {lr:.0e} train loss {row['train_loss']:.4f}"
            f" acc {row['train_acc']:.2f}% | test acc {row['test_acc']:.2f}%{beside} | {row['seconds']:.1f}s",
            flush=True,
        )
        epochs.append(row)
        record = {"arch": args.arch, "seed": args.seed, "device": str(device), "torch": torch.__version__}
        args.out.write_text(json.dumps({**record, "epochs": epochs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
