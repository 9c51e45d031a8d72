"""The one entry to data (rotnet.datasets): a configuration's datasets loaded, pretraining on one and transferring to
another, class names from metadata checked for every source."""

import json
import pickle
import re
from pathlib import Path

import pytest

from rotnet.cli import main
from rotnet.config import DataOptions
from rotnet.datasets import load_dataset
from rotnet.errors import RotnetError
from rotnet.readers import load_cifar10
from tests.helpers import (
    TINY_PRESET,
    UNSAFE,
    write_fake_cifar100,
    write_fake_stl10,
    write_folder,
)


def test_reproduce_pretrains_on_a_folder_and_transfers_to_cifar100(tmp_path, fake_root):
    """Every experiment across datasets: rotation on an unlabeled image folder, the four transfers on CIFAR-100;
    the report names both datasets."""
    data_root = write_fake_cifar100(tmp_path / "data", n_train=200, n_test=20)
    pixels = load_cifar10(fake_root, download=False).train_images.numpy()
    write_folder(tmp_path / "unlabeled", pixels[:40])
    root = tmp_path / "runs"
    args = ["reproduce", "--preset", TINY_PRESET, "--runs-root", str(root), "--data-root", str(data_root)]
    args += ["--no-download", "--jobs", "1", "--dataset", "cifar100", "--pretrain-dataset", str(tmp_path / "unlabeled")]
    assert main(args) == 0
    rotation = root / "unlabeled/resnet18/rotation/seed0"
    assert json.loads((rotation / "config.json").read_text())["dataset"]["name"] == "folder"
    transfer = root / "cifar100_from_unlabeled/resnet18/full-from-rotation/seed0"
    record = json.loads((transfer / "config.json").read_text())
    assert record["init_weights"] == str(rotation / "model.safetensors")
    assert json.loads((transfer / "result.json").read_text())["class_names"][0] == "fine0"
    assert (root / "cifar100/resnet18/full-from-random/seed0/result.json").is_file()
    report = (root / "report.md").read_text()
    assert "cifar100 (pretrained on unlabeled)" in report and "| unlabeled |" in report


def test_a_transfer_seed_pretrained_on_other_images_is_not_pooled(tmp_path, fake_root):
    """The pretraining folder gained images between seed 0's plan and seed 1's: the rotation row parts the two
    seeds (their data differ), and the transfer row, fine-tuned on the same CIFAR-100 by both, counted both as one
    pipeline ("n=2, ok")."""
    data_root = write_fake_cifar100(tmp_path / "data", n_train=200, n_test=20)
    pixels = load_cifar10(fake_root, download=False).train_images.numpy()
    photos, root = tmp_path / "unlabeled", tmp_path / "runs"
    args = ["reproduce", "--preset", TINY_PRESET, "--runs-root", str(root), "--data-root", str(data_root)]
    args += ["--no-download", "--jobs", "1", "--dataset", "cifar100", "--pretrain-dataset", str(photos)]
    args += ["--experiments", "full-from-rotation"]
    write_folder(photos, pixels[:40])
    assert main([*args, "--seeds", "0"]) == 0
    write_folder(photos, pixels[:48])  # 8 more images
    assert main([*args, "--seeds", "1"]) == 0
    rows = {r["experiment"]: r for r in json.loads((root / "results.json").read_text())["rows"]}
    for experiment in ("rotation", "full-from-rotation"):
        row = rows[experiment]
        assert row["n"] == 1 and row["status"].startswith("seed 1 not pooled: another protocol than seed 0 ("), row
    assert "its rotation run's data " in rows["full-from-rotation"]["status"]


def with_class_names(source: str, root: Path, names: list[str]) -> Path:
    """A dataset of `source` in its official layout whose metadata names the classes `names`."""
    from tests.conftest import write_fake_cifar

    if source == "cifar10":
        write_fake_cifar(root)
        with open(root / "cifar-10-batches-py/batches.meta", "wb") as f:
            pickle.dump({"label_names": names, "num_cases_per_batch": 10, "num_vis": 3072}, f, protocol=2)
    elif source == "cifar100":
        write_fake_cifar100(root)
        meta = {
            "fine_label_names": names + [f"fine{i}" for i in range(10, 100)],
            "coarse_label_names": [f"c{i}" for i in range(20)],
        }
        with open(root / "cifar-100-python/meta", "wb") as f:
            pickle.dump(meta, f, protocol=2)
    else:
        write_fake_stl10(root)
        (root / "stl10_binary/class_names.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.mark.parametrize("bad", [*UNSAFE, "duplicate"])
@pytest.mark.parametrize("source", ["cifar10", "cifar100", "stl10"])
def test_a_class_name_from_a_datasets_metadata_is_one_folder_name_or_refused(tmp_path, source, bad):
    """A class name from a dataset's metadata (STL-10's class_names.txt, CIFAR's meta) that is not one safe folder
    name, or repeats another, is refused where every reader hands names over (the Dataset), so `export-images`
    writes nothing outside OUT."""
    names = [f"class{i}" for i in range(10)]
    bad = str(tmp_path / "absolute") if bad.startswith("/") else bad  # a place no other test run wrote
    names[3] = "class2" if bad == "duplicate" else bad
    root = with_class_names(source, tmp_path / "data", names)
    out = tmp_path / "deep/er/out"
    args = ["export-images", source, str(out), "--data-root", str(root), "--no-download"]
    assert main(args) == 2
    assert not (tmp_path / "outside").exists() and not (tmp_path / "absolute").exists()
    with pytest.raises(RotnetError, match=f"the class name {re.escape(repr(names[3]))}|two classes are named"):
        load_dataset(source, options=DataOptions(root, False))
