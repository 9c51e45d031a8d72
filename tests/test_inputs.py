"""Honest inputs (issue 23): a contradiction or an impossible value is refused in one line before anything is
written; an image folder's files, classes and cache mean exactly what a user sees in them."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rotnet.errors import RotnetError
from tests.helpers import (
    TINY_ARGS,
    TINY_PRESET,
    every,
    images,
    labeled,
    load_folder,
    no_hang,
    reproduce,
    save,
    write_fake_stl10,
)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"experiments": ("nope",)}, "unknown experiment 'nope'"),
        ({"experiments": ("rotation", "full-from-ranodm")}, "did you mean full-from-random"),
        ({"archs": ("resnet19",)}, "unknown arch 'resnet19'"),
        ({"archs": "resnet"}, "unknown arch 'resnet'"),
    ],
)
def test_the_python_reproduce_refuses_unknown_names_before_writing(tmp_path, fake_root, given, named):
    """Was a raw KeyError, or "holds no rotnet runs" after writing reproduce.json (an unknown arch planned nothing)."""
    import rotnet

    with pytest.raises(RotnetError, match=named):
        rotnet.reproduce(preset=TINY_PRESET, runs_root=tmp_path, data_root=fake_root, download=False, **given)
    assert not list(tmp_path.iterdir())


def test_the_python_reproduce_takes_one_name_as_a_one_name_tuple(tiny_runs, tmp_path, fake_root):
    """`archs="resnet18"` was read letter by letter (the session's rotation run is reused: nothing trains)."""
    import json
    import shutil

    import rotnet

    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    rotnet.reproduce(
        preset=TINY_PRESET, runs_root=tmp_path, data_root=fake_root, download=False, archs="resnet18", seeds=0,
        experiments="rotation",
    )  # fmt: skip
    record = json.loads((tmp_path / "reproduce.json").read_text())
    assert record["archs"] == ["resnet18"] and record["seeds"] == [0] and record["runs"] == ["resnet18/rotation/seed0"]


# --- image folders: classes ---------------------------------------------------------------------------------------


def test_an_empty_class_folder_is_refused_not_made_a_class(tmp_path):
    """It became a class no image has: a 3-way head and accuracy for 2 classes."""
    root = labeled(tmp_path / "pets", {"cat": 3, "dog": 3}, {"cat": 2, "dog": 2})
    (root / "train" / "bird").mkdir()
    with pytest.raises(RotnetError, match="bird .*hold no images"):
        load_folder(root)


def test_a_test_class_that_training_lacks_is_named(tmp_path):
    """Was "has no class labels" (the folder read as unlabeled), without saying which class."""
    root = labeled(tmp_path / "pets", {"cat": 3, "dog": 3}, {"cat": 2, "dog": 2, "fox": 1})
    with pytest.raises(RotnetError, match="class\\(es\\) fox that train/ lacks"):
        load_folder(root)


def test_a_test_split_missing_a_class_warns_what_its_accuracy_covers(tmp_path):
    root = labeled(tmp_path / "pets", {"cat": 3, "dog": 3, "fox": 3}, {"cat": 2, "dog": 2})
    with pytest.warns(UserWarning, match="no images of fox; its accuracy covers the other 2 classes"):
        data = load_folder(root)
    assert data.class_names == ("cat", "dog", "fox")


def test_images_in_subfolders_of_a_class_belong_to_that_class(tmp_path):
    """ImageFolder labels train/cat/indoor/x.png as cat; rotnet read the whole folder as unlabeled."""
    root = labeled(tmp_path / "pets", {"cat": 2, "dog": 2}, {"cat": 1, "dog": 1})
    save(root / "train" / "cat" / "indoor", images(2, 9), ["indoor-0.png", "indoor-1.png"])
    data = load_folder(root)
    assert data.class_names == ("cat", "dog") and sorted(data.train_labels.tolist()) == [0, 0, 0, 0, 1, 1]


def test_an_image_outside_every_class_folder_is_refused(tmp_path):
    root = labeled(tmp_path / "pets", {"cat": 2, "dog": 2}, {"cat": 1, "dog": 1})
    save(root / "train", images(1, 9), ["stray.png"])
    with pytest.raises(RotnetError, match="stray.png sits in train/ outside any class folder"):
        load_folder(root)


# --- image folders: copies --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["same bytes", "same pixels, another format"])
def test_no_held_out_image_is_a_copy_of_a_training_image(tmp_path, how):
    """Copies under other names (a folder assembled twice, a PNG beside its BMP) landed on both sides of the split,
    so test accuracy measured memory."""
    folder = tmp_path / "photos"
    pixels = images(12)
    save(folder, pixels)
    names = [f"copy-{i}.{'png' if how == 'same bytes' else 'bmp'}" for i in range(12)]
    save(folder / "again", pixels, names)
    with pytest.warns(UserWarning, match="12 images repeat another's pixels"):
        data = load_folder(folder)
    train = {bytes(x.numpy()) for x in data.train_images}
    assert len(data.train_images) + len(data.test_images) == 12
    assert not any(bytes(x.numpy()) in train for x in data.test_images)
    assert data.fingerprint["duplicates"] == 12


def test_a_labeled_test_image_that_copies_a_training_image_is_not_tested(tmp_path):
    root = labeled(tmp_path / "pets", {"cat": 3, "dog": 3}, {"cat": 2, "dog": 2})
    leak = np.asarray(Image.open(root / "train/cat/train-cat-0.png"))
    save(root / "test" / "cat", leak[None], ["leak.png"])
    with pytest.warns(UserWarning, match="1 images repeat"):
        data = load_folder(root)
    assert len(data.test_images) == 4 and len(data.train_images) == 6


# --- image folders: the cache -----------------------------------------------------------------------------------


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
    """Zeroed pixels inside the cache were used (never compared with images_sha256); an empty file raised EOFError;
    garbage got numpy's advice to pass allow_pickle."""
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
    """A read-only dataset folder with a stale cache: the error gave no way out. (Tests may run as root, whom a
    read-only mode does not stop, so the refusal is the file system's answer, made here.)"""
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
    """`--image-size 100000` made a 720 GB sparse file, then died of SIGBUS (or was killed) with no message."""
    import shutil

    folder = tmp_path / "photos"
    save(folder, images(6))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10_000))
    with pytest.raises(RotnetError, match="6 images at 64x64 need 7.37e-05 GB .*--image-size"):
        load_dataset_sized(folder, 64)
    assert not list((folder / ".rotnet-cache").iterdir())


def load_dataset_sized(folder: Path, size: int):
    from rotnet.config import DataOptions
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
def test_sigterm_while_preparing_removes_the_partial_file_and_says_so(
    tmp_path, fake_root, monkeypatch, capsys, command
):
    """The partial cache file (full size) was left behind and nothing was printed; `reproduce` exited 2 ("holds no
    rotnet runs") instead of 143."""
    import signal

    from rotnet import imagecache
    from tests.helpers import cli

    folder = tmp_path / "photos"
    save(folder, images(6))
    real, calls = imagecache.decode, []

    def decode_then_term(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **kw)

    monkeypatch.setattr(imagecache, "decode", decode_then_term)
    args = [command, *(["rotation"] if command == "train" else ["--experiments", "rotation"])]
    assert cli(*args, "--dataset", str(folder), root=tmp_path / "runs", data=fake_root) == 143
    err = capsys.readouterr().err
    assert "stopped while preparing images" in err
    assert "checkpoint saved" not in err  # none was: a stop before a run's first checkpoint says so
    assert not list((folder / ".rotnet-cache").iterdir())


def test_a_second_ctrl_c_before_any_run_began_exits_130_not_2(tmp_path, fake_root, monkeypatch, capsys):
    from rotnet import runner
    from tests.helpers import cli

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_in_turn", interrupted)
    assert cli("reproduce", "--experiments", "rotation", "--jobs", "1", root=tmp_path, data=fake_root) == 130
    assert "holds no rotnet runs" not in capsys.readouterr().err


@pytest.mark.parametrize("names", [b"\xff\xfeairplane\xa0bird", b"one two three"])
def test_an_unreadable_stl10_class_names_file_is_a_warning_not_a_traceback(tmp_path, names):
    """A class_names.txt that is not UTF-8 raised UnicodeDecodeError; one of the wrong length was used silently."""
    from rotnet.readers import load_stl10

    root, _ = write_fake_stl10(tmp_path)
    (root / "stl10_binary" / "class_names.txt").write_bytes(names)
    with pytest.warns(UserWarning, match="naming the classes 0-9"):
        data = load_stl10(root, download=False)
    assert data.class_names == tuple("0123456789")


@pytest.mark.parametrize("size", ["100000", "4097", "7"])
def test_an_impossible_image_size_is_one_line_before_anything_is_written(tmp_path, fake_root, capsys, size):
    """`--image-size 100000` asked for a 3 TB array (a sparse file for a folder, memory for CIFAR-10)."""
    from tests.helpers import cli

    assert cli("train", "rotation", "--image-size", size, root=tmp_path / "runs", data=fake_root) == 2
    err = capsys.readouterr().err
    assert "image_size must be 0 (the dataset's own) or from 8 to 4096" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_modified_cifar_is_warned_about_once_per_process_and_data_root(tmp_path):
    """A reproduce job's log repeated the warning before every run it loaded the data for."""
    import warnings

    from rotnet.readers import load_cifar10
    from tests.conftest import write_fake_cifar

    root = write_fake_cifar(tmp_path / "data")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(3):
            load_cifar10(root, download=False)
        load_cifar10(Path(os.path.relpath(root)), download=False)  # the same root, spelled otherwise
    assert sum("differs from the official release" in str(w.message) for w in seen) == 1


def test_a_short_class_is_named_once_per_plan_not_before_every_run(tmp_path, fake_root, capsys):
    """Seen in the README walk-through on 500 images: the same warning before each of the five smoke runs."""
    from rotnet.cli import main

    args = ("--experiments", "layer4-from-random,full-from-random", "--set", "train_per_class=20")
    assert main(reproduce(tmp_path, fake_root, *args)) == 0  # one epoch each
    assert capsys.readouterr().err.count("fewer than 20 training images per class") == 1


def test_a_prepared_cache_is_used_as_it_is_on_the_next_load(tmp_path, capsys):
    """The record's images_sha256 (hashed as the images are decoded) is the sha256 of the array the next load reads,
    also when a bad file was skipped and the array rewritten shorter: else every load would prepare again."""
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


# Issue 34: what a run learns from is what the user's folder says, and a degenerate input is named before training.


@pytest.mark.parametrize("skip", [False, True])
def test_a_fifo_among_the_images_is_named_not_waited_on(tmp_path, skip):
    """A FIFO named x.png among the images hung the command forever."""

    folder = tmp_path / "photos"
    save(folder, images(8))
    os.mkfifo(folder / "x.png")
    with no_hang():
        if skip:
            assert len(every(load_folder(folder, skip_bad_images=True))) == 8
        else:
            with pytest.raises(RotnetError, match=r"x\.png is a FIFO, not a regular file"):
                load_folder(folder)


@pytest.mark.parametrize("where", ["first", "middle"])
def test_skip_bad_images_skips_the_first_image_too(tmp_path, where):
    """`--skip-bad-images` never skipped the first image: the folder's size was read from it, unguarded."""
    folder = tmp_path / "photos"
    save(folder, images(8))
    (folder / ("0.png" if where == "first" else "003a.png")).write_bytes(b"not an image")
    with pytest.raises(RotnetError, match="unreadable|cannot read"):
        load_folder(folder)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        assert len(every(load_folder(folder, skip_bad_images=True))) == 8


@pytest.mark.parametrize("link", ["a class folder inside another", "a file of one class in another"])
def test_an_image_reached_under_two_classes_is_refused(tmp_path, link):
    """A link `test/cat/dogs -> ../dog` scored the dog test images as cat, with a false warning that test had no dog
    images. Class membership is the path as the user wrote it; one image under two classes is ambiguous."""
    root = labeled(tmp_path / "pets", {"cat": 4, "dog": 4}, {"cat": 3, "dog": 3})
    if link == "a class folder inside another":
        os.symlink("../dog", root / "test/cat/dogs")
    else:
        os.symlink(root / "train/dog/train-dog-0.png", root / "train/cat/also-a-dog.png")
    with pytest.raises(RotnetError, match="an image has one class: remove the link"):
        load_folder(root)


def test_a_link_to_a_folder_of_the_same_class_is_fine(tmp_path):
    root = labeled(tmp_path / "pets", {"cat": 4, "dog": 4}, {"cat": 3, "dog": 3})
    os.symlink(root / "train/cat", root / "train/cat/again")  # a loop inside one class: listed once
    assert len(every(load_folder(root))) == 14


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_a_constant_channel_is_named_before_training(tmp_path, fake_root, channel, capsys):
    """A constant blue channel ended in "non-finite loss at epoch 1, step 1" without naming the zero spread."""
    from rotnet.cli import main

    pixels = images(40)
    pixels[..., channel] = 200
    save(tmp_path / "photos", pixels)
    args = ["train", "rotation", "--dataset", str(tmp_path / "photos"), "--runs-root", str(tmp_path / "r"), *TINY_ARGS]
    assert main(args) == 2
    name = ("red", "green", "blue")[channel]
    err = capsys.readouterr().err
    assert f"the {name} channel of" in err and "--normalization seed" in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*"))  # refused before any folder
    assert main([*args, "--normalization", "seed"]) == 0  # the fix the message names


@pytest.mark.parametrize("side", [1, 2, 3])
def test_images_too_small_to_tell_their_rotation_are_refused(tmp_path, side):
    """1-pixel images trained at chance without a word: their four rotations are one image."""
    folder = tmp_path / "dots"
    save(folder, images(8, size=side))
    with pytest.raises(RotnetError, match=f"{side}x{side}, too small to tell its rotation"):
        load_folder(folder)


@pytest.mark.parametrize(("top", "expected"), [(1.0, 255), (255.0, 255), (65535.0, 255), (0.5, 128)])
def test_a_float_image_is_scaled_by_its_range(tmp_path, top, expected):
    """Float TIFFs holding 0-255 became 0/1 images (they were read as 16-bit)."""
    folder = tmp_path / "floats"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        values = rng.uniform(0, top, (8, 8)).astype(np.float32)
        values[0, 0] = top  # the brightest value of the folder; 0.5 in a 0-1 image is half of white
        Image.fromarray(values, "F").save(folder / f"{i}.tif")
    assert int(every(load_folder(folder)).max()) == expected


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
    """A full disk while writing the record left a .npy that blocked every retry."""
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
    """A folder name over ~220 characters could never be cached (the cache file's name passed 255 bytes)."""
    folder = tmp_path / ("p" * 240)
    save(folder, images(40))
    assert len(every(load_folder(folder))) == 40
    assert all(len(p.name) < 200 for p in (folder / ".rotnet-cache").iterdir())
    from rotnet.cli import main

    assert main(["train", "rotation", "--dataset", str(folder), "--runs-root", str(tmp_path / "r"), *TINY_ARGS]) == 0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["reproduce", "--archs", ""], "the list of archs is empty"),
        (["reproduce", "--archs", " , "], "the list of archs is empty"),
        (["reproduce", "--experiments", ""], "the list of experiments is empty"),
        (["reproduce", "--seeds", ""], "--seeds expects comma-separated integers"),
        (["reproduce", "--jobs", "-3"], "--jobs (jobs) must be zero (auto) or a positive number"),
        (["train", "rotation", "--keep-epoch", "0"], "--keep-epoch (keep_epochs) must name epochs, 1 or more"),
        (["train", "rotation", "--keep-epoch", "99"], "--keep-epoch 99: .* trains 2 epoch"),
        (["train", "rotation", "--keep-checkpoints", "-1"], "--keep-checkpoints (keep_checkpoints) must be"),
        (["train", "rotation", "--checkpoint-minutes", "nan"], "--checkpoint-minutes (checkpoint_minutes) must be"),
    ],
)
def test_a_flag_out_of_range_is_refused_in_one_line_leaving_nothing(tmp_path, fake_root, capsys, args, named):
    """`--archs ""` meant "not given" and trained the default; `--keep-epoch 99` on a 2-epoch run was accepted."""
    import re

    from rotnet.cli import main

    root = tmp_path / "runs"
    common = ["--preset", TINY_PRESET, "--runs-root", str(root), "--data-root", str(fake_root), "--no-download"]
    assert main([*args, *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(named if ".*" in named else re.escape(named), err[0]), err
    assert not root.exists() or not any(root.rglob("*"))  # nothing started, nothing left


@pytest.mark.parametrize(
    ("call", "named"),
    [
        ({"archs": ()}, r"archs=\(\) names none"),
        ({"seeds": []}, r"seeds=\(\) names none"),
        ({"jobs": -3}, r"--jobs \(jobs\) must be zero"),
        ({"jobs": 1.5}, r"--jobs \(jobs\) must be zero"),
    ],
)
def test_the_python_api_validates_exactly_like_the_command_line(tmp_path, fake_root, call, named):
    """The API accepted jobs=-3 (and an empty archs meant the default): the checks live in the options both build."""
    import rotnet

    with pytest.raises(RotnetError, match=named):
        rotnet.reproduce(preset=TINY_PRESET, runs_root=tmp_path / "r", data_root=fake_root, download=False, **call)
    assert not (tmp_path / "r").exists()
