"""The named datasets' files as uint8 tensors, read without executing code: CIFAR-10, CIFAR-100 and STL-10 in
torchvision's layouts, downloaded and checked against their official checksums."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from rotnet.data import Dataset, default_data_root
from rotnet.errors import RotnetError, warn_once
from rotnet.files import file_in_the_way, first_missing, open_regular, read_regular
from rotnet.layout import refuse_inside_run

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
NUM_CLASSES = 10  # CIFAR-10's
CIFAR100_FOLDER = "cifar-100-python"
STL10_FOLDER = "stl10_binary"


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
    odd = not_integers(labels)  # checked as they are: a cast to int64 truncated 3.5 to 3, parsed "3", took True as 1
    if odd:
        raise RotnetError(f"{path}: labels must be integers; got {odd}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except OverflowError:  # a Python int beyond int64: no class index either
        raise RotnetError(f"{path}: labels must lie in 0-{classes - 1}; found one beyond int64") from None
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise RotnetError(f"{path}: labels must lie in 0-{classes - 1}; found {labels.min()}..{labels.max()}")
    return data, labels


def not_integers(labels: list | np.ndarray) -> str:
    """What in a batch's labels is no integer, for a message ("" when all are): an array's dtype, else the first
    value that is not one (a bool is not, though Python counts it an int)."""
    if isinstance(labels, np.ndarray):
        return "" if labels.dtype.kind in "iu" and labels.ndim == 1 else f"an array of {labels.dtype}"
    odd = [x for x in labels if isinstance(x, bool) or not isinstance(x, int | np.integer)][:1]
    return repr(odd[0]) if odd else ""


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
    if in_the_way := file_in_the_way(root, f"name the folder that holds {folder.name}"):  # "put it under /etc/passwd"
        raise in_the_way
    if all((root / f).is_file() for f in files):  # the data folder itself was named, not the folder holding it
        raise RotnetError(f"{root} is the {folder.name} folder itself; pass the folder that holds it: {root.parent}")
    if any((folder / f).exists() for f in files):  # a part of the copy is there: a download would replace it
        missing = ", ".join(f for f in files if not (folder / f).is_file())
        raise RotnetError(
            f"{folder} lacks {missing} of {name}; restore it, or move that folder away to fetch {name} afresh"
        )
    hint = f"put the {folder.name} folder under {root} (or point --data-root / ROTNET_DATA at its parent)"
    if not download:
        raise RotnetError(f"{name} not found under {root}: {hint}")
    refuse_inside_run(root, "the data root")  # a download is written there: never among a sealed run's files
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
