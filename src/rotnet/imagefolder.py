"""Image folders as datasets: decoded once into a cached uint8 array, memory-mapped on every later load.

Layouts (torchvision's ImageFolder convention):
- `PATH/train/CLASS/*.png` and `PATH/test/CLASS/*.png`: labeled; classes sorted by name, as ImageFolder sorts them.
- any other folder of images (searched recursively): unlabeled, for rotation pretraining; its test split is a share
  of it held out by the run's seed (data.HOLDOUT), unless it has `train/` and `test/` folders.
Canonical order: images are sorted by file name, then by relative path, so the order doesn't depend on which class
folder an image sits in (an exported `train/CLASS/00042.png` keeps its index 42).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rotnet.checkpoint import atomic_write_text
from rotnet.config import DataOptions, dataset_slug
from rotnet.data import Dataset, channel_stats, holdout_split
from rotnet.errors import Interrupted, RotnetError
from rotnet.layout import is_rotnet_output
from rotnet.signals import raise_on_stop

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's list
CACHE = ".rotnet-cache"
HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # Pillow's modes of 16-bit (and 32-bit) grey images
MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb limit; a larger image is refused, not decoded
FORMAT = 3  # of the cache files; a new format never reads an old one (2: decoded as seen; 3: pixel digests)


def list_images(folder: Path) -> list[Path]:
    """Image files under folder, recursively, in canonical order, each file once. Folder links are followed (a
    dataset assembled from links is common) but a folder is entered once (by device and inode), so a link back to a
    parent neither loops nor duplicates; a file reached by two paths is listed once, at its first. Skipped: hidden
    folders (the cache), and folders rotnet wrote (runs, runs roots, exports): its plots are never training data."""
    found, entered = [], set()
    for parent, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(parent)
        if (st.st_dev, st.st_ino) in entered or is_rotnet_output(Path(parent), files):
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
    if not (train.is_dir() and test.is_dir()):
        return {"train": list_images(folder)}, ()
    splits = {"train": list_images(train), "test": list_images(test)}
    classes = class_folders(train)
    if classes:
        check_classes(splits, classes, {"train": train, "test": test})
    return splits, classes


def class_folders(split: Path) -> tuple[str, ...]:
    """A split's class folders, sorted by name as torchvision's ImageFolder sorts them (hidden ones skipped)."""
    return tuple(sorted(e.name for e in os.scandir(split) if e.is_dir() and not e.name.startswith(".")))


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


def listing_digest(files: list[Path], folder: Path) -> str:
    """What identifies a folder's contents without reading them: relative paths and, as git's index keeps them,
    each file's size, modification and change times and inode. A file replaced by another of the same size and
    modification time still gets a new change time (which no user call can set back) or inode."""
    h = hashlib.sha256()
    for p in files:
        try:
            st = p.stat()
        except OSError:  # a dangling link: decoding names it, or --skip-bad-images skips it
            st = p.lstat()
        stat = f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}"
        h.update(f"{p.relative_to(folder).as_posix()}\0{stat}\n".encode())
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
) -> tuple[np.ndarray, list[int], dict, list[str], str]:
    """Decode files into target (a .npy of (N, 3, size, size) uint8), atomically; return it memory-mapped, the
    indices of the files that were kept, how many images needed each conversion (`open_as_seen`), each kept
    image's pixel digest and the sha256 of all their pixels (what `pixels_sha256` of the array gives). The disk
    space is reserved first: a full disk is an error now, not a SIGBUS mid-write; Ctrl-C or SIGTERM removes the
    partial file."""
    notes: dict[str, int] = {}
    bad: list[tuple[Path, str]] = []
    kept: list[int] = []
    digests: list[str] = []
    whole = hashlib.sha256()  # of the kept images in order: the array's bytes, hashed as they are written
    need, free = len(files) * 3 * size * size, shutil.disk_usage(target.parent).free
    if need > free:
        raise RotnetError(
            f"{len(files)} images at {size}x{size} need {need / 1e9:.3g} GB in {target.parent}, which has "
            f"{free / 1e9:.3g} GB free; pass a smaller --image-size, or --cache-dir on a larger disk"
        )
    tmp = short = fresh_file(target)
    try:
        with raise_on_stop(f"stopped while preparing images into {target.parent}; nothing was kept"):
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size))
            reserve(tmp)
            for i, path in enumerate(tqdm(files, desc="decoding images (once)", unit="img", leave=False, disable=None)):
                try:
                    pixels, done = decode(path, size, resize)
                except Interrupted:
                    raise
                except Exception as e:  # PIL raises many types for bad files; each means "unreadable image"
                    bad.append((path, f"{type(e).__name__}: {e}"))
                    continue
                array[len(kept)] = pixels
                kept.append(i)
                raw = np.ascontiguousarray(pixels).tobytes()
                whole.update(raw)
                digests.append(hashlib.sha256(raw).hexdigest()[:16])
                for what in done:
                    notes[what] = notes.get(what, 0) + 1
            if bad and not skip_bad:
                first = "; ".join(f"{p} ({why})" for p, why in bad[:3])
                raise RotnetError(
                    f"{len(bad)} unreadable images, e.g. {first}; fix or remove them, or --skip-bad-images"
                )
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
    return np.load(target, mmap_mode="r"), kept, notes, digests, whole.hexdigest()


def reserve(path: Path) -> None:
    """Allocate a sparse file's blocks now (posix_fallocate), so that running out of disk is an error here rather
    than a SIGBUS when a memory-mapped write finds no block."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: writes find out as they go
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise RotnetError(f"no space left in {path.parent} for the prepared images; pass --cache-dir") from None
        if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):  # a file system that cannot reserve: write as we go
            raise
    finally:
        os.close(fd)


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


def pixels_sha256(array: np.ndarray) -> str:
    h = hashlib.sha256()
    for start in range(0, len(array), 4096):
        h.update(np.ascontiguousarray(array[start : start + 4096]).tobytes())
    return h.hexdigest()


def cached(images_file: Path, record: dict | None, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    """The cache entry's images if they are exactly what its record says (shape and every pixel's sha256), else
    None and why not: a cache is rotnet's own file, so a damaged or changed one is prepared again, never used."""
    if record is None:
        return None, ""
    try:
        array = np.load(images_file, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises many types (EOFError on an empty file); all mean "damaged"
        return None, f"it is not a readable array ({type(e).__name__})"
    if array.shape != shape:
        return None, f"it holds {array.shape}, its record {shape}"
    if pixels_sha256(array) != record.get("images_sha256"):
        return None, "its pixels changed since they were prepared"
    return array, ""


def prepared(folder: Path, files: list[Path], image_size: int, options: DataOptions) -> tuple[torch.Tensor, dict]:
    """The folder's images as a memory-mapped uint8 tensor and its cache record, prepared now if the cache lacks
    them, the folder changed since (another listing digest is another cache entry), or the entry does not match
    its record. A new entry replaces the folder's older ones."""
    digest = listing_digest(files, folder)
    size = image_size or first_size(files)
    bad = "skip" if options.skip_bad_images else "all"
    prefix = f"{dataset_slug(str(folder))}-{image_size or 'native'}-"
    key = f"{prefix}{digest[:16]}-{bad}-v{FORMAT}"
    cache = cache_dir_for(folder, options)
    images_file, record_file = cache / f"{key}.npy", cache / f"{key}.json"
    record = None
    try:
        record = json.loads(record_file.read_text())
        shape = (len(record["kept"]), 3, size, size)
    except (OSError, ValueError, TypeError, KeyError):
        record, shape = None, ()
    array, why = cached(images_file, record if record and record.get("listing_sha256") == digest else None, shape)
    if array is None:
        if why:
            print(f"the cache entry {images_file} does not match its record ({why}); preparing it again", flush=True)
        print(f"preparing {len(files)} images of {folder} once, into {images_file}", flush=True)
        try:
            array, kept, notes, digests, sha = prepare(
                files, size, bool(image_size), images_file, options.skip_bad_images
            )
            record = {"folder": str(folder), "listing_sha256": digest, "kept": kept, "count": len(files)}
            record |= {"images_sha256": sha, "pixels": digests}
            record["converted"] = notes  # e.g. {"exif_orientation": 12, "scaled_to_8_bits": 3}
            atomic_write_text(record_file, json.dumps(record))
        except PermissionError as e:
            raise RotnetError(
                f"cannot write the prepared-images cache in {cache} ({e.strerror}); pass --cache-dir DIR to keep it "
                f"elsewhere"
            ) from None
        remove_stale(cache, folder, prefix, bad, keep=key)
    with warnings.catch_warnings():  # a read-only memory map: torch warns it is not writable; nothing writes it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array), record


def remove_stale(cache: Path, folder: Path, prefix: str, bad: str, keep: str) -> None:
    """Delete the cache entries of this folder, size and bad-image mode that the new one replaces (an older listing
    or format): a cache keeps one entry per way of preparing a folder, not one per change."""
    for record_file in cache.glob(f"{glob.escape(prefix)}*-{bad}-v*.json"):
        stem = record_file.stem
        if stem == keep:
            continue
        try:
            owner = json.loads(record_file.read_text()).get("folder")
        except (OSError, ValueError, AttributeError):
            continue
        if owner == str(folder) or (owner is None and cache == folder / CACHE):  # v2 entries did not say
            for path in (cache / f"{stem}.npy", record_file):
                if not path.is_symlink():
                    path.unlink(missing_ok=True)


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
