"""An image folder as a Dataset (rotnet.imagefolder): classes from paths (one class per image), links entered once,
rotnet's own outputs skipped, copies held out once, bad files named or skipped."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from rotnet import imagefolder
from rotnet.cli import main
from rotnet.errors import RotnetError
from tests.helpers import (
    TINY,
    every,
    images,
    labeled,
    load_data,
    load_folder,
    no_hang,
    save,
    write_folder,
)


def test_an_empty_class_folder_is_refused_not_made_a_class(tmp_path):
    """A class folder without images is refused, not made a class no image has."""
    root = labeled(tmp_path / "pets", {"cat": 3, "dog": 3}, {"cat": 2, "dog": 2})
    (root / "train" / "bird").mkdir()
    with pytest.raises(RotnetError, match="bird .*hold no images"):
        load_folder(root)


def test_a_test_class_that_training_lacks_is_named(tmp_path):
    """A test class that training lacks is refused, naming the class."""
    root = labeled(tmp_path / "pets", {"cat": 3, "dog": 3}, {"cat": 2, "dog": 2, "fox": 1})
    with pytest.raises(RotnetError, match="class\\(es\\) fox that train/ lacks"):
        load_folder(root)


def test_a_test_split_missing_a_class_warns_what_its_accuracy_covers(tmp_path):
    root = labeled(tmp_path / "pets", {"cat": 3, "dog": 3, "fox": 3}, {"cat": 2, "dog": 2})
    with pytest.warns(UserWarning, match="no images of fox; its accuracy covers the other 2 classes"):
        data = load_folder(root)
    assert data.class_names == ("cat", "dog", "fox")


def test_images_in_subfolders_of_a_class_belong_to_that_class(tmp_path):
    """train/cat/indoor/x.png is a cat, as torchvision's ImageFolder labels it."""
    root = labeled(tmp_path / "pets", {"cat": 2, "dog": 2}, {"cat": 1, "dog": 1})
    save(root / "train" / "cat" / "indoor", images(2, 9), ["indoor-0.png", "indoor-1.png"])
    data = load_folder(root)
    assert data.class_names == ("cat", "dog") and sorted(data.train_labels.tolist()) == [0, 0, 0, 0, 1, 1]


def test_an_image_outside_every_class_folder_is_refused(tmp_path):
    root = labeled(tmp_path / "pets", {"cat": 2, "dog": 2}, {"cat": 1, "dog": 1})
    save(root / "train", images(1, 9), ["stray.png"])
    with pytest.raises(RotnetError, match="stray.png sits in train/ outside any class folder"):
        load_folder(root)


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


@pytest.mark.parametrize("skip", [False, True])
def test_a_fifo_among_the_images_is_named_not_waited_on(tmp_path, skip):
    """A FIFO named x.png among the images is named (or skipped with --skip-bad-images), never waited on."""

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


TWO_CLASSES = {  # a link -> where it points
    "test/cat/dogs": "../dog",  # a class folder inside another
    "train/cat/dogs": "../dog",  # the same in train: was "class folder(s) dog ... hold no images" (all went to cat)
    "train/dog/cats": "../cat",  # inside a class that sorts after it
    "train/cat/also-a-dog.png": "../dog/train-dog-0.png",  # a file of one class in another
}


@pytest.mark.parametrize("link", list(TWO_CLASSES))
def test_an_image_reached_under_two_classes_is_refused(tmp_path, link):
    """An image or folder reached under two class folders (a link `test/cat/dogs -> ../dog`) is refused naming both
    paths: class membership is the path as the user wrote it. Said before any class is counted: the folder the link
    entered first took every image, and the class left empty was named instead, as if it held none."""
    root = labeled(tmp_path / "pets", {"cat": 4, "dog": 4}, {"cat": 3, "dog": 3})
    os.symlink(TWO_CLASSES[link], root / link)
    with pytest.raises(RotnetError, match="an image has one class: remove the link"):
        load_folder(root)


@pytest.mark.parametrize("link", ["a loop", "dangling"])
@pytest.mark.parametrize("where", ["train", "test", "train/cat"])
def test_a_link_among_the_class_folders_that_reaches_no_folder_is_named(tmp_path, where, link):
    """Beside the training class folders, a link that leads back to itself was os.scandir's OSError ("Too many levels
    of symbolic links"), and one whose target is gone was passed over: had it been a class's folder, that class was
    left out of train (and, linked alike in test, out of the dataset). The class folders are train's; elsewhere such
    a link is no folder and no image, and is passed over."""
    root = labeled(tmp_path / "pets", {"cat": 4, "dog": 4}, {"cat": 3, "dog": 3})
    target = "loop" if link == "a loop" else str(tmp_path / "gone")
    os.symlink(target, root / where / "loop")
    if where != "train":
        assert len(every(load_folder(root))) == 14
        return
    with pytest.raises(RotnetError) as e:
        load_folder(root)
    said = "that leads back to itself" if link == "a loop" else f"to {target}, which does not exist"
    assert str(e.value) == f"{root / where / 'loop'} is a link {said}; remove it"


def test_a_link_to_a_folder_of_the_same_class_is_fine(tmp_path):
    root = labeled(tmp_path / "pets", {"cat": 4, "dog": 4}, {"cat": 3, "dog": 3})
    os.symlink(root / "train/cat", root / "train/cat/again")  # a loop inside one class: listed once
    assert len(every(load_folder(root))) == 14


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


@pytest.mark.parametrize("links", ["one loop", "two loops", "file links", "folder link"])
def test_links_inside_an_image_folder_are_read_once_and_never_loop(tmp_path, links):
    """Links inside an image folder (to a parent, to a sibling) are entered once: the listing ends, each image is
    read once, and no held-out image is a copy of a training image."""
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


@pytest.mark.plots
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
    """A folder is skipped as rotnet's output only when a marker file holds what rotnet writes (a dataset's own
    manifest.json keeps its images); a FIFO under a marker's name is never opened for reading."""
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
