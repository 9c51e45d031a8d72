"""An image folder's cache: its images decoded once (rotnet.images) into a uint8 array file beside an index of what
it holds, memory-mapped on every later load, checked against that index, and prepared again when either changed."""

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

from rotnet.config import DataOptions, dataset_slug
from rotnet.errors import Interrupted, RotnetError
from rotnet.files import atomic_write_text, open_dir, open_regular
from rotnet.images import decode, first_size
from rotnet.layout import read_json, refuse_inside_run
from rotnet.signals import raise_on_stop

CACHE = ".rotnet-cache"
FORMAT = 4  # of the cache files; a new format never reads an old one (2: decoded as seen; 3: pixel digests; 4: float
# images scaled by their range, images under MIN_SIDE refused, an index checked against its own digest)


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
    if target.is_file() and not target.is_symlink():  # an entry without its index: replaced, so its space counts
        free += target.stat().st_size
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
    """The cache folder: --cache-dir as named, or FOLDER/.rotnet-cache reached through no link (rotnet makes none:
    a link there would carry the prepared images, and their removal, elsewhere)."""
    cache = Path(options.cache_dir) if options.cache_dir else folder / CACHE
    if options.cache_dir:
        refuse_inside_run(cache, "--cache-dir")
    try:
        os.close(open_dir(cache, cache if options.cache_dir else folder, create=True))
    except RotnetError as e:
        if "is a link" in str(e):
            raise
        why = str(e).rsplit(": ", 1)[-1]  # the system's word for it (permission denied, read-only, ...)
        other = "another --cache-dir" if options.cache_dir else "--cache-dir DIR to keep it elsewhere"
        raise RotnetError(f"cannot write the prepared-images cache {cache} ({why}); pass {other}") from None
    return cache


def pixels_sha256(array: np.ndarray) -> str:
    h = hashlib.sha256()
    for start in range(0, len(array), 4096):
        h.update(np.ascontiguousarray(array[start : start + 4096]).tobytes())
    return h.hexdigest()


def cached(images_file: Path, index: dict, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    """The cache entry's images if they are exactly what its index says (shape and every pixel's sha256), else
    None and why not: a cache is rotnet's own file, so a damaged or changed one is prepared again, never used."""
    try:
        with open_regular(images_file, follow=False):  # not a FIFO, a device or a link: np.load would follow it
            pass
        array = np.load(images_file, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises many types (EOFError on an empty file); all mean "damaged"
        return None, f"it is not a readable array ({type(e).__name__})"
    if array.shape != shape:
        return None, f"it holds {array.shape}, its index {shape}"
    if pixels_sha256(array) != index.get("images_sha256"):
        return None, "its pixels changed since they were prepared"
    return array, ""


def index_digest(index: dict) -> str:
    """The sha256 of a cache index's fields: an edit to its `kept` list would give images other files' labels."""
    return hashlib.sha256(
        json.dumps({k: v for k, v in index.items() if k != "sha256"}, sort_keys=True).encode()
    ).hexdigest()


def index_problem(index, listing: str, count: int) -> str:
    """What is wrong with a cache index for a folder of `count` files with this listing digest ('' if nothing)."""
    if not isinstance(index, dict) or index.get("listing_sha256") != listing:
        return "absent"  # another listing: another entry (this one is stale, or not an index)
    kept = index.get("kept")
    if index.get("sha256") != index_digest(index) or index.get("count") != count or not isinstance(kept, list):
        return "the index was edited"
    if not all(isinstance(i, int) and 0 <= i < count for i in kept) or kept != sorted(set(kept)):
        return "the index was edited"
    return ""


def prepared(folder: Path, files: list[Path], image_size: int, options: DataOptions) -> tuple[torch.Tensor, dict]:
    """The folder's images as a memory-mapped uint8 tensor and its cache index, prepared now if the cache lacks
    them, the folder changed since (another listing digest is another cache entry), or the entry does not match
    its index. A new entry replaces the folder's older ones."""
    digest = listing_digest(files, folder)
    size = image_size or first_size(files, options.skip_bad_images)
    bad = "skip" if options.skip_bad_images else "all"
    prefix = f"{dataset_slug(str(folder))}-{image_size or 'native'}-"
    key = f"{prefix}{digest[:16]}-{bad}-v{FORMAT}"
    cache = cache_dir_for(folder, options)
    images_file, index_file = cache / f"{key}.npy", cache / f"{key}.json"
    index = read_json(index_file, follow=False)
    why, array = index_problem(index, digest, len(files)), None
    if not why:
        array, why = cached(images_file, index, (len(index["kept"]), 3, size, size))
    if array is None:
        if why != "absent":
            print(f"the cache entry {images_file} does not match its index ({why}); preparing it again", flush=True)
        print(f"preparing {len(files)} images of {folder} once, into {images_file}", flush=True)
        try:
            array, kept, notes, digests, sha = prepare(
                files, size, bool(image_size), images_file, options.skip_bad_images
            )
            index = {"folder": str(folder), "listing_sha256": digest, "kept": kept, "count": len(files)}
            index |= {"images_sha256": sha, "pixels": digests}
            index["converted"] = notes  # e.g. {"exif_orientation": 12, "scaled_to_8_bits": 3}
            index["sha256"] = index_digest(index)
            try:
                atomic_write_text(index_file, json.dumps(index))
            except RotnetError:  # e.g. a full disk: images without their index would only block the next try
                images_file.unlink(missing_ok=True)
                raise
        except PermissionError as e:
            raise RotnetError(
                f"cannot write the prepared-images cache in {cache} ({e.strerror}); pass --cache-dir DIR to keep it "
                f"elsewhere"
            ) from None
        remove_stale(cache, folder, prefix, bad, keep=key)
    with warnings.catch_warnings():  # a read-only memory map: torch warns it is not writable; nothing writes it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array), index


def remove_stale(cache: Path, folder: Path, prefix: str, bad: str, keep: str) -> None:
    """Delete the cache entries of this folder, size and bad-image mode that the new one replaces (an older listing
    or format): a cache keeps one entry per way of preparing a folder, not one per change."""
    for index_file in cache.glob(f"{glob.escape(prefix)}*-{bad}-v*.json"):
        stem = index_file.stem
        if stem == keep:
            continue
        index = read_json(index_file)
        if not isinstance(index, dict):
            continue
        owner = index.get("folder")
        if owner == str(folder) or (owner is None and cache == folder / CACHE):  # v2 entries did not say
            for path in (cache / f"{stem}.npy", index_file):
                if not path.is_symlink():
                    path.unlink(missing_ok=True)
