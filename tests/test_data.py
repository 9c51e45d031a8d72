"""The Dataset and its policy (rotnet.data): safe class names, normalization (a channel without spread refused),
balanced subsets, CIFAR-10 read into it."""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rotnet.cli import main
from rotnet.data import balanced_subset, short_classes
from rotnet.errors import RotnetError
from rotnet.readers import FOLDER, load_cifar10, safe_unpickle
from tests.conftest import write_fake_cifar
from tests.helpers import (
    TINY_ARGS,
    UNSAFE,
    images,
    save,
)


def test_reads_fake_cifar(fake_data):
    assert fake_data.train_images.shape == (80, 3, 32, 32) and fake_data.train_images.dtype == torch.uint8
    assert fake_data.test_images.shape == (16, 3, 32, 32)
    assert fake_data.class_names[0] == "airplane"
    assert not fake_data.checksums_match


def test_image_layout_is_chw_row_major(tmp_path):
    root = write_fake_cifar(tmp_path)
    raw = pickle.load(open(root / FOLDER / "data_batch_1", "rb"), encoding="latin1")  # our own test file
    with pytest.warns(UserWarning, match="differs from the official release"):
        data = load_cifar10(root, download=False)
    row = raw["data"][0]
    assert data.train_images[0, 1, 2, 3] == row[1 * 1024 + 2 * 32 + 3]


class Payload:
    """Unpickling this runs os.system, which would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_reader_refuses_code_payload_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": Payload(marker), "labels": []}, protocol=2))
    with pytest.raises(RotnetError, match="refusing"):
        safe_unpickle(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload is real: a plain unpickler runs it
    assert marker.exists()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b.update(data=b["data"][:, :100]), r"\(N, 3072\) uint8"),
        (lambda b: b.update(data=b["data"].astype(np.float32)), r"\(N, 3072\) uint8"),
        (lambda b: b.update(labels=[11] * len(b["labels"])), "labels must lie in 0-9"),
        (lambda b: b.update(labels=b["labels"][:-1]), "images but"),
    ],
)
def test_reader_validates_batches(tmp_path, mutate, message):
    root = write_fake_cifar(tmp_path)
    path = root / FOLDER / "data_batch_2"
    batch = pickle.loads(path.read_bytes())
    mutate(batch)
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(RotnetError, match=message):
        load_cifar10(root, download=False)


def test_truncated_batch_is_a_clear_error(tmp_path):
    root = write_fake_cifar(tmp_path)
    path = root / FOLDER / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(RotnetError, match="truncated or corrupt"):
        load_cifar10(root, download=False)


def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(RotnetError, match="put the cifar-10-batches-py folder under"):
        load_cifar10(tmp_path / "nowhere", download=False)


def test_balanced_subsets_are_nested_and_balanced():
    labels = torch.arange(1000) % 10
    small, large = balanced_subset(labels, 3, seed=1), balanced_subset(labels, 20, seed=1)
    assert set(small.tolist()) <= set(large.tolist())
    assert torch.equal(torch.bincount(labels[large]), torch.full((10,), 20))
    assert not torch.equal(small, balanced_subset(labels, 3, seed=2))


def test_a_subset_takes_all_of_a_smaller_class_and_counts_unlabeled_images_as_one():
    """N per class refused data with a smaller class ("class 0 has 50 training images, fewer than 200 per class"),
    so the smoke preset failed on any small dataset; unlabeled images (-1) made the subset an error."""
    labels = torch.cat([torch.zeros(5), torch.ones(50), torch.full((30,), 2)]).long()
    picked = labels[balanced_subset(labels, 20, seed=0)]
    assert torch.bincount(picked).tolist() == [5, 20, 20]
    assert short_classes(labels, 20) == {0: 5}
    unlabeled = torch.full((40,), -1)
    assert len(balanced_subset(unlabeled, 25, seed=0)) == 25 and short_classes(unlabeled, 50) == {-1: 40}
    many = torch.arange(1000) % 10  # where every class has enough, the subset is the one it always was
    assert set(balanced_subset(many, 3, seed=1).tolist()) <= set(balanced_subset(many, 20, seed=1).tolist())


REAL = os.environ.get("ROTNET_DATA")


@pytest.mark.skipif(not REAL or not (Path(REAL) / FOLDER).is_dir(), reason="ROTNET_DATA does not hold CIFAR-10")
def test_real_cifar10_counts():
    from torchvision.datasets import CIFAR10

    folder = Path(REAL) / FOLDER
    official = all(
        hashlib.md5((folder / name).read_bytes(), usedforsecurity=False).hexdigest() == md5
        for name, md5 in CIFAR10.train_list + CIFAR10.test_list
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_cifar10(REAL, download=False)
    # A copy that differs from the official release warns and says so in the Dataset; an official one does neither.
    assert any("differs from the official release" in str(w.message) for w in caught) == (not official)
    assert data.checksums_match == official
    assert len(data.train_images) == 50_000 and len(data.test_images) == 10_000
    assert torch.equal(torch.bincount(data.train_labels), torch.full((10,), 5000))
    assert torch.equal(torch.bincount(data.test_labels), torch.full((10,), 1000))
    assert data.class_names == (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_a_constant_channel_is_named_before_training(tmp_path, fake_root, channel, capsys):
    """A constant blue channel ended in "non-finite loss at epoch 1, step 1" without naming the zero spread."""

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


def test_every_kind_of_unsafe_name_is_named(tmp_path):
    """The rule itself, beyond the metadata files: what a name must be to stand for one folder."""
    from rotnet.data import name_problem

    assert [name_problem(n) != "" for n in [*UNSAFE, ".", "", " ", "a\0b", "tab\there"]] == [True] * 10
    assert [name_problem(n) for n in ["cat", "sea lion", "vélo", "9", "a.b", "..."]] == [""] * 6
