"""`rotnet export` and `export-images` (rotnet.export): files that load in plain torchvision, a model card that
states what the model was fed, one-line refusals of bad records."""

import json
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rotnet.cli import main
from tests.helpers import (
    TINY,
    cli,
    load_data,
    metrics,
    reseal,
    write_folder,
)


def test_report_and_export_do_not_load_torchvision(tiny_runs, tmp_path):
    """dispatch imported torchvision for every command: 2 s of a report's start, for nothing it draws."""
    import subprocess
    import sys

    shutil.copytree(tiny_runs, tmp_path / "runs")
    code = (
        "import sys; from rotnet.cli import main; "
        f"rcs = main(['report', {str(tmp_path / 'runs')!r}]), "
        f"main(['export', {str(tmp_path / 'runs/resnet18/rotation/seed0')!r}, {str(tmp_path / 'hub')!r}]); "
        "print(rcs, 'torchvision' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.splitlines()[-1] == "(0, 0) False", done.stdout + done.stderr


def test_export_writes_a_model_card_and_files_that_load_in_torchvision(tiny_runs, tmp_path, capsys):
    out = tmp_path / "hub"
    assert main(["export", str(tiny_runs / "resnet18/rotation/seed0"), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.md", "config.json", "metrics.jsonl", "model.safetensors", "result.json"]
    )
    card = (out / "README.md").read_text()
    front = card.split("---\n")[1]
    assert "library_name: pytorch" in front and "type: cifar10" in front and "type: accuracy" in front
    acc = json.loads((out / "result.json").read_text())["test_acc"]
    assert f"value: {acc:.2f}" in front and "rotnet train rotation" in card
    snippet = card.split("```python\n")[1].split("```")[0]
    env = {}
    import os

    cwd = os.getcwd()
    os.chdir(out)
    try:
        exec(snippet, env)  # the card's own loading code, with plain torchvision and safetensors
    finally:
        os.chdir(cwd)
    assert env["model"].fc.out_features == 4
    assert main(["export", str(tiny_runs / "resnet18/rotation/seed0"), str(out)]) == 2  # never over a folder


def test_the_model_card_states_the_images_used_imports_only_what_it_uses_and_links_nowhere_false(
    tiny_runs, tmp_path, fake_root
):
    """The model card states how many of the dataset's images the run used, its code imports only what it uses, and
    it links to no page rotnet does not have."""
    import ast

    assert cli("train", "rotation", "--train-per-class", "3", root=tmp_path / "runs", data=fake_root) == 0
    out = tmp_path / "hub"
    assert main(["export", str(tmp_path / "runs/resnet18/rotation@3pc/seed0"), str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "on 30 of the 80 training images of a copy of `cifar10` that differs" in card  # the fake files
    snippet = card.split("```python\n")[1].split("```")[0]
    tree = ast.parse(snippet)
    imported = {
        a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names
    }
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert imported <= used, imported - used
    assert "](http" not in card  # no link: nothing to point at that is known to exist
    full = tmp_path / "hub2"
    assert main(["export", str(tiny_runs / "resnet18/rotation/seed0"), str(full)]) == 0
    assert "on the 80 training images of a copy of `cifar10`" in (full / "README.md").read_text()


@pytest.mark.parametrize("garbage", ["[1, 2]", '{"test_acc": "high"}'])
def test_export_of_a_run_with_a_garbage_result_is_one_line(tiny_runs, tmp_path, capsys, garbage):

    run = tmp_path / "run"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    (run / "result.json").write_text(garbage)
    assert main(["export", str(run), str(tmp_path / "hub")]) == 2
    err = capsys.readouterr().err
    assert "record is tampered: result.json differs from what rotnet wrote" in err and not (tmp_path / "hub").exists()
    reseal(run)  # past the seal (a forger's copy): still one line, and nothing exported
    assert main(["export", str(run), str(tmp_path / "hub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inconsistent: result.json" in err and not (tmp_path / "hub").exists()


@pytest.mark.parametrize(
    "field", [{"test_images": "many"}, {"test_images": [1]}, {"test_images": {"n": 1}}, {"class_names": 7}]
)
def test_export_of_a_resealed_non_numeric_field_is_one_line_and_writes_nothing(tiny_runs, tmp_path, capsys, field):
    """A resealed result.json with a non-numeric count is refused in one line before any file is copied."""
    import json

    run = tmp_path / "run"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    result = json.loads((run / "result.json").read_text()) | field
    (run / "result.json").write_text(json.dumps(result))
    reseal(run)
    assert main(["export", str(run), str(tmp_path / "out" / "hub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rotnet: error:") and not (tmp_path / "out").exists()


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
    flags = ["--dataset", str(out), "--image-size", "32", "--normalization", "reference"]
    assert main(["train", "rotation", "--runs-root", str(tmp_path / "b"), *flags, *common]) == 0
    a = metrics(tmp_path / "a/resnet18/rotation/seed0")
    b = metrics(tmp_path / "b/cifar10-png-32px/resnet18/rotation/seed0")
    keys = ("epoch", "lr", "train_loss", "train_acc", "test_acc")
    assert [{k: r[k] for k in keys} for r in a] == [{k: r[k] for k in keys} for r in b]


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


@pytest.mark.parametrize("out", ["photos/out", "photos/train/cat/out"])
def test_export_images_never_writes_into_the_folder_it_exports(tmp_path, out, capsys):
    """`export-images photos photos/out` wrote copies into the folder, which its next read took in as more images (or,
    resized, as new ones): refused like a runs root inside an image folder a run reads (data.within_folder)."""
    from tests.helpers import write_folder

    photos = tmp_path / "photos"
    write_folder(photos, np.zeros((4, 3, 8, 8), np.uint8) + np.arange(4)[:, None, None, None].astype(np.uint8),
                 labels=[0, 1, 0, 1], split="train")  # fmt: skip
    write_folder(photos, np.zeros((2, 3, 8, 8), np.uint8) + 9, labels=[0, 1], split="test")
    assert main(["export-images", str(photos), str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"rotnet: error: {tmp_path / out} lies inside the image folder")
    assert not (tmp_path / out).exists()


@pytest.mark.parametrize("data", ["official CIFAR-10", "a CIFAR-10 copy that differs", "an image folder"])
def test_the_model_card_names_a_hub_dataset_only_for_its_official_files(tiny_runs, tmp_path, data):
    """The card's front matter said `datasets: [cifar10]` of a run on a modified CIFAR-10 copy, and `datasets:
    [photos]` of a run on the user's folder `photos` (a hub links that name to someone else's dataset)."""
    from tests.helpers import edit_json, reseal

    if data == "an image folder":
        write_folder(tmp_path / "photos", np.random.default_rng(1).integers(0, 256, (40, 3, 8, 8), dtype=np.uint8))
        args = ["--dataset", str(tmp_path / "photos"), "--runs-root", str(tmp_path / "runs"), "--epochs", "1"]
        assert main(["train", "rotation", *args, "--batch-size", "8"]) == 0
        run = next((tmp_path / "runs").rglob("rotation/seed0"))
    else:
        run = shutil.copytree(tiny_runs / "resnet18/rotation/seed0", tmp_path / "runs/resnet18/rotation/seed0")
        if data == "official CIFAR-10":  # the fake files differ from the release; this is what the real ones record
            edit_json(run / "config.json", dataset_checksums_match=True)
            reseal(run)
    assert main(["export", str(run), str(tmp_path / "hub")]) == 0
    front, body = (tmp_path / "hub/README.md").read_text().split("---\n")[1:3]
    if data == "official CIFAR-10":
        assert "datasets:\n- cifar10\n" in front and "training images of `cifar10`," in body
    else:
        assert "datasets:" not in front
        said = (
            "a copy of `cifar10` that differs from its official release" if "copy" in data else "image folder `photos`"
        )
        assert said in body


@pytest.mark.parametrize("command", ["export", "export-images"])
@pytest.mark.parametrize(
    "out, refused",
    [
        ("runs/resnet18/rotation/seed0/hub", "lies inside the run folder"),  # `export RUN RUN/hub`: into the run
        ("runs/resnet18/rotation/seed0/probe/deeper/hub", "lies inside the run folder"),
        ("runs/resnet18/rotation/seed0", "exists and is not an empty folder"),
        ("runs/resnet18/rotation/seed0/config.json", "is a file, not a folder"),
        ("runs/hub", None),  # beside the runs, in the runs root: no run's folder
        ("empty", None),  # an empty folder that exists
        # spelled as a run in a runs root (beside a sealed run, or under one with a plan's log): its report listed an
        # "inconsistent" seed1, and `train --seed 1` refused to run there
        ("runs/resnet18/rotation/seed1", "is spelled as a run folder (ARCH/EXPERIMENT/seedN) in the runs root"),
        ("runs/resnet34/full-from-rotation/seed0", "is spelled as a run folder"),
        ("planned/cifar100/resnet18/rotation/seed0", "is spelled as a run folder"),  # a data segment: the log's root
        ("exports/resnet18/rotation/seed0", None),  # exports laid out as runs, no runs root: the second one too
        ("exports/resnet18/rotation/seed1", None),
    ],
)
def test_export_writes_only_into_a_new_folder_outside_every_run(tiny_runs, tmp_path, fake_root, capsys, command, out,
                                                                   refused):  # fmt: skip
    """`export RUN RUN/hub` wrote a second copy of the run's weights inside the sealed run, and `export-images` into a
    run folder mixed images among its record: both commands' output folders pass layout.refuse_output_folder."""
    run = tmp_path / "runs/resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    (tmp_path / "empty").mkdir()
    (tmp_path / "planned").mkdir()
    (tmp_path / "planned/reproduce.json").write_text(json.dumps({"rotnet_version": "0.7.0"}))  # a plan's log
    shutil.copytree(run, tmp_path / "exports/resnet18/rotation/seed0")  # an earlier export there (its files: no seal)
    (tmp_path / "exports/resnet18/rotation/seed0/manifest.json").unlink()
    if out == "exports/resnet18/rotation/seed0":
        shutil.rmtree(tmp_path / out)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    what = [str(run)] if command == "export" else ["cifar10", "--data-root", str(fake_root), "--no-download"]
    ranges = [] if command == "export" else ["--train-range", "0:2", "--test-range", "0:2"]
    code = main([command, *what, str(tmp_path / out), *ranges])
    if refused:
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert refused in err and len(err.splitlines()) == 1, err
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    else:
        assert code == 0 and any((tmp_path / out).iterdir())


@pytest.mark.parametrize("folder", ["photos", "#pets: v2", "a: b", "null", "2024", "-x", "it's [new]", "ünï cödé"])
def test_the_model_cards_front_matter_reads_back_the_data_folders_name(tmp_path, folder):
    """The front matter held a folder's name as it was: `#pets: v2` was read as null (a comment), `a: b` was no YAML,
    `null` and `2024` were read as null and a number. Hub tools read it with a YAML parser; so does this test."""
    import yaml

    write_folder(tmp_path / folder, np.random.default_rng(1).integers(0, 256, (40, 3, 8, 8), dtype=np.uint8))
    args = ["--dataset", str(tmp_path / folder), "--runs-root", str(tmp_path / "runs"), "--epochs", "1"]
    assert main(["train", "rotation", *args, "--batch-size", "8"]) == 0
    run = next((tmp_path / "runs").rglob("rotation/seed0"))
    assert main(["export", str(run), str(tmp_path / "hub")]) == 0
    front = yaml.safe_load((tmp_path / "hub/README.md").read_text().split("---\n")[1])
    dataset = front["model-index"][0]["results"][0]["dataset"]
    assert dataset == {"name": f"{folder} (image folder)", "type": folder}


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_characters="/\x00"), min_size=1))
def test_any_folder_name_reads_back_from_the_front_matter(name):
    import yaml

    from rotnet.export import yaml_text

    assert yaml.safe_load(f"type: {yaml_text(name)}\n") == {"type": name}


@pytest.mark.parametrize("stop", ["Ctrl-C", "a full disk"])
@pytest.mark.parametrize("after", [1, 3])
@pytest.mark.parametrize("command", ["export", "export-images"])
@pytest.mark.parametrize("out", ["new/hub", "empty"])
def test_an_export_stopped_halfway_leaves_nothing_a_later_command_would_read(
    tiny_runs, tmp_path, fake_root, monkeypatch, command, after, stop, out
):
    """Both exports write their folder whole or not at all (files.staged_folder): `export-images` stopped halfway had
    left a folder of some of the images (2,972 of CIFAR-10's 60,000, no test split), which `train --dataset` then
    trained on as the whole dataset, without a word. An empty folder named for it stays as it was."""
    import rotnet.export

    run = tmp_path / "runs/resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    (tmp_path / "empty").mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    real, calls = rotnet.export.atomic_write, []

    def failing(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == after:
            raise KeyboardInterrupt if stop == "Ctrl-C" else OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(rotnet.export, "atomic_write", failing)
    what = [str(run)] if command == "export" else ["cifar10", "--data-root", str(fake_root), "--no-download"]
    assert main([command, *what, str(tmp_path / out)]) == (130 if stop == "Ctrl-C" else 2)
    assert len(calls) == after
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # hidden stages too
    monkeypatch.undo()
    assert main([command, *what, str(tmp_path / out)]) == 0  # and the same command then writes it whole


@pytest.mark.parametrize("named", ["as .", "through a link"])
def test_an_empty_folder_named_for_an_export_is_filled_not_replaced(tmp_path, fake_root, monkeypatch, named):
    """The staged export fills an existing empty folder in place: it may be the shell's working folder (`rotnet
    export-images cifar10 .`), which a rename over it would have left a deleted folder, or a link to one."""
    target = tmp_path / "data"
    target.mkdir()
    inode = target.stat().st_ino
    if named == "as .":
        monkeypatch.chdir(target)
        out = "."
    else:
        (tmp_path / "link").symlink_to(target)
        out = str(tmp_path / "link")
    assert main(["export-images", "cifar10", out, "--data-root", str(fake_root), "--no-download"]) == 0
    assert target.stat().st_ino == inode and sorted(p.name for p in target.iterdir()) == ["test", "train"]
    assert (tmp_path / "link").is_symlink() if named != "as ." else True
    assert sorted(p.name for p in tmp_path.iterdir()) == (["data"] if named == "as ." else ["data", "link"])


SIGNAL_AT_THE_THIRD_FILE = """
import os, signal, sys
import rotnet.export
from rotnet.cli import main
real, calls = rotnet.export.atomic_write, []
def write(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))  # as `kill`, a scheduler or a closed terminal
    return real(*args, **kwargs)
rotnet.export.atomic_write = write
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["export", "export-images"])
@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_an_export_ended_by_a_signal_leaves_nothing_behind(command, sig, code, tiny_runs, tmp_path, fake_root):
    """SIGTERM and SIGHUP stop an export as Ctrl-C does (signals.raise_on_stop): nothing at OUT and no hidden folder
    beside it. Each had ended the process where it stood, leaving the images written so far (and, staged, its hidden
    folder)."""
    import os
    import subprocess
    import sys

    run = tmp_path / "runs/resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    what = [str(run)] if command == "export" else ["cifar10", "--data-root", str(fake_root), "--no-download"]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_AT_THE_THIRD_FILE, command, *what, str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=os.environ | {"SIGNAL": sig},
    )  # fmt: skip
    assert done.returncode == code, done.stderr[-2000:]  # 128 + the signal, said in one line
    assert "stopped while exporting into" in done.stderr and "nothing was kept" in done.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
