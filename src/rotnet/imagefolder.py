"""Image folders as datasets: their images listed once, their classes read from their paths, decoded and cached
by rotnet.imagecache.

Layouts (torchvision's ImageFolder convention):
- `PATH/train/CLASS/*.png` and `PATH/test/CLASS/*.png`: labeled; classes sorted by name, as ImageFolder sorts them.
- any other folder of images (searched recursively): unlabeled, for rotation pretraining; its test split is a share
  of it held out by the run's seed (data.HOLDOUT), unless it has `train/` and `test/` folders.
Canonical order: images are sorted by file name, then by relative path, so the order doesn't depend on which class
folder an image sits in (an exported `train/CLASS/00042.png` keeps its index 42).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

from rotnet.config import DataOptions, dataset_slug
from rotnet.data import Dataset, channel_stats, holdout_split
from rotnet.errors import RotnetError
from rotnet.imagecache import prepared
from rotnet.images import EXTENSIONS
from rotnet.layout import is_rotnet_output


def list_images(folder: Path, aliases: dict[Path, Path] | None = None) -> list[Path]:
    """Image files under folder, recursively, in canonical order, each file once. Folder links are followed (a
    dataset assembled from links is common) but a folder is entered once (by device and inode), so a link back to a
    parent neither loops nor duplicates; a file reached by two paths is listed once, at its first (`aliases`, when
    given, gets each other path of a file or folder and the path used). Skipped: hidden
    folders (the cache), and folders rotnet wrote (runs, runs roots, exports): its plots are never training data."""
    found, entered = [], {}
    for parent, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(parent)
        if (st.st_dev, st.st_ino) in entered and aliases is not None:
            aliases[Path(parent)] = entered[(st.st_dev, st.st_ino)]
        if (st.st_dev, st.st_ino) in entered or is_rotnet_output(Path(parent), files):
            dirs[:] = []
            continue
        entered[(st.st_dev, st.st_ino)] = Path(parent)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # sorted: which path enters a folder first is fixed
        found += [Path(parent, f) for f in files if f.lower().endswith(EXTENSIONS) and not f.startswith(".")]
    found.sort(key=lambda p: (p.name, p.relative_to(folder).as_posix()))
    seen: dict[tuple[int, int], Path] = {}
    unique = []
    for p in found:
        try:
            st = p.stat()  # the file a link leads to
        except OSError:  # a dangling link: listed, so that decoding names it (or --skip-bad-images skips it)
            unique.append(p)
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen[(st.st_dev, st.st_ino)] = p
            unique.append(p)
        elif aliases is not None:
            aliases[p] = seen[(st.st_dev, st.st_ino)]
    return unique


def layout(folder: Path) -> tuple[dict[str, list[Path]], tuple[str, ...]]:
    """The splits ('train', and 'test' if the folder has one) and the class names (none when unlabeled)."""
    if not folder.is_dir():
        raise RotnetError(f"dataset folder not found: {folder} (or name one of the datasets: cifar10, cifar100, ...)")
    train, test = folder / "train", folder / "test"
    if not (train.is_dir() and test.is_dir()):
        return {"train": list_images(folder)}, ()
    aliases: dict[str, dict[Path, Path]] = {"train": {}, "test": {}}
    splits = {name: list_images(split, aliases[name]) for name, split in (("train", train), ("test", test))}
    classes = class_folders(train)
    if classes:
        # Before the classes are counted: the class folder a link entered first took the images, and the other one,
        # left short or empty, would be named instead of the link.
        for name, split in (("train", train), ("test", test)):
            for other, used in aliases[name].items():  # one file or folder under two class folders: which class?
                first, second = (p.relative_to(split).parts[:1] for p in (used, other))
                if first != second:
                    raise RotnetError(
                        f"{used} is also {other} (a link): images in class {first[0] if first else '(none)'} and "
                        f"{second[0] if second else '(none)'} at once; an image has one class: remove the link"
                    )
        check_classes(splits, classes, {"train": train, "test": test})
    return splits, classes


def class_folders(split: Path) -> tuple[str, ...]:
    """A split's class folders, sorted by name as torchvision's ImageFolder sorts them (hidden ones skipped). A link
    among them that reaches no folder is named, not passed over: a class whose link lost its target was left out."""
    names = []
    for e in os.scandir(split):
        if e.name.startswith("."):  # hidden: the cache, say; never a class, whatever it is
            continue
        try:
            is_dir = e.is_dir()  # follows a link
        except OSError:  # only a loop raises here
            raise RotnetError(f"{e.path} is a link that leads back to itself; remove it") from None
        if not is_dir and e.is_symlink() and not os.path.exists(e.path):
            raise RotnetError(f"{e.path} is a link to {os.readlink(e.path)}, which does not exist; remove it")
        if is_dir:
            names.append(e.name)
    return tuple(sorted(names))


def class_of(path: Path, split: Path) -> str:
    """An image's class: the class folder it sits under, at any depth (as in ImageFolder)."""
    return path.relative_to(split).parts[0]


def check_classes(splits: dict[str, list[Path]], classes: tuple[str, ...], roots: dict[str, Path]) -> None:
    """A labeled folder's classes say what its accuracy means: refused when an image sits outside every class folder,
    a class has no training images, or the test split has a class training lacks; a warning when the test split
    lacks some classes (its accuracy covers the others only)."""
    seen = {}
    for name, files in splits.items():
        loose = [p for p in files if p.parent == roots[name]]
        if loose:
            raise RotnetError(f"{loose[0]} sits in {name}/ outside any class folder; move it into {name}/CLASS/")
        seen[name] = {class_of(p, roots[name]) for p in files}
    if empty := [c for c in classes if c not in seen["train"]]:
        raise RotnetError(f"class folder(s) {', '.join(empty)} under {roots['train']} hold no images; fill or remove")
    if extra := sorted(seen["test"] - set(classes)):
        raise RotnetError(f"{roots['test']} has class(es) {', '.join(extra)} that train/ lacks; a test class must be "
                          f"a training class")  # fmt: skip
    if missing := [c for c in classes if c not in seen["test"]]:
        warnings.warn(
            f"{roots['test']} has no images of {', '.join(missing)}; its accuracy covers the other "
            f"{len(classes) - len(missing)} classes only", stacklevel=2,
        )  # fmt: skip


def load_folder(folder: Path, image_size: int, seed: int, options: DataOptions) -> tuple[Dataset, tuple]:
    """An image folder as a Dataset (labels -1 when it has no class folders) and its normalization statistics. An
    image whose pixels repeat an earlier one's is used once (warned), so that no test image is a copy of a training
    image, whichever way the folder was assembled."""
    folder = Path(folder).resolve()
    splits, classes = layout(folder)
    every = splits["train"] + splits.get("test", [])
    if not splits["train"]:
        where = folder / "train" if "test" in splits else folder
        raise RotnetError(f"no images ({', '.join(EXTENSIONS)}) under {where}")
    images, record = prepared(folder, every, image_size, options)
    kept = torch.tensor(record["kept"], dtype=torch.int64)
    n_train = len(splits["train"])
    if classes:
        index = {c: i for i, c in enumerate(classes)}
        roots = [folder / "train"] * n_train + [folder / "test"] * (len(every) - n_train)
        labels = torch.tensor([index[class_of(p, r)] for p, r in zip(every, roots, strict=True)])[kept]
    else:
        labels = torch.full((len(kept),), -1, dtype=torch.int64)
    unique = first_copies(record["pixels"], [every[i] for i in record["kept"]])
    if "test" in splits:  # kept indices are sorted: the training images come first
        cut = int((kept < n_train).sum())
        train_idx, test_idx = unique[unique < cut], unique[unique >= cut]
    else:
        train_idx, test_idx = (unique[i] for i in holdout_split(len(unique), seed))
    if not len(test_idx):
        raise RotnetError(f"{folder} has no test images (its test/ folder is empty, or it holds one distinct image)")
    contiguous = len(unique) == len(kept) and "test" in splits  # views of the memory map, not copies
    train_images = images[: len(train_idx)] if contiguous else images[train_idx]
    test_images = images[len(train_idx) :] if contiguous else images[test_idx]
    stats = channel_stats(train_images)
    fingerprint = {
        "name": "folder",
        "path": str(folder),
        "images_sha256": record["images_sha256"],
        "skipped": record["count"] - len(kept),
        "duplicates": len(kept) - len(unique),
        "converted": record.get("converted", {}),
        "split": "train/test folders" if "test" in splits else f"held out {len(test_idx)} by seed {seed}",
        "train": len(train_idx),
        "test": len(test_idx),
        # what each image is labeled, as its path says now: the pixels alone would miss images moved between classes
        "classes": list(classes),
        "labels_sha256": hashlib.sha256(
            labels[train_idx].numpy().astype("<i8").tobytes() + labels[test_idx].numpy().astype("<i8").tobytes()
        ).hexdigest(),
    }
    names = classes or ("unlabeled",)
    data = Dataset(
        train_images, labels[train_idx], test_images, labels[test_idx], names, None, str(folder), fingerprint,
        dataset_slug(str(folder)),
    )  # fmt: skip
    return data, stats


def first_copies(digests: list[str], paths: list[Path]) -> torch.Tensor:
    """Indices of the images whose pixels no earlier image has (in canonical order), warning about the others: a
    copy under another name would otherwise sit on both sides of a train/test split."""
    first: dict[str, int] = {}
    for i, d in enumerate(digests):
        first.setdefault(d, i)
    if len(first) < len(digests):
        copy = next(i for i, d in enumerate(digests) if first[d] != i)
        warnings.warn(
            f"{len(digests) - len(first)} images repeat another's pixels (e.g. {paths[copy]} = "
            f"{paths[first[digests[copy]]]}); each is used once", stacklevel=3,
        )  # fmt: skip
    return torch.tensor(sorted(first.values()), dtype=torch.int64)
