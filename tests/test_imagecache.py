"""An image folder's cache (rotnet.imagecache): decoded once, checked against its index on every load, prepared again
when the folder or the entry changed, and never a traceback on a full or read-only disk."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from rotnet import imagecache
from rotnet.cli import main
from rotnet.config import DataOptions
from rotnet.datasets import load_dataset
from rotnet.errors import RotnetError
from tests.helpers import (
    TINY_ARGS,
    cli,
    every,
    images,
    labeled,
    load_data,
    load_folder,
    save,
    write_folder,
)


def cache_files(folder: Path, suffix: str) -> list[Path]:
    return sorted((folder / ".rotnet-cache").glob(f"*{suffix}"))


def test_an_image_replaced_with_the_same_size_and_time_is_noticed(tmp_path):
    """The cache keyed on size and modification time only: a replaced image kept its old pixels."""
    folder = tmp_path / "photos"
    save(folder, images(6))
    load_folder(folder)
    target = folder / "003.png"
    before = target.stat()
    save(folder, images(6, seed=5)[3:4], ["003.png"])  # same size: 8x8 random PNGs compress alike
    if target.stat().st_size != before.st_size:
        pytest.skip("the replacement's size differs; the size alone notices it")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    data = load_folder(folder)
    assert any(np.array_equal(x.numpy().transpose(1, 2, 0), images(6, seed=5)[3]) for x in every(data))
    assert len(cache_files(folder, ".npy")) == 1  # the stale entry is gone, not kept beside the new one


@pytest.mark.parametrize("damage", ["zeroed pixels", "empty file", "garbage", "another array"])
def test_a_damaged_cache_entry_is_prepared_again_not_used_or_crashed_on(tmp_path, damage, capsys):
    """A cache entry with zeroed pixels, an empty file, garbage or another array is prepared again, never used and
    never a traceback."""
    folder = tmp_path / "photos"
    save(folder, images(6))
    good = every(load_folder(folder)).clone()
    (npy,) = cache_files(folder, ".npy")
    if damage == "zeroed pixels":
        array = np.load(npy, mmap_mode="r+")
        array[2] = 0
        array.flush()
        del array
    elif damage == "empty file":
        npy.write_bytes(b"")
    elif damage == "garbage":
        npy.write_bytes(pickle.dumps({"not": "an array"}))
    else:
        np.save(npy, np.zeros((6, 3, 4, 4), dtype=np.uint8))
    capsys.readouterr()
    assert torch_equal(every(load_folder(folder)), good)
    out = capsys.readouterr().out
    assert "does not match its index" in out and "allow_pickle" not in out


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_an_unwritable_cache_says_to_pass_cache_dir(tmp_path, monkeypatch):
    """A stale cache in a read-only folder is an error that names --cache-dir. (Tests may run as root, whom a read-
    only mode does not stop, so the file system's refusal is made here.)"""
    import tempfile

    folder = tmp_path / "photos"
    save(folder, images(6))

    def refuse(*a, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(RotnetError, match="Permission denied.*pass --cache-dir DIR"):
        load_folder(folder)
    monkeypatch.undo()
    load_folder(folder, cache_dir=tmp_path / "elsewhere")
    assert list((tmp_path / "elsewhere").glob("*.npy"))


def test_a_cache_larger_than_the_free_disk_is_refused_before_writing(tmp_path, monkeypatch):
    """A cache larger than the free disk (`--image-size 100000`) is refused before a byte is written."""
    import shutil

    folder = tmp_path / "photos"
    save(folder, images(6))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10_000))
    with pytest.raises(RotnetError, match="6 images at 64x64 need 7.37e-05 GB .*--image-size"):
        load_dataset_sized(folder, 64)
    assert not list((folder / ".rotnet-cache").iterdir())


def load_dataset_sized(folder: Path, size: int):
    from rotnet.datasets import load_dataset

    load_dataset.cache_clear()
    return load_dataset(str(folder), size, 0, DataOptions())


def test_a_disk_that_fills_while_preparing_is_an_error_not_a_sigbus(tmp_path, monkeypatch):
    import errno

    folder = tmp_path / "photos"
    save(folder, images(6))

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(RotnetError, match="no space left in .* for the prepared images; pass --cache-dir"):
        load_folder(folder)
    assert not list((folder / ".rotnet-cache").iterdir())


@pytest.mark.parametrize("command", ["train", "reproduce"])
@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_signal_while_preparing_removes_the_partial_file_and_says_so(
    tmp_path, fake_root, monkeypatch, capsys, command, sig, code
):
    """SIGTERM or SIGHUP while a cache is prepared removes the partial file, says so, and exits 128 + the signal
    (reproduce too); SIGHUP had ended the process where it stood, leaving the partial file."""
    import signal

    from rotnet import imagecache

    folder = tmp_path / "photos"
    save(folder, images(6))
    real, calls = imagecache.decode, []

    def decode_then_term(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), getattr(signal, sig))
        return real(*a, **kw)

    monkeypatch.setattr(imagecache, "decode", decode_then_term)
    args = [command, *(["rotation"] if command == "train" else ["--experiments", "rotation"])]
    assert cli(*args, "--dataset", str(folder), root=tmp_path / "runs", data=fake_root) == code
    err = capsys.readouterr().err
    assert "stopped while preparing images" in err
    assert "checkpoint saved" not in err  # none was: a stop before a run's first checkpoint says so
    assert not list((folder / ".rotnet-cache").iterdir())


def test_a_prepared_cache_is_used_as_it_is_on_the_next_load(tmp_path, capsys):
    """The index's images_sha256 (hashed while decoding) is the sha256 of the array the next load reads, also after a
    bad file was skipped and the array rewritten shorter: the next load uses it as it is."""
    import json

    from rotnet.imagecache import pixels_sha256

    folder = tmp_path / "photos"
    save(folder, images(6))
    (folder / "broken.png").write_bytes(b"not an image")
    load_folder(folder, skip_bad_images=True)
    (record_file,) = (folder / ".rotnet-cache").glob("*.json")
    (npy,) = (folder / ".rotnet-cache").glob("*.npy")
    assert json.loads(record_file.read_text())["images_sha256"] == pixels_sha256(np.load(npy, mmap_mode="r"))
    capsys.readouterr()
    load_folder(folder, skip_bad_images=True)
    assert "preparing" not in capsys.readouterr().out


def test_an_edited_cache_record_is_prepared_again_not_trusted(tmp_path, capsys):
    """Editing the cache record's `kept` list swapped labels silently: the record now carries its own digest."""
    root = labeled(tmp_path / "pets", {"cat": 4, "dog": 4}, {"cat": 3, "dog": 3})
    first = load_folder(root)
    record_file = cache_files(root, ".json")[0]
    record = json.loads(record_file.read_text())
    record["kept"][0], record["kept"][-1] = record["kept"][-1], record["kept"][0]
    record_file.write_text(json.dumps(record))
    again = load_folder(root)
    assert "does not match its index (the index was edited); preparing it again" in capsys.readouterr().out
    assert torch_equal(first.train_labels, again.train_labels) and torch_equal(every(first), every(again))


def test_a_cache_record_that_could_not_be_written_leaves_nothing_that_blocks_a_retry(tmp_path, monkeypatch):
    """An index that cannot be written (a full disk) takes its array with it, and the next try succeeds."""
    from rotnet import imagecache

    folder = tmp_path / "photos"
    save(folder, images(6))
    real = imagecache.atomic_write_text

    def full(path, text):
        raise RotnetError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(imagecache, "atomic_write_text", full)
    with pytest.raises(RotnetError, match="No space left"):
        load_folder(folder)
    assert not list((folder / ".rotnet-cache").iterdir())
    monkeypatch.setattr(imagecache, "atomic_write_text", real)
    assert len(every(load_folder(folder))) == 6


def test_a_folder_with_a_very_long_name_is_cached_and_run(tmp_path, fake_root):
    """A folder whose name is near the file system's limit is cached (names cut to config.MAX_SLUG plus a digest) and
    trained on."""
    folder = tmp_path / ("p" * 240)
    save(folder, images(40))
    assert len(every(load_folder(folder))) == 40
    assert all(len(p.name) < 200 for p in (folder / ".rotnet-cache").iterdir())

    assert main(["train", "rotation", "--dataset", str(folder), "--runs-root", str(tmp_path / "r"), *TINY_ARGS]) == 0


def test_the_cache_is_reused_and_a_changed_folder_is_prepared_again(tmp_path, monkeypatch):
    images = np.random.default_rng(4).integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    write_folder(tmp_path / "imgs", images)
    first = load_data(tmp_path / "imgs", 8, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1 and not (tmp_path / "imgs" / ".rotnet-cache").exists()

    def no_decode(*_):
        raise AssertionError("decoded again")

    monkeypatch.setattr(imagecache, "decode", no_decode)
    load_dataset.cache_clear()
    again = load_data(tmp_path / "imgs", 8, cache_dir=tmp_path / "cache")
    assert torch.equal(first.train_images, again.train_images)
    monkeypatch.undo()
    write_folder(tmp_path / "imgs", images[:1] // 2, split="extra")  # a new file: another listing
    load_dataset.cache_clear()
    changed = load_data(tmp_path / "imgs", 8, cache_dir=tmp_path / "cache")
    assert len(changed.train_images) + len(changed.test_images) == 7


def test_links_planted_in_the_cache_do_not_redirect_its_writes(tmp_path):
    """The cache's temporary files get fresh O_EXCL names: links at the names rotnet <= 0.3 used (predictable from
    the pid) leave the files they point to alone."""
    import os

    images = np.random.default_rng(5).integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    write_folder(tmp_path / "imgs", images)
    cache = tmp_path / "cache"
    first = load_data(tmp_path / "imgs", 8, cache_dir=cache)
    (npy,), (record,) = cache.glob("*.npy"), cache.glob("*.json")
    npy.unlink(), record.unlink()
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    for name in (f".{npy.name}.{os.getpid()}.tmp", f".{npy.name}.{os.getpid()}.short", f".{record.name}.tmp"):
        (cache / name).symlink_to(victim)
    load_dataset.cache_clear()
    again = load_data(tmp_path / "imgs", 8, cache_dir=cache)
    assert victim.read_text() == "mine" and torch.equal(first.train_images, again.train_images)
