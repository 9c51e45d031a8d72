"""Datasets as uint8 tensors, read without executing code: CIFAR-10, CIFAR-100 and STL-10 in torchvision's
layouts; image folders are rotnet.imagefolder's, and rotnet.datasets picks between them."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rotnet.augment import MEAN as REFERENCE_MEAN
from rotnet.augment import STD as REFERENCE_STD
from rotnet.config import DATASETS, RunConfig, uses_reference_normalization
from rotnet.errors import RotnetError, warn_once
from rotnet.files import first_missing, open_regular, read_regular
from rotnet.seeds import generator

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
NUM_CLASSES = 10  # CIFAR-10's

CIFAR100_FOLDER = "cifar-100-python"
STL10_FOLDER = "stl10_binary"
NAMES = DATASETS
NATIVE_SIZE = {"cifar10": 32, "cifar100": 32, "cifar100-coarse": 32, "stl10": 96, "stl10-unlabeled": 96}

HOLDOUT = 0.1  # the share of an unsplit image folder held out as its test split (chosen by the run's seed)


def default_data_root() -> Path:
    """`$ROTNET_DATA`, else ./data."""
    return Path(os.environ.get("ROTNET_DATA", "data"))


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


def is_named(dataset: str) -> bool:
    return dataset in NAMES


def output_count(cfg: RunConfig, data: Dataset) -> int:
    """The model's output count: 4 rotations, or the dataset's classes (a classification run needs labels)."""
    if cfg.task == "rotation":
        return 4
    if not data.labeled:
        raise RotnetError(
            f"{cfg.dataset} has no class labels; classification needs PATH/train/CLASS/... and PATH/test/CLASS/... "
            "folders (rotation pretraining takes any folder of images)"
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
                f"--normalization seed (the reference's statistics)"
            )
    return data.mean, data.std


MIN_SPREAD = 1e-3  # of a channel's std on the 0-1 scale: below a quarter of one 8-bit level, the channel is constant


class _Refused(pickle.UnpicklingError):
    pass


class _SafeUnpickler(pickle.Unpickler):
    """Builds only what a CIFAR batch holds: dicts, lists, strings, numbers and numpy arrays.

    Any other global (os.system, builtins.eval, ...) is refused before it can be called.
    """

    _ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
        ("_codecs", "encode"): __import__("codecs").encode,  # python-3 protocol-2 pickles spell bytes this way
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"refusing to load {module}.{name}") from None


def safe_unpickle(path: Path) -> object:
    """Unpickle a CIFAR batch file, refusing any code payload; errors become one-line RotnetErrors."""
    data = read_regular(path)
    try:
        return _SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as e:
        raise RotnetError(f"{path} is not a plain CIFAR batch ({e}); refusing it") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        MemoryError,
    ) as e:
        raise RotnetError(f"{path} is truncated or corrupt ({type(e).__name__}: {e})") from None


def _read_batch(path: Path, label_key: str = "labels", classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_unpickle(path)
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        raise RotnetError(f"{path} is not a CIFAR batch: expected a dict with 'data' and '{label_key}'")
    data, labels = batch["data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise RotnetError(f"{path}: 'data' must be a (N, 3072) uint8 array; got shape {shape} of {dtype}")
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(data):
        raise RotnetError(f"{path}: {len(data)} images but {len(labels)} labels")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise RotnetError(f"{path}: labels must be integers") from None
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise RotnetError(f"{path}: labels must lie in 0-{classes - 1}; found {labels.min()}..{labels.max()}")
    return data, labels


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open_regular(path) as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _fetch(name: str, root: Path, folder: Path, files: tuple[str, ...], download: bool, url: str, md5: str) -> Path:
    """folder when all its files are there; else download and extract torchvision's archive into root."""
    if all((folder / f).is_file() for f in files):
        return folder
    if all((root / f).is_file() for f in files):  # the data folder itself was named, not the folder holding it
        raise RotnetError(f"{root} is the {folder.name} folder itself; pass the folder that holds it: {root.parent}")
    hint = f"put the {folder.name} folder under {root} (or point --data-root / ROTNET_DATA at its parent)"
    if not download:
        raise RotnetError(f"{name} not found under {root}: {hint}")
    from torchvision.datasets.utils import download_and_extract_archive

    made = first_missing(root)  # what a failed download removes: nothing the user had is touched
    try:
        download_and_extract_archive(url, download_root=str(root), md5=md5)
    except Exception as e:  # network errors come in many types; any of them means the same to the user
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise RotnetError(f"{name} not found under {root} and the download failed ({e}); {hint}") from None
    return folder


def ensure_downloaded(root: Path, download: bool = True) -> Path:
    """Return CIFAR-10's batches folder under root, downloading it there only when it is missing."""
    return _fetch("CIFAR-10", root, root / FOLDER, TRAIN_FILES + TEST_FILES, download, URL, ARCHIVE_MD5)


def _checksums(name: str, root: Path, folder: Path, official: dict[str, str]) -> tuple[bool, dict]:
    """Compare files with torchvision's list of official md5s; warn when any differs, once per process and data
    root (a plan loads its data again for each run; the runs record it anyway)."""
    md5s = {n: _md5(folder / n) for n in official}
    mismatched = [n for n in official if md5s[n] != official[n]]
    if mismatched:
        warn_once(
            ("modified", name, str(Path(root).resolve())),
            f"{name} under {root} differs from the official release ({', '.join(mismatched)}); "
            "using it anyway (a run records this in its config.json)",
            stacklevel=3,
        )
    return not mismatched, {n: f"{(folder / n).stat().st_size}:{md5s[n]}" for n in official}


def load_cifar10(root: Path | str | None = None, download: bool = True) -> Dataset:
    """Read and validate the six batch files under root (default: `default_data_root()`): shapes, dtypes, label
    range, counts."""
    from torchvision.datasets import CIFAR10

    root = Path(root) if root else default_data_root()
    folder = ensure_downloaded(root, download)

    def read(names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_read_batch(folder / n) for n in names]
        data = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)  # CHW row-major, as released
        return torch.from_numpy(data), torch.from_numpy(np.concatenate([p[1] for p in parts]))

    train_images, train_labels = read(TRAIN_FILES)
    test_images, test_labels = read(TEST_FILES)
    names = tuple(str(i) for i in range(NUM_CLASSES))
    if (folder / META_FILE).is_file():
        meta = safe_unpickle(folder / META_FILE)
        if isinstance(meta, dict) and len(meta.get("label_names", [])) == NUM_CLASSES:
            names = tuple(str(n) for n in meta["label_names"])
    official = dict(CIFAR10.train_list + CIFAR10.test_list)
    match, files = _checksums("CIFAR-10", root, folder, official)
    fingerprint = {"name": "cifar10", "files": files, "train": len(train_images), "test": len(test_images)}
    return Dataset(train_images, train_labels, test_images, test_labels, names, match, str(root), fingerprint)


def load_cifar100(root: Path, download: bool = True, coarse: bool = False) -> Dataset:
    """CIFAR-100 from torchvision's `cifar-100-python` folder: fine labels (100), or coarse ones (20)."""
    from torchvision.datasets import CIFAR100

    folder = _fetch("CIFAR-100", root, root / CIFAR100_FOLDER, ("train", "test"), download, CIFAR100.url,
                    CIFAR100.tgz_md5)  # fmt: skip
    key, classes = ("coarse_labels", 20) if coarse else ("fine_labels", 100)

    def read(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        data, labels = _read_batch(folder / name, key, classes)
        return torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.from_numpy(labels)

    train_images, train_labels = read("train")
    test_images, test_labels = read("test")
    names = tuple(str(i) for i in range(classes))
    if (folder / "meta").is_file():
        meta = safe_unpickle(folder / "meta")
        listed = meta.get(key.replace("labels", "label_names"), []) if isinstance(meta, dict) else []
        if len(listed) == classes:
            names = tuple(str(n) for n in listed)
    match, files = _checksums("CIFAR-100", root, folder, dict(CIFAR100.train_list + CIFAR100.test_list))
    name = "cifar100-coarse" if coarse else "cifar100"
    fingerprint = {"name": name, "files": files, "train": len(train_images), "test": len(test_images)}
    return Dataset(train_images, train_labels, test_images, test_labels, names, match, str(root), fingerprint, name)


def _stl10_images(path: Path) -> torch.Tensor:
    """An STL-10 `*_X.bin`: uint8 images stored column-major, read as a memory map (N, 3, 96, 96) view."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0 or size % (3 * 96 * 96):
            raise RotnetError(
                f"{path} is not an STL-10 image file: {size} bytes is not a whole number of 3x96x96 images"
            )
        raw = np.memmap(f, dtype=np.uint8, mode="r").reshape(-1, 3, 96, 96)  # of the descriptor checked above
    with warnings.catch_warnings():  # read-only memory map: torch warns that it is not writable; we never write
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(raw).transpose(2, 3)  # the files are column-major, as torchvision reads them


def _stl10_labels(path: Path, n: int) -> torch.Tensor:
    labels = np.frombuffer(read_regular(path), dtype=np.uint8).astype(np.int64) - 1  # stored as 1..10
    if len(labels) != n:
        raise RotnetError(f"{path}: {n} images but {len(labels)} labels")
    if n and (labels.min() < 0 or labels.max() > 9):
        raise RotnetError(f"{path}: labels must lie in 1-10")
    return torch.from_numpy(labels)


def load_stl10(root: Path, download: bool = True, unlabeled: bool = False) -> Dataset:
    """STL-10 from torchvision's `stl10_binary` folder. `stl10`: the 5,000 labeled training and 8,000 test images;
    `stl10-unlabeled`: the 100,000 unlabeled images (for pretraining), tested on the same 8,000 test images."""
    from torchvision.datasets import STL10

    needed = ("unlabeled_X.bin",) if unlabeled else ("train_X.bin", "train_y.bin")
    needed += ("test_X.bin", "test_y.bin")
    folder = _fetch("STL-10", root, root / STL10_FOLDER, needed, download, STL10.url, STL10.tgz_md5)
    test_images = _stl10_images(folder / "test_X.bin")
    test_labels = _stl10_labels(folder / "test_y.bin", len(test_images))
    if unlabeled:
        train_images = _stl10_images(folder / "unlabeled_X.bin")
        train_labels = torch.full((len(train_images),), -1, dtype=torch.int64)
    else:
        train_images = _stl10_images(folder / "train_X.bin")
        train_labels = _stl10_labels(folder / "train_y.bin", len(train_images))
    names = stl10_class_names(folder / "class_names.txt")
    official = {n: md5 for n, md5 in STL10.train_list + STL10.test_list if n in needed}
    match, files = _checksums("STL-10", root, folder, official)
    name = "stl10-unlabeled" if unlabeled else "stl10"
    fingerprint = {"name": name, "files": files, "train": len(train_images), "test": len(test_images)}
    return Dataset(train_images, train_labels, test_images, test_labels, names, match, str(root), fingerprint, name)


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


def stl10_class_names(path: Path) -> tuple[str, ...]:
    """The ten names in STL-10's class_names.txt; the numbers 0-9 (with a warning) when it is missing or not ten
    names of UTF-8 text: the images and labels do not depend on it."""
    try:
        listed = read_regular(path).decode("utf-8").split() if os.path.lexists(path) else []
    except (RotnetError, UnicodeDecodeError) as e:
        why = e if isinstance(e, RotnetError) else type(e).__name__
        warnings.warn(f"{path} is unreadable ({why}); naming the classes 0-9", stacklevel=3)
        listed = []
    else:
        if len(listed) != 10:
            warnings.warn(f"{path} lists {len(listed)} names, not 10; naming the classes 0-9", stacklevel=3)
    return tuple(listed) if len(listed) == 10 else tuple(str(i) for i in range(10))


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


def short_classes(labels: torch.Tensor, per_class: int) -> dict[int, int]:
    """{class: its image count} for each class with fewer than `per_class` images."""
    return {c: n for c, n in class_counts(labels).items() if n < per_class}
