"""The one entry point for a run's data, whatever it is: a named dataset (rotnet.readers) or an image folder
(rotnet.imagefolder), at the run's image size, with its channel statistics."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

from rotnet.config import NO_OPTIONS, DataOptions, RunConfig, check_dataset, check_image_size
from rotnet.data import NATIVE_SIZE, Dataset, channel_stats, default_data_root, is_named, resize
from rotnet.files import user_path
from rotnet.imagefolder import load_folder
from rotnet.readers import load_cifar10, load_cifar100, load_stl10


@functools.lru_cache(maxsize=2)  # a reproduce plan alternates between at most a pretraining and a target dataset
def load_dataset(dataset: str, image_size: int = 0, seed: int = 0, options: DataOptions = NO_OPTIONS) -> Dataset:
    """The dataset a run names (a name in NAMES or an image folder's path), at image_size (0: native size; resized
    once), with its training split's channel statistics."""
    dataset = check_dataset(dataset)
    check_image_size(image_size)
    if is_named(dataset):
        root = user_path(options.root) if options.root else default_data_root()
        if dataset == "cifar10":
            data = load_cifar10(root, options.download)
        elif dataset.startswith("cifar100"):
            data = load_cifar100(root, options.download, coarse=dataset.endswith("coarse"))
        else:
            data = load_stl10(root, options.download, unlabeled=dataset.endswith("unlabeled"))
        if image_size and image_size != NATIVE_SIZE[dataset]:
            data = replace(data, train_images=resize(data.train_images, image_size),
                           test_images=resize(data.test_images, image_size))  # fmt: skip
        stats = channel_stats(data.train_images)
    else:
        data, stats = load_folder(Path(dataset), image_size, seed, options)
    size = data.train_images.shape[-1]
    fingerprint = data.fingerprint | {"image_size": size, "mean": list(stats[0]), "std": list(stats[1])}
    return replace(data, mean=stats[0], std=stats[1], fingerprint=fingerprint)


def load_for(cfg: RunConfig, options: DataOptions = NO_OPTIONS) -> Dataset:
    """The data a run trains and tests on (the seed matters only for the held-out split of an unsplit folder)."""
    return load_dataset(cfg.dataset, cfg.image_size, 0 if is_named(cfg.dataset) else cfg.seed, options)
