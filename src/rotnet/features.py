"""Frozen features of a ResNet's stages, and the weighted kNN monitor of solo-learn and lightly."""

from __future__ import annotations

import torch
from torch import nn

from rotnet.train import autocast, to_input

STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")


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
) -> dict[str, torch.Tensor]:
    """Pooled features (N, C * pool * pool) of each stage for uint8 images (N, 3, 32, 32); no augmentation.
    pool=1 is global average pooling; pool=2 keeps a 2x2 spatial grid."""
    model.eval()
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {s: [] for s in stages}
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size].to(device), channels_last)
        with autocast(device, precision):
            outs = stage_outputs(model, x, stages)
        for s, v in outs.items():
            parts[s].append(nn.functional.adaptive_avg_pool2d(v.float(), pool).flatten(1).cpu())
    return {s: torch.cat(v) for s, v in parts.items()}


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int = 10,
    chunk: int = 1024,
) -> float:
    """Weighted kNN accuracy (%): cosine similarity, the k nearest training features vote with weight
    exp(sim / temperature) (Wu et al. 2018, as solo-learn and lightly monitor SSL pretraining)."""
    train = nn.functional.normalize(train_features.float(), dim=1)
    test = nn.functional.normalize(test_features.float(), dim=1)
    k = min(k, len(train))
    correct = 0
    for start in range(0, len(test), chunk):
        sim, idx = (test[start : start + chunk] @ train.T).topk(k, dim=1)  # (c, k)
        votes = torch.zeros(len(sim), num_classes).scatter_add_(1, train_labels[idx], (sim / temperature).exp())
        correct += (votes.argmax(1) == test_labels[start : start + chunk]).sum().item()
    return 100.0 * correct / len(test)
