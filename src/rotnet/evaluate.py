"""Evaluation, in one place: predictions and accuracy on the test set, confusion matrices, frozen features of a
ResNet's stages, and the weighted kNN monitor of solo-learn and lightly."""

from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from rotnet.augment import REFERENCE_NORM, to_input
from rotnet.models import autocast

STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    task: str,
    *,
    batch_size: int,
    precision: str,
    channels_last: bool,
    norm: tuple = REFERENCE_NORM,
) -> torch.Tensor:
    """Predicted labels for uint8 images (N, 3, H, W). For the rotation task every image is scored in all four
    rotations: the result is (N, 4), column k holding the prediction for the image rotated by k * 90 degrees."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="evaluating", unit="batch", leave=False, disable=None):
        x = images[start : start + batch_size].to(device, non_blocking=True)
        if task == "rotation":
            x = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])  # (4B, 3, H, W), k-major
        with autocast(device, precision):
            pred = model(to_input(x, channels_last, norm)).argmax(1)
        out.append(pred.view(4, -1).T if task == "rotation" else pred)
    return torch.cat(out).cpu()


def targets_for(pred: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
    """What each prediction should be: for rotation, column k's target is k."""
    return torch.arange(4).expand_as(pred) if task == "rotation" else labels


def accuracy(pred: torch.Tensor, labels: torch.Tensor, task: str) -> float:
    """Percent correct; for rotation, over all four rotations of every image."""
    return 100.0 * (pred == targets_for(pred, labels, task)).double().mean().item()


def confusion(pred: torch.Tensor, target: torch.Tensor, k: int) -> list[list[int]]:
    """k x k counts: row = true label, column = predicted."""
    return torch.bincount(target.reshape(-1) * k + pred.reshape(-1), minlength=k * k).view(k, k).tolist()


def stage_outputs(model: nn.Module, x: torch.Tensor, stages: tuple[str, ...] = STAGES) -> dict[str, torch.Tensor]:
    """Activations after conv1 (+bn1+relu) and after each of layer1..layer4 of a torchvision ResNet."""
    last = max(STAGES.index(s) for s in stages)  # no need to run the blocks after the last one asked for
    x = model.relu(model.bn1(model.conv1(x)))
    out = {"conv1": x}
    x = model.maxpool(x)
    for name in STAGES[1 : last + 1]:
        x = getattr(model, name)(x)
        out[name] = x
    return {k: out[k] for k in stages}


def grid(pool: int, shape: tuple[int, ...]) -> tuple[int, int]:
    """The pooling grid of a stage's (..., H, W) map: pool x pool, but never more than the map. Adaptive pooling to
    a larger grid copies values: `--pool 100` on 32 px images (layer4's map is 1x1) probed 10,000 copies of each
    feature, as "pooled 100x100"."""
    return min(pool, shape[-2]), min(pool, shape[-1])


@torch.inference_mode()
def extract(
    model: nn.Module,
    images: torch.Tensor,
    *,
    stages: tuple[str, ...] = STAGES,
    pool: int = 1,
    batch_size: int = 1024,
    precision: str = "fp32",
    channels_last: bool = True,
    norm: tuple = REFERENCE_NORM,
    desc: str = "",
) -> dict[str, torch.Tensor]:
    """Pooled features (N, C * h * w) of each stage for uint8 images (N, 3, H, W), (h, w) its `grid`; no
    augmentation. pool=1 is global average pooling; pool=2 keeps a 2x2 spatial grid. `desc`: a progress bar's name
    (none without)."""
    model.eval()
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {s: [] for s in stages}
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", leave=False, disable=None if desc else True):
        x = to_input(images[start : start + batch_size].to(device), channels_last, norm)
        with autocast(device, precision):
            outs = stage_outputs(model, x, stages)
        for s, v in outs.items():
            parts[s].append(nn.functional.adaptive_avg_pool2d(v.float(), grid(pool, v.shape)).flatten(1).cpu())
    return {s: torch.cat(v) for s, v in parts.items()}


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk: int = 1024,
) -> float:
    """Weighted kNN accuracy (%): cosine similarity, the k nearest training features vote with weight
    exp(sim / temperature) (Wu et al. 2018, as solo-learn and lightly monitor SSL pretraining)."""
    train = nn.functional.normalize(train_features.float(), dim=1)
    test = nn.functional.normalize(test_features.float(), dim=1)
    k = min(k, len(train))
    num_classes = num_classes or int(train_labels.max()) + 1
    correct = 0
    for start in range(0, len(test), chunk):
        sim, idx = (test[start : start + chunk] @ train.T).topk(k, dim=1)  # (c, k)
        votes = torch.zeros(len(sim), num_classes).scatter_add_(1, train_labels[idx], (sim / temperature).exp())
        correct += (votes.argmax(1) == test_labels[start : start + chunk]).sum().item()
    return 100.0 * correct / len(test)


def knn_monitor(
    model: nn.Module,
    train_images,
    train_labels,
    test_images,
    test_labels,
    *,
    batch_size: int,
    precision: str,
    channels_last: bool,
    norm: tuple = REFERENCE_NORM,
) -> float:
    """Weighted kNN (k=200, cosine, T=0.1) accuracy of penultimate (global-pooled layer4) features against the
    class labels, whatever the task: how linearly usable the features are, as pretraining goes."""
    kw = {"stages": ("layer4",), "batch_size": batch_size, "precision": precision, "channels_last": channels_last}
    kw["norm"] = norm
    train = extract(model, train_images, **kw)["layer4"]
    test = extract(model, test_images, **kw)["layer4"]
    return knn_accuracy(train, train_labels.cpu(), test, test_labels.cpu())
