"""A run's data as uint8 tensors (`Dataset`) and the policy around it: safe class names, normalization, outputs,
statistics, splits and subsets. Its readers: rotnet.readers (named datasets) and rotnet.imagefolder (folders);
rotnet.datasets picks between them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rotnet.augment import MEAN as REFERENCE_MEAN
from rotnet.augment import STD as REFERENCE_STD
from rotnet.config import DATASETS, RunConfig, uses_reference_normalization
from rotnet.errors import RotnetError
from rotnet.files import user_path
from rotnet.seeds import generator

NAMES = DATASETS
NATIVE_SIZE = {"cifar10": 32, "cifar100": 32, "cifar100-coarse": 32, "stl10": 96, "stl10-unlabeled": 96}

HOLDOUT = 0.1  # the share of an unsplit image folder held out as its test split (chosen by the run's seed)


def default_data_root() -> Path:
    """`$ROTNET_DATA`, else ./data (an empty one is unset, as a shell's `${ROTNET_DATA:-data}` reads it)."""
    return user_path(os.environ.get("ROTNET_DATA") or "data")


@dataclass(frozen=True)
class Dataset:
    """A dataset as tensors: images (N, 3, H, W) uint8, labels (N,) int64 (-1 where unlabeled)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    checksums_match: bool | None  # False: a file differs from the official release (recorded, not refused); None:
    # no official release to compare with (an image folder)
    root: str = ""
    fingerprint: dict = field(default_factory=dict)  # what identifies the data: file sizes + md5s, image counts
    name: str = "cifar10"
    mean: tuple[float, ...] = REFERENCE_MEAN  # its training split's channel statistics (0-1 scale)
    std: tuple[float, ...] = REFERENCE_STD

    def __post_init__(self):
        refuse_unsafe_names(self.class_names, f"{self.name} under {self.root or '?'}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labeled(self) -> bool:
        return bool(len(self.train_labels)) and int(self.train_labels.min()) >= 0


Cifar10 = Dataset  # the name of the first release


def name_problem(name) -> str:
    """What keeps a name from outside (a class name, from a dataset's metadata or a folder) from being one folder
    name: '' if nothing. Export writes a folder per class, so a name is used as a path component."""
    if not isinstance(name, str) or not name.strip():
        return "is empty"
    if name in (".", "..") or any(c in name for c in "/\\\0"):
        return "is not a single folder name"
    if any(ord(c) < 32 for c in name):
        return "holds a control character"
    return ""


def refuse_unsafe_names(names: tuple[str, ...], source: str) -> None:
    """Class names are checked once, where every reader hands them over (`Dataset`): each a single folder name, no
    two alike (two classes under one name would merge where the name is used as a key or a folder)."""
    for name in names:
        problem = name_problem(name)
        if problem:
            raise RotnetError(f"{source}: the class name {name!r} {problem}; fix the dataset's metadata")
    seen = set()
    for name in names:
        if name in seen:
            raise RotnetError(f"{source}: two classes are named {name!r}; fix the dataset's metadata")
        seen.add(name)


def within_folder(data: Dataset, path: Path) -> bool:
    """Whether path is an image folder dataset's folder or lies inside it (what is written there would be read as
    its images, or make it rotnet's output: a named dataset's reader takes its own files only)."""
    if data.checksums_match is not None or not data.root:
        return False
    return lies_in(path, data.root)


def lies_in(path: Path | str, folder: Path | str) -> bool:
    """Whether path is folder or lies inside it, as the paths are, links followed."""
    folder, path = Path(folder).resolve(), Path(path).resolve()
    return path == folder or folder in path.parents


def is_named(dataset: str) -> bool:
    return dataset in NAMES


def output_count(cfg: RunConfig, data: Dataset) -> int:
    """The model's output count: 4 rotations, or the dataset's classes (`classes_to_tell`)."""
    return 4 if cfg.task == "rotation" else classes_to_tell(data, "classification")


def classes_to_tell(data: Dataset, what: str) -> int:
    """The classes of data that a classification run or a probe (`what`) is measured on: it needs labels, and two
    classes or more (on one class, every model scores 100%: a folder with one class folder trained to that)."""
    if not data.labeled:
        raise RotnetError(
            f"{data.name} has no class labels; {what} needs PATH/train/CLASS/... and PATH/test/CLASS/... folders "
            "(rotation pretraining takes any folder of images)"
        )
    if data.num_classes < 2:
        raise RotnetError(
            f"{data.name} has one class ({data.class_names[0]}); {what} needs two or more (on one class every model "
            "scores 100%); add a class folder (rotation pretraining takes it as it is)"
        )
    return data.num_classes


def normalization(cfg: RunConfig, data: Dataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) a run normalizes its inputs with (0-1 scale)."""
    if uses_reference_normalization(cfg.normalization, cfg.dataset):
        return REFERENCE_MEAN, REFERENCE_STD
    for channel, spread, mean in zip(("red", "green", "blue"), data.std, data.mean, strict=True):
        if spread < MIN_SPREAD:  # dividing by it would blow the inputs up to inf or noise
            raise RotnetError(
                f"the {channel} channel of {cfg.dataset}'s training images has no spread (every value "
                f"{round(mean * 255)} of 255; std {spread:.2g}): normalizing by it divides by zero; pass "
                f"--normalization reference (the reference's statistics)"
            )
    return data.mean, data.std


MIN_SPREAD = 1e-3  # of a channel's std on the 0-1 scale: below a quarter of one 8-bit level, the channel is constant


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, 3, H, W), on the 0-1 scale, in float64 over chunks."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float64) / 255
        total += x.sum((0, 2, 3))
        squares += (x * x).sum((0, 2, 3))
    count = max(images.numel() // 3, 1)
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())


def resize(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Resize the shorter side to size and center-crop size x size (torchvision's Resize + CenterCrop, antialiased),
    once, as uint8."""
    from torchvision.transforms.v2 import functional as F

    if images.shape[-2:] == (size, size):
        return images
    parts = [F.center_crop(F.resize(images[i : i + chunk], size, antialias=True), size)
             for i in range(0, len(images), chunk)]  # fmt: skip
    return torch.cat(parts).contiguous()


def holdout_split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) indices of an unsplit image folder: HOLDOUT of it held out, chosen by seed, each sorted."""
    order = torch.randperm(n, generator=generator("cpu", "holdout", seed))
    cut = n - max(1, round(n * HOLDOUT)) if n > 1 else n
    return order[:cut].sort().values, order[cut:].sort().values


def balanced_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of up to `per_class` images of each class (all of a smaller class; unlabeled images, -1, count as one
    class), chosen by seed and nested: the subset for n lies inside the subset for any m > n (each class's images
    are ranked once by a seeded permutation)."""
    gen = generator("cpu", "subset", seed)
    order = torch.randperm(len(labels), generator=gen)
    picked = [order[labels[order] == c][:per_class] for c in labels.unique().tolist()]
    return torch.cat(picked).sort().values if picked else order


def class_counts(labels: torch.Tensor) -> dict[int, int]:
    """{class: its image count}, -1 for the unlabeled ones."""
    return dict(zip(*(t.tolist() for t in labels.cpu().unique(return_counts=True)), strict=True))


def subset_size(labels: torch.Tensor, per_class: int) -> int:
    """The images `balanced_subset` picks for `per_class` (0: every image): n of each class, all of a smaller one."""
    if not per_class:
        return len(labels)
    return sum(min(per_class, n) for n in class_counts(labels).values())


def short_classes(labels: torch.Tensor, per_class: int) -> dict[int, int]:
    """{class: its image count} for each class with fewer than `per_class` images."""
    return {c: n for c, n in class_counts(labels).items() if n < per_class}


def diff_text(diff: list[str], most: int = 4) -> str:
    """The first differences `data_diff` found, for a one-line error."""
    return "; ".join(diff[:most]) + (" ..." if len(diff) > most else "")


def data_diff(old: dict, new: dict) -> list[str]:
    """What differs between two dataset fingerprints (per-file size:md5, image counts, pixel digests): what the data
    is, not where it sits (a root or path is not compared). A key the old one lacks was recorded only by a later
    rotnet, so it is not compared."""
    out = []
    for key in sorted(set(old) - {"root", "path"}):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}/{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(f"{key}: {a} -> {b}")
    return out
