"""Whole-batch augmentation as pure functions of uint8 tensors and an explicit torch.Generator.

These reproduce the reference's per-image PIL pipeline (RandomCrop(32, padding=4) -> RandomHorizontalFlip ->
ToTensor -> Normalize -> rotate) on a whole batch at once, on whatever device the batch lives.
"""

from __future__ import annotations

import functools

import torch

# The reference report's Normalize constants (the widely copied CIFAR-10 values from kuangliu/pytorch-cifar).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
REFERENCE_NORM = (MEAN, STD)


def random_crop(images: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """RandomCrop(H, padding): zero-pad each side, then cut an HxW window at a random offset per image."""
    b, _, h, w = images.shape  # (B, C, H, W)
    padded = torch.nn.functional.pad(images, (padding,) * 4)  # zeros, like PIL's fill=0 before ToTensor
    dy = torch.randint(0, 2 * padding + 1, (b, 1), generator=gen, device=gen.device)
    dx = torch.randint(0, 2 * padding + 1, (b, 1), generator=gen, device=gen.device)
    rows = (dy + torch.arange(h, device=images.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx + torch.arange(w, device=images.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    chans = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]  # (B, C, H, W)


def random_flip(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """RandomHorizontalFlip(p=0.5) per image."""
    flip = torch.rand(images.shape[0], generator=gen, device=gen.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def rotate(images: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate image i by k[i] * 90 degrees counter-clockwise (torch.rot90 with k = the rotation label).

    All four rotations are computed and one is gathered per image: no data-dependent indexing, so no
    host-device synchronisation on a GPU.
    """
    rotations = torch.stack([torch.rot90(images, r, dims=(2, 3)) for r in range(4)])  # (4, B, C, H, W)
    return rotations[k, torch.arange(images.shape[0], device=images.device)]


def unrotate(images: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Undo `rotate(images, k)`."""
    return rotate(images, (-k) % 4)


@functools.cache
def _scaled_stats(device: torch.device, dtype: torch.dtype, norm: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: a fresh host-to-device copy each step would make a GPU wait for the host.
    mean = torch.tensor(norm[0], dtype=dtype).view(1, 3, 1, 1) * 255
    std = torch.tensor(norm[1], dtype=dtype).view(1, 3, 1, 1) * 255
    return mean.to(device), std.to(device)


def normalize(images: torch.Tensor, norm: tuple = REFERENCE_NORM, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """ToTensor + Normalize(mean, std) with norm = (mean, std) on the 0-1 scale: uint8 (B, 3, H, W) -> float."""
    mean, std = _scaled_stats(images.device, dtype, (tuple(norm[0]), tuple(norm[1])))
    return (images.to(dtype) - mean) / std


def train_augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The reference's training transform before normalization, scaled to the image size: crop with size/8 padding
    (4 pixels at 32), then flip."""
    return random_flip(random_crop(images, images.shape[-1] // 8, gen), gen)


def to_input(images: torch.Tensor, channels_last: bool, norm: tuple = REFERENCE_NORM) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> the model's normalized float input, NHWC in memory when channels_last."""
    x = normalize(images, norm)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
