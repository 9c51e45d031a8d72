"""Image folders as datasets: decoded once into a cached uint8 array, memory-mapped on every later load.

Layouts (torchvision's ImageFolder convention):
- `PATH/train/CLASS/*.png` and `PATH/test/CLASS/*.png`: labeled; classes sorted by name, as ImageFolder sorts them.
- any other folder of images (searched recursively): unlabeled, for rotation pretraining; its test split is a share
  of it held out by the run's seed (data.HOLDOUT), unless it has `train/` and `test/` folders.
Canonical order: images are sorted by file name, then by relative path, so the order doesn't depend on which class
folder an image sits in (an exported `train/CLASS/00042.png` keeps its index 42).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rotnet.checkpoint import atomic_write_text
from rotnet.config import DataOptions, dataset_slug
from rotnet.data import Dataset, channel_stats, holdout_split
from rotnet.errors import RotnetError
from rotnet.layout import is_rotnet_output

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's list
CACHE = ".rotnet-cache"
HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # Pillow's modes of 16-bit (and 32-bit) grey images
MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb limit; a larger image is refused, not decoded
FORMAT = 2  # of the cache files; a new format never reads an old one (2: images decoded as seen, open_as_seen)


def list_images(folder: Path) -> list[Path]:
    """Image files under folder, recursively, in canonical order, each file once. Folder links are followed (a
    dataset assembled from links is common) but a folder is entered once (by device and inode), so a link back to a
    parent neither loops nor duplicates; a file reached by two paths is listed once, at its first. Skipped: hidden
    folders (the cache), and folders rotnet wrote (runs, runs roots, exports): its plots are never training data."""
    found, entered = [], set()
    for parent, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(parent)
        if (st.st_dev, st.st_ino) in entered or is_rotnet_output(files):
            dirs[:] = []
            continue
        entered.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # sorted: which path enters a folder first is fixed
        found += [Path(parent, f) for f in files if f.lower().endswith(EXTENSIONS) and not f.startswith(".")]
    found.sort(key=lambda p: (p.name, p.relative_to(folder).as_posix()))
    seen: set[tuple[int, int]] = set()
    unique = []
    for p in found:
        try:
            st = p.stat()  # the file a link leads to
        except OSError:  # a dangling link: listed, so that decoding names it (or --skip-bad-images skips it)
            unique.append(p)
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            unique.append(p)
    return unique


def layout(folder: Path) -> tuple[dict[str, list[Path]], tuple[str, ...]]:
    """The splits ('train', and 'test' if the folder has one) and the class names (none when unlabeled)."""
    if not folder.is_dir():
        raise RotnetError(f"dataset folder not found: {folder} (or name one of the datasets: cifar10, cifar100, ...)")
    train, test = folder / "train", folder / "test"
    if train.is_dir() and test.is_dir():
        classes = sorted(e.name for e in os.scandir(train) if e.is_dir() and not e.name.startswith("."))
        splits = {"train": list_images(train), "test": list_images(test)}
        labeled = bool(classes) and all(p.parent.parent == train for p in splits["train"])
        labeled = labeled and all(p.parent.parent == test and p.parent.name in classes for p in splits["test"])
        return splits, tuple(classes) if labeled else ()
    return {"train": list_images(folder)}, ()


def listing_digest(files: list[Path], folder: Path) -> str:
    """What identifies a folder's contents without reading them: relative paths, sizes and modification times."""
    h = hashlib.sha256()
    for p in files:
        try:
            st = p.stat()
        except OSError:  # a dangling link: decoding names it, or --skip-bad-images skips it
            st = p.lstat()
        h.update(f"{p.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def open_as_seen(path: Path):
    """The one way rotnet reads an image file: as a viewer displays it (its EXIF orientation applied: a phone
    photo's "upright" is what its rotation labels are relative to), in 8-bit RGB (16-bit grey, e.g. microscopy, is
    scaled to 8 bits, not clipped). Returns the image and what was done to it beyond decoding."""
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    done = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit: refused like a bomb
        with Image.open(path) as im:
            if im.getexif().get(0x0112, 1) not in (0, 1):  # 0x0112: Orientation; 1 is "as stored"
                im = ImageOps.exif_transpose(im)
                done.append("exif_orientation")
            if im.mode in HIGH_DEPTH:
                wide = np.asarray(im, dtype=np.float64)
                top = 65535.0 if im.mode != "F" or wide.max() > 1 else 1.0
                im = Image.fromarray(np.clip(np.rint(wide * (255.0 / top)), 0, 255).astype(np.uint8), "L")
                done.append("scaled_to_8_bits")
            im = im.convert("RGB")
    return im, done


def decode(path: Path, size: int, resize: bool = True) -> tuple[np.ndarray, list[str]]:
    """One image as uint8 (3, size, size), as seen (`open_as_seen`): shorter side resized to size (antialiased),
    center-cropped; without resize, an image of another size is refused. Also returns what was done to it."""
    im, done = open_as_seen(path)
    if im.size != (size, size) and not resize:
        raise ValueError(f"it is {im.size[0]}x{im.size[1]}, not {size}x{size} as the first; pass --image-size N")
    if im.size != (size, size):
        from torchvision.transforms.v2 import functional as F

        im = F.center_crop(F.resize(im, size, antialias=True), size)
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1), done


def first_size(files: list[Path]) -> int:
    """The side of the first image, when it is square: the folder's size when --image-size is not given."""
    try:
        w, h = open_as_seen(files[0])[0].size  # as displayed: an EXIF-rotated photo's sides swap
    except Exception as e:  # PIL raises many types; all mean the same here
        raise RotnetError(f"cannot read {files[0]} ({type(e).__name__}: {e})") from None
    if w != h:
        raise RotnetError(f"{files[0]} is {w}x{h}, not square; pass --image-size N to resize and center-crop")
    return w


def prepare(
    files: list[Path], size: int, resize: bool, target: Path, skip_bad: bool
) -> tuple[np.ndarray, list[int], dict]:
    """Decode files into target (a .npy of (N, 3, size, size) uint8), atomically; return it memory-mapped, the
    indices of the files that were kept, and how many images needed each conversion (`open_as_seen`)."""
    notes: dict[str, int] = {}
    bad: list[tuple[Path, str]] = []
    kept: list[int] = []
    tmp = short = fresh_file(target)
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size))
        for i, path in enumerate(tqdm(files, desc="decoding images (once)", unit="img", leave=False, disable=None)):
            try:
                array[len(kept)], done = decode(path, size, resize)
                kept.append(i)
                for what in done:
                    notes[what] = notes.get(what, 0) + 1
            except Exception as e:  # PIL raises many types for bad files; each means "unreadable image"
                bad.append((path, f"{type(e).__name__}: {e}"))
        if bad and not skip_bad:
            first = "; ".join(f"{p} ({why})" for p, why in bad[:3])
            raise RotnetError(f"{len(bad)} unreadable images, e.g. {first}; fix or remove them, or --skip-bad-images")
        if bad:
            warnings.warn(f"skipped {len(bad)} unreadable images, e.g. {bad[0][0]}", stacklevel=2)
        array.flush()
        del array
        if len(kept) < len(files):  # rewrite without the unused tail
            full = np.load(tmp, mmap_mode="r")
            short = fresh_file(target)
            with open(short, "wb") as f:
                np.save(f, full[: len(kept)])
            del full
            os.replace(short, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        short.unlink(missing_ok=True)
    return np.load(target, mmap_mode="r"), kept, notes


def fresh_file(target: Path) -> Path:
    """A new empty file beside target with a unique name, made with O_EXCL (tempfile.mkstemp): a link planted in
    the cache cannot redirect the write elsewhere."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def cache_dir_for(folder: Path, options: DataOptions) -> Path:
    cache = Path(options.cache_dir) if options.cache_dir else folder / CACHE
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RotnetError(f"cannot write the prepared-images cache {cache} ({e.strerror}); pass --cache-dir") from None
    return cache


def prepared(folder: Path, files: list[Path], image_size: int, options: DataOptions) -> tuple[torch.Tensor, dict]:
    """The folder's images as a memory-mapped uint8 tensor and its cache record, prepared now if the cache lacks
    them or the folder changed since (another listing digest is another cache entry)."""
    digest = listing_digest(files, folder)
    size = image_size or first_size(files)
    bad = "skip" if options.skip_bad_images else "all"
    key = f"{dataset_slug(str(folder))}-{image_size or 'native'}-{digest[:16]}-{bad}-v{FORMAT}"
    cache = cache_dir_for(folder, options)
    images_file, record_file = cache / f"{key}.npy", cache / f"{key}.json"
    record = None
    if record_file.is_file() and images_file.is_file():
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            record = None
    if record is None or record.get("listing_sha256") != digest:
        print(f"preparing {len(files)} images of {folder} once, into {images_file}", flush=True)
        array, kept, notes = prepare(files, size, bool(image_size), images_file, options.skip_bad_images)
        h = hashlib.sha256()
        for start in range(0, len(array), 4096):
            h.update(np.ascontiguousarray(array[start : start + 4096]).tobytes())
        record = {"listing_sha256": digest, "kept": kept, "images_sha256": h.hexdigest(), "count": len(files)}
        record["converted"] = notes  # e.g. {"exif_orientation": 12, "scaled_to_8_bits": 3}
        atomic_write_text(record_file, json.dumps(record))
    try:
        array = np.load(images_file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise RotnetError(f"the cache file {images_file} is unreadable ({e}); delete it to prepare again") from None
    if array.shape != (len(record["kept"]), 3, size, size):
        raise RotnetError(f"the cache file {images_file} does not match its record; delete it to prepare again")
    with warnings.catch_warnings():  # a read-only memory map: torch warns it is not writable; nothing writes it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array), record


def load_folder(folder: Path, image_size: int, seed: int, options: DataOptions) -> tuple[Dataset, tuple]:
    """An image folder as a Dataset (labels -1 when it has no class folders) and its normalization statistics."""
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
        labels = torch.tensor([index[p.parent.name] for p in every], dtype=torch.int64)[kept]
    else:
        labels = torch.full((len(kept),), -1, dtype=torch.int64)
    if "test" in splits:  # kept indices are sorted: the training images come first, a view of the memory map
        cut = int((kept < n_train).sum())
        train_idx, test_idx = torch.arange(cut), torch.arange(cut, len(kept))
        train_images, test_images = images[:cut], images[cut:]
    else:
        train_idx, test_idx = holdout_split(len(kept), seed)
        train_images, test_images = images[train_idx], images[test_idx]
    if not len(test_idx):
        raise RotnetError(f"{folder} has no test images (its test/ folder is empty, or it holds a single image)")
    stats = channel_stats(train_images)
    fingerprint = {
        "name": "folder",
        "path": str(folder),
        "images_sha256": record["images_sha256"],
        "skipped": record["count"] - len(kept),
        "converted": record.get("converted", {}),
        "split": "train/test folders" if "test" in splits else f"held out {len(test_idx)} by seed {seed}",
        "train": len(train_idx),
        "test": len(test_idx),
    }
    names = classes or ("unlabeled",)
    data = Dataset(
        train_images, labels[train_idx], test_images, labels[test_idx], names, True, str(folder), fingerprint,
        dataset_slug(str(folder)),
    )  # fmt: skip
    return data, stats
