"""Datasets beyond CIFAR-10: CIFAR-100 and STL-10 in their official layouts, image folders, and transfer across
datasets. Every file here is written by the test in the format the real release uses."""

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rotnet import imagecache, imagefolder
from rotnet.cli import main
from rotnet.config import DataOptions
from rotnet.datasets import load_dataset
from rotnet.errors import RotnetError
from rotnet.experiments import resolve
from rotnet.layout import run_dir
from rotnet.readers import load_cifar10
from tests.helpers import (
    TINY,
    TINY_PRESET,
    UNSAFE,
    load_data,
    metrics,
    write_fake_cifar100,
    write_fake_stl10,
    write_folder,
)


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


def test_an_image_folder_reads_classes_in_imagefolder_order_and_names_in_canonical_order(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (8, 3, 16, 16), dtype=np.uint8)
    labels = [1, 0, 1, 1, 0, 0, 1, 0]
    write_folder(tmp_path / "pets", images, labels, "train")
    write_folder(tmp_path / "pets", images[:4] // 2, labels[:4], "test")  # not copies of training images
    data = load_data(tmp_path / "pets")
    assert data.class_names == ("cat", "dog")  # sorted, as torchvision's ImageFolder
    assert torch.equal(data.train_images, torch.from_numpy(images))  # by file name, whatever the class folder
    assert data.train_labels.tolist() == labels and data.test_labels.tolist() == labels[:4]
    import torchvision

    ref = torchvision.datasets.ImageFolder(tmp_path / "pets" / "train")
    assert tuple(ref.classes) == data.class_names
    assert data.checksums_match is None  # no official release to compare with: neither "official" nor "differs"


@pytest.mark.parametrize(
    ("dataset", "match", "shown"),
    [
        ("cifar10", True, "official cifar10 (md5)"),
        ("stl10", False, "differ from the official (warned)"),
        ("cifar100", None, "?"),
        ("/data/pets", None, "image folder (no official release)"),
        ("/data/pets", True, "image folder (no official release)"),  # what rotnet <= 0.4 recorded for a folder
    ],
)
def test_the_report_says_official_files_only_of_a_named_dataset(dataset, match, shown):
    from rotnet.sections import data_files_text

    assert data_files_text(dataset, match) == shown


def test_export_then_folder_is_the_same_data_and_the_same_run(tmp_path, fake_root):
    """The identity check of issue 12: CIFAR-10 exported to PNGs and read back is the pickle data, tensor for
    tensor, and a rotation run on it writes the same metrics.jsonl."""
    out = tmp_path / "cifar10-png"
    assert main(["export-images", "cifar10", str(out), "--data-root", str(fake_root), "--no-download"]) == 0
    pickled = load_data("cifar10", root=fake_root)
    folder = load_data(out, 32)
    for a in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(pickled, a), getattr(folder, a)), a
    assert folder.class_names == tuple(sorted(pickled.class_names))  # classes sorted; labels map by name
    common = ["--data-root", str(fake_root), "--no-download", *TINY]
    assert main(["train", "rotation", "--runs-root", str(tmp_path / "a"), *common]) == 0
    flags = ["--dataset", str(out), "--image-size", "32", "--normalization", "seed"]
    assert main(["train", "rotation", "--runs-root", str(tmp_path / "b"), *flags, *common]) == 0
    a = metrics(tmp_path / "a/resnet18/rotation/seed0")
    b = metrics(tmp_path / "b/cifar10-png-32px/resnet18/rotation/seed0")
    keys = ("epoch", "lr", "train_loss", "train_acc", "test_acc")
    assert [{k: r[k] for k in keys} for r in a] == [{k: r[k] for k in keys} for r in b]


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


def test_bad_images_are_named_and_skipped_only_when_asked(tmp_path):
    images = np.random.default_rng(5).integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)
    write_folder(tmp_path / "imgs", images)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(RotnetError, match=r"1 unreadable images, e\.g\. .*broken\.png.*--skip-bad-images"):
        load_data(tmp_path / "imgs", 8)
    data = load_data(tmp_path / "imgs", 8, skip_bad_images=True)
    assert len(data.train_images) + len(data.test_images) == 5 and data.fingerprint["skipped"] == 1


def test_mixed_sizes_need_image_size_and_are_then_resized(tmp_path):
    Image.new("RGB", (12, 12), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("RGB", (20, 10), (0, 255, 0)).save(tmp_path / "b.png")
    with pytest.raises(RotnetError, match="--image-size"):
        load_data(tmp_path)
    data = load_data(tmp_path, 8)
    assert data.train_images.shape[1:] == (3, 8, 8) and data.test_images.shape[1:] == (3, 8, 8)


def test_an_unsplit_folder_holds_out_a_seeded_tenth_and_cannot_be_classified(tmp_path, fake_root):
    images = np.random.default_rng(6).integers(0, 256, (40, 3, 32, 32), dtype=np.uint8)
    write_folder(tmp_path / "raw", images)
    a, b, c = load_data(tmp_path / "raw", 0, 0), load_data(tmp_path / "raw", 0, 0), load_data(tmp_path / "raw", 0, 1)
    assert len(a.test_images) == 4 and len(a.train_images) == 36 and torch.equal(a.test_images, b.test_images)
    assert not torch.equal(a.test_images, c.test_images)
    code = main(["train", "full-from-random", "--dataset", str(tmp_path / "raw"), "--runs-root", str(tmp_path / "r"),
                 "--data-root", str(fake_root), *TINY])  # fmt: skip
    assert code == 2 and not (tmp_path / "r").exists()


def test_a_config_names_one_run_per_dataset_pair():
    rot = resolve("rotation", overrides={"dataset": "stl10", "pretrain_dataset": "stl10-unlabeled"})
    assert (rot.dataset, rot.pretrain_dataset) == ("stl10-unlabeled", "")
    full = resolve("full-from-rotation", overrides={"dataset": "stl10", "pretrain_dataset": "stl10-unlabeled"})
    scratch = resolve("full-from-random", overrides={"dataset": "stl10", "pretrain_dataset": "stl10-unlabeled"})
    assert scratch.pretrain_dataset == "" and full.pretrain_dataset == "stl10-unlabeled"
    assert run_dir(Path("R"), rot) == Path("R/stl10-unlabeled/resnet18/rotation/seed0")
    assert run_dir(Path("R"), full) == Path("R/stl10_from_stl10-unlabeled/resnet18/full-from-rotation/seed0")
    assert run_dir(Path("R"), resolve("rotation")) == Path("R/resnet18/rotation/seed0")  # CIFAR-10: as before


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


def every_image(data) -> torch.Tensor:
    return torch.cat([data.train_images, data.test_images])


def test_a_phone_photo_is_decoded_as_it_is_displayed(tmp_path):
    """A JPEG whose EXIF Orientation says "rotate 90" was cached as stored, so its rotation labels were wrong."""
    upright = np.zeros((8, 8, 3), dtype=np.uint8)
    upright[:2] = 255  # a white band at the top, as a viewer shows it
    stored = np.rot90(upright, k=-1)  # stored turned clockwise; tag 8 says: turn 90 degrees counter-clockwise to view
    exif = Image.Exif()
    exif[0x0112] = 8
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        upright[-1, -1] = i  # distinct images: a copy would be used once
        stored = np.rot90(upright, k=-1)
        Image.fromarray(np.ascontiguousarray(stored)).save(folder / f"{i}.png", exif=exif)
    data = load_data(folder, 8)
    pixels = every_image(data)[0].numpy().transpose(1, 2, 0)
    assert (pixels[:2] > 200).all() and (pixels[2:] < 50).all()  # the band is on top: decoded as displayed
    assert data.fingerprint["converted"] == {"exif_orientation": 4}


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_a_16_bit_image_is_scaled_to_8_bits_not_clipped(tmp_path, mode):
    """A 0..65535 ramp (microscopy) became [0 255 255 255]."""
    ramp = np.array([[0, 21845, 43690, 65535]] * 4, dtype=np.uint16)
    folder = tmp_path / "micro"
    folder.mkdir()
    for i in range(3):
        ramp[-1, -1] = 65535 - 300 * i  # distinct images: a copy would be used once
        if mode == "I;16":
            Image.fromarray(ramp).save(folder / f"{i}.png")  # a 16-bit PNG
        else:
            Image.fromarray(ramp.astype(np.int32), "I").save(folder / f"{i}.tif")  # a 32-bit integer TIFF
    assert Image.open(next(folder.iterdir())).mode == mode  # the test really writes high-bit-depth files
    data = load_data(folder, 4)
    assert every_image(data)[0, 0, 0].tolist() == [0, 85, 170, 255]
    assert data.fingerprint["converted"] == {"scaled_to_8_bits": 3}


@pytest.mark.parametrize("links", ["one loop", "two loops", "file links", "folder link"])
def test_links_inside_an_image_folder_are_read_once_and_never_loop(tmp_path, links):
    """A link back to a parent made the listing hang (two loops) or read 24 images as 984, and every held-out test
    image was a copy of a training image."""
    import os

    images = np.random.default_rng(7).integers(0, 256, (24, 3, 8, 8), dtype=np.uint8)
    folder = tmp_path / "imgs"
    write_folder(folder, images[:12], split="a")
    write_folder(folder, images[12:], split="b")
    if links == "one loop":
        os.symlink(folder, folder / "a" / "up")
    elif links == "two loops":
        os.symlink(folder, folder / "a" / "up")
        os.symlink(folder / "a", folder / "b" / "over")
    elif links == "file links":
        for p in sorted((folder / "a").iterdir()):
            os.symlink(p, folder / "b" / f"copy-{p.name}")
    else:
        os.symlink(folder / "a", folder / "again")
    files = imagefolder.list_images(folder)
    assert len(files) == 24 and len({p.resolve() for p in files}) == 24
    data = load_data(folder, 8)
    train = {bytes(x.numpy()) for x in data.train_images}
    assert len(data.train_images) + len(data.test_images) == 24
    assert not any(bytes(x.numpy()) in train for x in data.test_images)  # no held-out image is a training image


def test_rotnets_own_outputs_inside_an_image_folder_are_never_read_as_images(tmp_path, tiny_runs):
    """A runs root inside an unlabeled image folder: the report's PNGs became the next run's training images."""
    import shutil

    images = np.random.default_rng(8).integers(0, 256, (10, 3, 8, 8), dtype=np.uint8)
    folder = tmp_path / "imgs"
    write_folder(folder, images)
    runs = folder / "runs"
    shutil.copytree(tiny_runs, runs)
    assert main(["report", str(runs)]) == 0 and list((runs / "plots").glob("*.png"))
    assert main(["export", str(runs / "resnet18/rotation/seed0"), str(folder / "export")]) == 0
    Image.fromarray(images[0].transpose(1, 2, 0)).save(folder / "export" / "card.png")  # a picture in an export
    assert len(imagefolder.list_images(folder)) == 10


def test_a_dangling_link_is_a_bad_image_that_skip_bad_images_skips(tmp_path):
    import os

    images = np.random.default_rng(9).integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    write_folder(tmp_path / "imgs", images)
    os.symlink(tmp_path / "gone.png", tmp_path / "imgs" / "dangling.png")
    with pytest.raises(RotnetError, match="1 unreadable images, e.g. .*dangling.png"):
        load_data(tmp_path / "imgs", 8)
    assert load_data(tmp_path / "imgs", 8, skip_bad_images=True).fingerprint["skipped"] == 1


@pytest.mark.parametrize(
    ("flags", "train", "test"),
    [
        (["--train-range", "10:30"], 20, 16),  # 80 training and 16 test images in all
        (["--train-range", "10:30", "--test-range", "2:10"], 20, 8),  # it wrote every test image whatever the range
        (["--test-range", "5:9"], 80, 4),
        (["--no-test"], 80, 0),
    ],
)
def test_export_images_limits_each_split(tmp_path, fake_root, flags, train, test):
    out = tmp_path / "png"
    assert main(["export-images", "cifar10", str(out), "--data-root", str(fake_root), "--no-download", *flags]) == 0
    assert len(list((out / "train").rglob("*.png"))) == train and len(list(out.glob("test/*/*.png"))) == test


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--test-range", "0:17"], "--test-range must lie within 0:16; got 0:17"),
        (["--test-range", "3"], "--test-range expects A:B"),
        (["--test-range", "0:4", "--no-test"], "give --no-test or --test-range, not both"),
    ],
)
def test_export_images_refuses_a_range_outside_its_split(tmp_path, fake_root, capsys, flags, words):
    out = tmp_path / "png"
    assert main(["export-images", "cifar10", str(out), "--data-root", str(fake_root), "--no-download", *flags]) == 2
    assert words in capsys.readouterr().err and not out.exists()


def test_the_model_card_feeds_the_model_what_rotnet_fed_it(tmp_path, capsys):
    """A folder run at --image-size 16 on 20x24 photos: the card said "ToTensor() then Normalize" (the model then saw
    other pixels: 14.00% instead of the recorded 24.50% in the report of it). The card's own preprocessing, applied
    to each test file, gives the tensors the run was evaluated on; a rotation card says which way k turns."""
    import os

    import torch

    from rotnet.augment import normalize

    rng = np.random.default_rng(5)
    write_folder(tmp_path / "photos", rng.integers(0, 256, (12, 3, 20, 24), dtype=np.uint8), [0, 1] * 6, "train")
    write_folder(tmp_path / "photos", rng.integers(0, 256, (4, 3, 24, 20), dtype=np.uint8), [0, 1, 0, 1], "test")
    args = ["--dataset", str(tmp_path / "photos"), "--image-size", "16", "--runs-root", str(tmp_path / "runs")]
    assert main(["train", "full-from-random", *args, "--epochs", "1", "--batch-size", "4"]) == 0
    run = next((tmp_path / "runs").glob("*/resnet18/full-from-random/seed0"))
    assert main(["export", str(run), str(tmp_path / "hub")]) == 0
    card = (tmp_path / "hub/README.md").read_text()
    env: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path / "hub")
    try:
        exec(card.split("```python\n")[1].split("```")[0], env)  # the card's code, as a user would run it
    finally:
        os.chdir(cwd)
    data = load_data(tmp_path / "photos", 16)
    fed = normalize(data.test_images, (data.mean, data.std))  # (4, 3, 16, 16), what the run was tested on
    for path in sorted((tmp_path / "photos/test").rglob("*.png")):
        x = env["preprocess"](Image.open(path).convert("RGB"))
        assert x.shape == (3, 16, 16) and min(float((x - f).abs().max()) for f in fed) < 1e-5, path
    assert "transforms.Resize(16)" in card and "transforms.CenterCrop(16)" in card
    rotation = tmp_path / "rot"
    assert main(["train", "rotation", *args[:4], "--runs-root", str(rotation), "--epochs", "1"]) == 0
    assert main(["export", str(next(rotation.glob("*/resnet18/rotation/seed0"))), str(tmp_path / "hub2")]) == 0
    card = (tmp_path / "hub2/README.md").read_text()
    assert "rotated by k x 90 degrees counter-clockwise (`torch.rot90(x, k, dims=(2, 3))`" in card
    assert torch.equal(torch.rot90(torch.tensor([[1, 2], [3, 4]]), 1, dims=(0, 1)), torch.tensor([[2, 4], [1, 3]]))


def test_a_stopped_folder_run_does_not_resume_after_images_moved_between_classes(tmp_path, monkeypatch, capsys):
    """Six images moved from train/cat to train/dog: the same pixels, other labels. The run resumed (exit 0) with
    half its epochs on the old labels; the data's identity now holds each image's class, and resume refuses."""
    from tests.helpers import cli, partial

    rng = np.random.default_rng(7)
    # 64 training images: two steps an epoch, so that the stop lands inside epoch 2 (a partial run)
    write_folder(tmp_path / "pets", rng.integers(0, 256, (64, 3, 16, 16), dtype=np.uint8), [0, 1] * 32, "train")
    write_folder(tmp_path / "pets", rng.integers(0, 256, (4, 3, 16, 16), dtype=np.uint8), [0, 1, 0, 1], "test")
    root, data = tmp_path / "runs", tmp_path / "unused"
    args = ("train", "full-from-random", "--dataset", str(tmp_path / "pets"))
    assert partial(*args, root=root, data=data, monkeypatch=monkeypatch) == 130
    assert not (root / "pets/resnet18/full-from-random/seed0/result.json").exists()
    cats = sorted((tmp_path / "pets/train/cat").glob("*.png"))[:6]
    for path in cats:
        path.rename(tmp_path / "pets/train/dog" / path.name)
    monkeypatch.undo()
    capsys.readouterr()
    assert cli(*args, root=root, data=data) == 2
    err = capsys.readouterr().err
    assert "was trained on other data (labels_sha256: " in err and "Traceback" not in err


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
    """`export-images stl10 OUT` with `../../../x` in class_names.txt (or a CIFAR batches.meta label like it) wrote
    PNGs outside OUT. Names are checked where every reader hands them over (the Dataset), for every source."""
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


def test_every_kind_of_unsafe_name_is_named(tmp_path):
    """The rule itself, beyond the metadata files: what a name must be to stand for one folder."""
    from rotnet.data import name_problem

    assert [name_problem(n) != "" for n in [*UNSAFE, ".", "", " ", "a\0b", "tab\there"]] == [True] * 10
    assert [name_problem(n) for n in ["cat", "sea lion", "vélo", "9", "a.b", "..."]] == [""] * 6


ROTNETS_OWN = {
    "manifest.json": {"format": "rotnet-manifest-1", "files": {}, "previous": {}, "sha256": "0" * 64},
    "reproduce.json": {"rotnet_version": "0.6.0", "runs": []},
    "label-efficiency.json": {"rotnet_version": "0.6.0", "runs": []},
    ".rotnet-report": ["report.md", "results.json"],
    "config.json": {"rotnet_version": "0.6.0", "config": {"experiment": "rotation"}},
}


@pytest.mark.parametrize("kind", ["a dataset's own file", "rotnet's", "a FIFO", "a link to rotnet's"])
@pytest.mark.parametrize("name", list(ROTNETS_OWN))
def test_a_folder_is_rotnets_output_by_what_its_marker_holds_never_by_its_name(tmp_path, name, kind):
    """An image folder holding any file named manifest.json (common in datasets) was skipped without a word: half
    its images lost. A folder is skipped as rotnet's output only when a marker file holds what rotnet writes; a FIFO
    under a marker's name is never opened for reading (it would block)."""
    import os

    from rotnet.imagefolder import list_images

    folder = tmp_path / "images/cat"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(folder / f"{i}.png")
    own = tmp_path / "own.json"
    own.write_text(json.dumps(ROTNETS_OWN[name]))
    if kind == "a dataset's own file":
        (folder / name).write_text(json.dumps({"images": ["0.png", "1.png", "2.png"], "license": "CC-BY"}))
    elif kind == "rotnet's":
        (folder / name).write_text(own.read_text())
    elif kind == "a FIFO":
        os.mkfifo(folder / name)
    else:
        (folder / name).symlink_to(own)  # rotnet writes no links: a link proves nothing
    listed = list_images(tmp_path / "images")
    assert len(listed) == (0 if kind == "rotnet's" else 3)


def test_a_run_folder_inside_an_image_folder_is_never_read_as_images(tiny_runs, tmp_path):
    import shutil

    from rotnet.imagefolder import list_images

    run = shutil.copytree(tiny_runs / "resnet18/rotation/seed0", tmp_path / "images/cat/run")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(run / "figure.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images/cat/0.png")
    assert list_images(tmp_path / "images") == [tmp_path / "images/cat/0.png"]
