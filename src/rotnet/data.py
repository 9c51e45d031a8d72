"""CIFAR-10 from the standard `cifar-10-batches-py` folder into uint8 tensors, read without executing code."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rotnet.errors import RotnetError
from rotnet.seeds import generator

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
NUM_CLASSES = 10


def default_data_root() -> Path:
    """`$ROTNET_DATA`, else ./data."""
    return Path(os.environ.get("ROTNET_DATA", "data"))


@dataclass(frozen=True)
class Cifar10:
    """The dataset as tensors: images (N, 3, 32, 32) uint8, labels (N,) int64."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    checksums_match: bool  # False when any file differs from the official release (recorded, not refused)
    root: str = ""
    fingerprint: dict = field(default_factory=dict)  # what identifies the data: file sizes + md5s, image counts


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
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RotnetError(f"cannot read {path}: {e.strerror}") from None
    try:
        return _SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as e:
        raise RotnetError(f"{path} is not a plain CIFAR-10 batch ({e}); refusing it") from None
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


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_unpickle(path)
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise RotnetError(f"{path} is not a CIFAR-10 batch: expected a dict with 'data' and 'labels'")
    data, labels = batch["data"], batch["labels"]
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
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise RotnetError(f"{path}: labels must lie in 0-9; found {labels.min()}..{labels.max()}")
    return data, labels


def _official_md5s() -> dict[str, str]:
    """The official per-file checksums, as torchvision lists them."""
    from torchvision.datasets import CIFAR10

    return {name: md5 for name, md5 in CIFAR10.train_list + CIFAR10.test_list} | {META_FILE: CIFAR10.meta["md5"]}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def ensure_downloaded(root: Path, download: bool = True) -> Path:
    """Return the batches folder under root, downloading CIFAR-10 there only when it is missing."""
    folder = root / FOLDER
    if all((folder / f).is_file() for f in TRAIN_FILES + TEST_FILES):
        return folder
    hint = f"put the {FOLDER} folder under {root} (or point --data-root / ROTNET_DATA at its parent)"
    if not download:
        raise RotnetError(f"CIFAR-10 not found under {root}: {hint}")
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(URL, download_root=str(root), md5=ARCHIVE_MD5)
    except Exception as e:  # network errors come in many types; any of them means the same to the user
        raise RotnetError(f"CIFAR-10 not found under {root} and the download failed ({e}); {hint}") from None
    return folder


def load_cifar10(root: Path | str | None = None, download: bool = True) -> Cifar10:
    """Read and validate the six batch files under root (default: `default_data_root()`): shapes, dtypes, label
    range, counts."""
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
    official = _official_md5s()
    md5s = {n: _md5(folder / n) for n in TRAIN_FILES + TEST_FILES}
    mismatched = [n for n in TRAIN_FILES + TEST_FILES if md5s[n] != official[n]]
    if mismatched:
        warnings.warn(
            f"CIFAR-10 under {root} differs from the official release ({', '.join(mismatched)}); "
            "using it anyway and recording that in the run's config",
            stacklevel=2,
        )
    fingerprint = {
        "name": "cifar10",
        "files": {n: f"{(folder / n).stat().st_size}:{md5s[n]}" for n in TRAIN_FILES + TEST_FILES},
        "train": len(train_images),
        "test": len(test_images),
    }
    return Cifar10(train_images, train_labels, test_images, test_labels, names, not mismatched, str(root), fingerprint)


def balanced_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of `per_class` images of each class, chosen by seed and nested: the subset for n lies inside
    the subset for any m > n (each class's images are ranked once by a seeded permutation)."""
    gen = generator("cpu", "subset", seed)
    order = torch.randperm(len(labels), generator=gen)
    picked = []
    for c in range(NUM_CLASSES):
        members = order[labels[order] == c]
        if len(members) < per_class:
            raise RotnetError(f"class {c} has {len(members)} training images, fewer than {per_class} per class")
        picked.append(members[:per_class])
    return torch.cat(picked).sort().values
