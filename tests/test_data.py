"""The Dataset and its policy (rotnet.data): balanced subsets, a channel without spread refused, class names that are
one folder name."""

from __future__ import annotations

import pytest
import torch

from rotnet.cli import main
from rotnet.data import balanced_subset, short_classes
from tests.helpers import (
    TINY_ARGS,
    UNSAFE,
    images,
    save,
)


def test_balanced_subsets_are_nested_and_balanced():
    labels = torch.arange(1000) % 10
    small, large = balanced_subset(labels, 3, seed=1), balanced_subset(labels, 20, seed=1)
    assert set(small.tolist()) <= set(large.tolist())
    assert torch.equal(torch.bincount(labels[large]), torch.full((10,), 20))
    assert not torch.equal(small, balanced_subset(labels, 3, seed=2))


def test_a_subset_takes_all_of_a_smaller_class_and_counts_unlabeled_images_as_one():
    """N per class takes all of a class smaller than N (the smoke preset runs on any small dataset), and unlabeled
    images (-1) count as one class."""
    labels = torch.cat([torch.zeros(5), torch.ones(50), torch.full((30,), 2)]).long()
    picked = labels[balanced_subset(labels, 20, seed=0)]
    assert torch.bincount(picked).tolist() == [5, 20, 20]
    assert short_classes(labels, 20) == {0: 5}
    unlabeled = torch.full((40,), -1)
    assert len(balanced_subset(unlabeled, 25, seed=0)) == 25 and short_classes(unlabeled, 50) == {-1: 40}
    many = torch.arange(1000) % 10  # where every class has enough, the subset is the one it always was
    assert set(balanced_subset(many, 3, seed=1).tolist()) <= set(balanced_subset(many, 20, seed=1).tolist())


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
    assert f"the {name} channel of" in err and "--normalization reference" in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*"))  # refused before any folder
    assert main([*args, "--normalization", "reference"]) == 0  # the fix the message names


def test_every_kind_of_unsafe_name_is_named(tmp_path):
    """The rule itself, beyond the metadata files: what a name must be to stand for one folder."""
    from rotnet.data import name_problem

    assert [name_problem(n) != "" for n in [*UNSAFE, ".", "", " ", "a\0b", "tab\there"]] == [True] * 10
    assert [name_problem(n) for n in ["cat", "sea lion", "vélo", "9", "a.b", "..."]] == [""] * 6
