"""The named datasets' files (rotnet.readers): CIFAR-100 and STL-10 in their official layouts, read without running
code; a modified copy warned about once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from rotnet.errors import RotnetError
from rotnet.readers import load_cifar10
from tests.helpers import (
    load_data,
    write_fake_cifar100,
    write_fake_stl10,
)


@pytest.mark.parametrize("names", [b"\xff\xfeairplane\xa0bird", b"one two three"])
def test_an_unreadable_stl10_class_names_file_is_a_warning_not_a_traceback(tmp_path, names):
    """A class_names.txt that is not UTF-8 raised UnicodeDecodeError; one of the wrong length was used silently."""
    from rotnet.readers import load_stl10

    root, _ = write_fake_stl10(tmp_path)
    (root / "stl10_binary" / "class_names.txt").write_bytes(names)
    with pytest.warns(UserWarning, match="naming the classes 0-9"):
        data = load_stl10(root, download=False)
    assert data.class_names == tuple("0123456789")


def test_a_modified_cifar_is_warned_about_once_per_process_and_data_root(tmp_path):
    """A reproduce job's log repeated the warning before every run it loaded the data for."""
    import warnings

    from tests.conftest import write_fake_cifar

    root = write_fake_cifar(tmp_path / "data")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(3):
            load_cifar10(root, download=False)
        load_cifar10(Path(os.path.relpath(root)), download=False)  # the same root, spelled otherwise
    assert sum("differs from the official release" in str(w.message) for w in seen) == 1


def test_cifar100_fine_and_coarse(tmp_path):
    root = write_fake_cifar100(tmp_path)
    fine = load_data("cifar100", root=root)
    assert fine.train_images.shape == (60, 3, 32, 32) and fine.num_classes == 100
    assert fine.class_names[3] == "fine3" and fine.train_labels[:3].tolist() == [0, 1, 2]
    coarse = load_data("cifar100-coarse", root=root)
    assert coarse.num_classes == 20 and coarse.class_names[1] == "c1" and int(coarse.train_labels.max()) == 19
    assert fine.fingerprint["name"] == "cifar100" and fine.mean != (0.4914, 0.4822, 0.4465)  # its own statistics


def test_stl10_reads_column_major_images_and_one_based_labels(tmp_path):
    root, arrays = write_fake_stl10(tmp_path)
    data = load_data("stl10", root=root)
    assert torch.equal(data.train_images, torch.from_numpy(arrays["train"]))
    assert torch.equal(data.test_images, torch.from_numpy(arrays["test"]))
    assert data.train_labels[:3].tolist() == [0, 1, 2] and data.class_names[0] == "class0"
    unlabeled = load_data("stl10-unlabeled", root=root)
    assert torch.equal(unlabeled.train_images, torch.from_numpy(arrays["unlabeled"])) and not unlabeled.labeled
    small = load_data("stl10", 32, root=root)
    assert small.train_images.shape == (40, 3, 32, 32) and small.fingerprint["image_size"] == 32


def test_a_truncated_stl10_file_is_one_line(tmp_path):
    root, _ = write_fake_stl10(tmp_path)
    (root / "stl10_binary/train_X.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(RotnetError, match="not a whole number of 3x96x96 images"):
        load_data("stl10", root=root)
