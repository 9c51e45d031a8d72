"""`rotnet export-images`: a dataset written out as an image folder of PNGs, in the layout rotnet and torchvision's
ImageFolder read. A file's name is its index in the dataset, zero-padded, so the folder's canonical order (by file
name) is the dataset's own order: the exported folder trains exactly as the original does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from rotnet.data import Dataset
from rotnet.errors import RotnetError


def export_images(
    data: Dataset, out: Path, *, labeled: bool = True, train_range: tuple[int, int] | None = None, test: bool = True
) -> int:
    """Write OUT/train[/CLASS]/NNNNN.png (the training images in train_range, default all) and, with test,
    OUT/test[/CLASS]/NNNNN.png. Refuses an OUT that exists and is not empty. Returns the number of files."""
    from PIL import Image

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RotnetError(f"{out} exists and is not an empty folder; name a new one")
    if labeled and not data.labeled:
        raise RotnetError(f"{data.name} has no labels; export it with --unlabeled")
    start, stop = train_range or (0, len(data.train_images))
    if not 0 <= start < stop <= len(data.train_images):
        raise RotnetError(f"--train-range must lie within 0:{len(data.train_images)}; got {start}:{stop}")
    jobs = [("train", data.train_images, data.train_labels, range(start, stop))]
    if test:
        jobs.append(("test", data.test_images, data.test_labels, range(len(data.test_images))))
    width = len(str(max(len(data.train_images), len(data.test_images)) - 1))
    written = 0
    for split, images, labels, indices in jobs:
        folders = [out / split / c for c in data.class_names] if labeled else [out / split]
        for f in folders:
            f.mkdir(parents=True, exist_ok=True)
        for i in tqdm(indices, desc=f"writing {split}", unit="img", leave=False):
            folder = folders[int(labels[i])] if labeled else folders[0]
            pixels = np.ascontiguousarray(images[i].numpy().transpose(1, 2, 0))  # CHW -> HWC
            Image.fromarray(pixels, "RGB").save(folder / f"{i:0{width}d}.png", compress_level=1)
            written += 1
    return written
