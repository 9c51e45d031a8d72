"""The named datasets' files (rotnet.readers): CIFAR-10/100 and STL-10 in their official layouts, read without
running code, validated, a modified copy warned about once."""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rotnet.errors import RotnetError
from rotnet.readers import FOLDER, load_cifar10, load_cifar100, safe_unpickle
from tests.conftest import write_fake_cifar
from tests.helpers import (
    load_data,
    write_fake_cifar100,
    write_fake_stl10,
)


@pytest.mark.parametrize("names", [b"\xff\xfeairplane\xa0bird", b"one two three"])
def test_an_unreadable_stl10_class_names_file_is_a_warning_not_a_traceback(tmp_path, names):
    """A class_names.txt that is not UTF-8, or of the wrong length, is a warning, and the classes are named 0-9."""
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
        (lambda b, n: b.update(data=b["data"][:, :100]), r"\(N, 3072\) uint8"),
        (lambda b, n: b.update(data=b["data"].astype(np.float32)), r"\(N, 3072\) uint8"),
        (lambda b, n: b.update(labels=[n + 1] * len(b["labels"])), "labels must lie in 0-N"),
        (lambda b, n: b.update(labels=b["labels"][:-1]), "images but"),
        # Labels that are no integers were cast to int64: 3.5 read as class 3, "3" parsed, True taken as class 1.
        (lambda b, n: b.update(labels=[x + 0.5 for x in b["labels"]]), r"labels must be integers; got \d+\.5$"),
        (lambda b, n: b.update(labels=[float(x) for x in b["labels"]]), r"labels must be integers; got \d+\.0$"),
        (lambda b, n: b.update(labels=[str(x) for x in b["labels"]]), r"labels must be integers; got '\d+'$"),
        (lambda b, n: b.update(labels=[True] * len(b["labels"])), "labels must be integers; got True"),
        (lambda b, n: b.update(labels=[*b["labels"][:-1], None]), "labels must be integers; got None"),
        (lambda b, n: b.update(labels=np.array(b["labels"], dtype=np.float32)), "integers; got an array of float32"),
        (lambda b, n: b.update(labels=[*b["labels"][:-1], 2**70]), "labels must lie in 0-N; found one beyond int64"),
    ],
)
@pytest.mark.parametrize("kind", ["cifar10", "cifar100", "cifar100-coarse"])
def test_reader_validates_batches(tmp_path, mutate, message, kind):
    """Every CIFAR file kind goes through readers._read_batch: a CIFAR-10 batch, CIFAR-100's fine and coarse labels."""
    classes, key = {"cifar10": (10, "labels"), "cifar100": (100, "fine_labels"),
                    "cifar100-coarse": (20, "coarse_labels")}[kind]  # fmt: skip
    if kind == "cifar10":
        root = write_fake_cifar(tmp_path)
        path = root / FOLDER / "data_batch_2"
    else:
        root = write_fake_cifar100(tmp_path)
        path = root / "cifar-100-python/train"
    batch = pickle.loads(path.read_bytes())
    batch["labels"] = batch.pop(key)
    mutate(batch, classes)
    batch[key] = batch.pop("labels")
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(RotnetError, match=message.replace("0-N", f"0-{classes - 1}")):
        if kind == "cifar10":
            load_cifar10(root, download=False)
        else:
            load_cifar100(root, download=False, coarse=kind == "cifar100-coarse")


def test_truncated_batch_is_a_clear_error(tmp_path):
    root = write_fake_cifar(tmp_path)
    path = root / FOLDER / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(RotnetError, match="truncated or corrupt"):
        load_cifar10(root, download=False)


def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(RotnetError, match="put the cifar-10-batches-py folder under"):
        load_cifar10(tmp_path / "nowhere", download=False)


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
