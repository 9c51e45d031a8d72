"""Label-efficiency plans (rotnet.label_efficiency): the subset schedule."""

import math
from pathlib import Path

import pytest

from rotnet.label_efficiency import subset_schedule
from rotnet.protocol import resolve


def test_label_efficiency_schedule_rule():
    base = resolve("full-from-rotation", preset="paper")
    small, large = subset_schedule(base, 20, 300, 200), subset_schedule(base, 5000, 300, 50_000)
    assert small.epochs == 192 and small.lr_step_epochs == 96 and small.eval_every == 20  # ceil(300*128/200)
    assert large.epochs == 20 and large.lr_step_epochs == 10 and large.eval_every == 2
    assert small.train_per_class == 20


def planned(monkeypatch, *args: str) -> list:
    """The run configurations `rotnet label-efficiency ARGS` plans, without training them."""
    import rotnet.runner
    from rotnet.cli import main

    seen = []
    monkeypatch.setattr(rotnet.runner, "execute", lambda configs, options: seen.extend(configs) or [])
    assert main(["label-efficiency", *args, "--no-download", "--device", "cpu"]) == 0
    return seen


@pytest.mark.parametrize(
    "case", ["cifar10, every class larger", "cifar10, classes smaller than n", "cifar100", "a two-class folder"]
)
def test_each_subset_trains_at_least_min_steps_batches_of_its_own_images(case, fake_root, tmp_path, monkeypatch):
    """The schedule rule counts the subset's images on its data: it assumed 10 n (ten classes, each with n or more), so
    a CIFAR-100 subset trained ten times the steps the rule asks, a two-class folder's a fifth of them (below
    --min-steps), and a subset of classes smaller than n fewer than it said."""
    from collections import Counter

    from tests.helpers import labeled, load_data, write_fake_cifar100

    per_class, data = {
        "cifar10, every class larger": (4, ["--data-root", str(fake_root)]),
        "cifar10, classes smaller than n": (8, ["--data-root", str(fake_root)]),  # its classes hold 6-10 images
        "cifar100": (2, ["--dataset", "cifar100", "--data-root", str(write_fake_cifar100(tmp_path / "c100", 300))]),
        "a two-class folder": (10, ["--dataset", str(labeled(tmp_path / "f", {"a": 30, "b": 30}, {"a": 4, "b": 4}))]),
    }[case]
    dataset = data[data.index("--dataset") + 1] if "--dataset" in data else "cifar10"
    loaded = load_data(dataset, root=Path(data[data.index("--data-root") + 1]) if "--data-root" in data else None)
    images = sum(min(per_class, n) for n in Counter(loaded.train_labels.tolist()).values())
    configs = planned(
        monkeypatch, *data, "--preset", "tests/tiny.toml", "--per-class", str(per_class), "--min-steps", "50",
        "--runs-root", str(tmp_path / "runs"),
    )  # fmt: skip
    transfer = [c for c in configs if c.train_per_class]
    assert len(transfer) == 2
    for cfg in transfer:  # the preset's 1 epoch, or the fewest that see 50 batches' worth of the subset's images
        assert cfg.epochs == max(1, math.ceil(50 * cfg.batch_size / images)), (cfg.epochs, images)


@pytest.mark.parametrize(
    ("data", "sizes", "refused", "instead"),
    [
        ("cifar10", "4,20", "20", "4,10"),  # the fake CIFAR-10's classes hold 6-10 training images
        ("cifar10", "10,11,12", "11, 12", "10"),
        ("stl10", None, "20, 100, 500, 1000, 5000", "4"),  # the defaults, on 4 images a class
        ("cifar10", "4,10", None, None),
    ],
)
def test_a_size_above_every_class_is_refused_not_trained_twice(
    fake_root, tmp_path, monkeypatch, capsys, data, sizes, refused, instead
):
    """A size above the largest class takes every image, as that class's count does: `--per-class 5000,6000` on
    CIFAR-10 trained the whole data twice and plotted it at 5000 and 6000 labels per class (and the default sizes on
    STL-10's 500 a class, three times, at 500, 1000 and 5000)."""
    import rotnet.runner
    from rotnet.cli import main
    from tests.helpers import write_fake_stl10

    root = write_fake_stl10(tmp_path / "stl")[0] if data == "stl10" else fake_root
    monkeypatch.setattr(rotnet.runner, "execute", lambda configs, options: [])
    args = ["label-efficiency", "--dataset", data, "--data-root", str(root), "--no-download", "--device", "cpu"]
    args += [
        "--preset",
        "tests/tiny.toml",
        "--runs-root",
        str(tmp_path / "runs"),
        *(["--per-class", sizes] * bool(sizes)),
    ]
    assert main(args) == (2 if refused else 0)
    if refused:
        err = [line for line in capsys.readouterr().err.splitlines() if "warning" not in line]
        assert len(err) == 1 and f"--per-class {refused}:" in err[0] and f"--per-class {instead}" in err[0], err
