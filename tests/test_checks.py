"""Every check before a run trains or is reused (rotnet.checks): its record, configuration, data, source weights and
stream contract against this run's, and the threads it resumes on."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from rotnet.checkpoint import load_tensors
from rotnet.record import inspect
from tests.conftest import write_fake_cifar
from tests.helpers import (
    RUN,
    TINY_PRESET,
    as_made_by_0_3,
    cli,
    drop_keys,
    metrics,
    no_hang,
    partial,
    reseal,
    with_rotation,
    write_folder,
)


def test_a_stopped_folder_run_does_not_resume_after_images_moved_between_classes(tmp_path, monkeypatch, capsys):
    """Six images moved from train/cat to train/dog: the same pixels, other labels. The run resumed (exit 0) with
    half its epochs on the old labels; the data's identity now holds each image's class, and resume refuses."""
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


def test_a_partial_run_resumes_on_the_threads_it_recorded(tmp_path):
    from rotnet.checks import resume_threads

    folder = tmp_path / "resnet18/rotation/seed0"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"config": {}, "device_name": "x86_64 (2 threads)"}))
    assert resume_threads(folder) is None  # no checkpoint yet: it starts over on any count
    (folder / "checkpoints/e0001-s000000.safetensors").write_bytes(b"")
    assert resume_threads(folder) == 2
    (folder / "result.json").write_text("{}")
    assert resume_threads(folder) is None  # finished: reused, not resumed, so it holds no cores


def test_a_transfer_run_is_not_reused_beside_other_rotation_weights(tiny_five, tmp_path, fake_root, capsys):
    """A finished full-from-rotation run made from other rotation weights than those beside it now (the rotation run
    trained again; here one tensor changed, same protocol) is not reused: reproduce and train refuse it before
    anything trains and say how to train it again."""
    from rotnet.checkpoint import save_tensors

    root = shutil.copytree(tiny_five, tmp_path / "runs")
    weights = root / "resnet18/rotation/seed0/model.safetensors"
    result = root / "resnet18/full-from-rotation/seed0/result.json"
    before = result.read_text()
    tensors, meta = load_tensors(weights)
    save_tensors(weights, tensors | {"fc.bias": tensors["fc.bias"] + 1}, meta)
    reseal(weights.parent)  # a record of its own, as training it again would leave
    capsys.readouterr()
    for command in (
        ("reproduce", "--experiments", "full-from-rotation", "--jobs", "1"),
        ("train", "full-from-rotation"),
    ):
        assert cli(*command, root=root, data=fake_root) == 2
        err = capsys.readouterr().err
        assert "was trained from other rotation weights" in err and "-from-rotation --restart" in err
    assert result.read_text() == before


def test_changed_config_is_refused_and_restart_keeps_the_old_run(tmp_path, fake_root, tiny_runs, capsys):
    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    assert cli("train", "rotation", "--lr", "0.01", root=tmp_path, data=fake_root) == 2
    err = capsys.readouterr().err
    assert "different configuration (lr: 0.001 -> 0.01)" in err and err.count("\n") == 1
    assert cli("train", "rotation", "--lr", "0.01", "--restart", root=tmp_path, data=fake_root) == 0
    old = tmp_path / "resnet18/rotation/seed0.old1"
    assert (old / "model.safetensors").is_file() and (old / "config.json").is_file()


def test_resume_refuses_a_tampered_partial_run(stopped, tmp_path, fake_root, capsys):
    folder = tmp_path / RUN
    lines = metrics(folder)
    lines[0]["train_loss"] = 0.001
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    capsys.readouterr()
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 2
    assert "cannot continue" in capsys.readouterr().err


def test_an_unfinished_transfer_run_resumes_only_from_its_own_rotation_weights(
    tiny_runs, tmp_path, fake_root, monkeypatch, capsys
):
    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    args = ("train", "layer4-from-rotation")
    assert partial(*args, root=tmp_path, data=fake_root, monkeypatch=monkeypatch) == 130
    # The rotation run's weights change under it (as if trained again); its record is resealed to match, so only
    # the transfer run's own record (init_sha256) can tell.

    from rotnet.checkpoint import load_tensors, save_tensors
    from rotnet.files import sha256_file

    weights = tmp_path / RUN / "model.safetensors"
    tensors, meta = load_tensors(weights)
    tensors["fc.bias"] = tensors["fc.bias"] + torch.ones_like(tensors["fc.bias"])
    save_tensors(weights, tensors, meta)
    manifest = json.loads((tmp_path / RUN / "manifest.json").read_text())
    assert manifest["files"]["model.safetensors"] != sha256_file(weights)
    reseal(tmp_path / RUN)
    capsys.readouterr()
    assert cli(*args, root=tmp_path, data=fake_root) == 2
    assert "trained from other rotation weights" in capsys.readouterr().err


def test_a_partial_run_of_an_older_record_is_not_given_todays_defaults(stopped, tmp_path, fake_root, capsys):
    folder = tmp_path / RUN
    record = json.loads((folder / "config.json").read_text())
    del record["config"]["rotations_per_image"]
    (folder / "config.json").write_text(json.dumps(record))
    reseal(folder)
    capsys.readouterr()
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 2
    assert "does not record rotations_per_image" in capsys.readouterr().err


def test_resume_refuses_another_stream_contract(stopped, tmp_path, fake_root, monkeypatch, capsys):
    """A change of stream version, torch version or device kind mid-run would switch the run's streams silently."""
    import rotnet.run

    real = rotnet.run.stream_contract
    monkeypatch.setattr(rotnet.run, "stream_contract", lambda d: real(d) | {"torch": "9.9.9"})
    capsys.readouterr()
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 2
    err = capsys.readouterr().err
    assert "another random-stream contract (torch" in err and "-> 9.9.9" in err
    record = json.loads((tmp_path / RUN / "config.json").read_text())
    assert record["stream"] == real("cpu") and record["cpu"]["capability"]


def test_a_finished_record_missing_a_key_is_not_reused_as_if_it_had_todays_default(copy, fake_root, capsys):
    folder = copy / RUN
    record = json.loads((folder / "config.json").read_text())
    del record["config"]["freeze_bn"]
    (folder / "config.json").write_text(json.dumps(record))
    reseal(folder)
    assert cli("train", "rotation", root=copy, data=fake_root) == 2
    assert "freeze_bn: None -> False" in capsys.readouterr().err


def test_a_damaged_checkpoint_is_skipped_on_resume_not_held_against_the_record(stopped, tmp_path, fake_root, capsys):
    """Checkpoints are no claim: a damaged newest one falls back to the one before it, as a torn one always did."""
    folder = tmp_path / RUN
    newest = sorted((folder / "checkpoints").iterdir())[-1]
    newest.write_bytes(newest.read_bytes()[:-8] + b"\0" * 8)
    assert inspect(folder).status == "sealed"
    capsys.readouterr()
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 0
    assert f"skipping checkpoint {newest.name}: it differs from what rotnet wrote" in capsys.readouterr().err


PLANTED = {  # something put in place of the newest checkpoint -> why the loader skips it
    "a FIFO": (lambda p: os.mkfifo(p), "is a FIFO"),
    "a link to a device": (lambda p: p.symlink_to("/dev/zero"), "is a link rotnet did not make"),
    "a folder": (lambda p: p.mkdir(), "is a folder"),
}


@pytest.mark.parametrize("kind", list(PLANTED))
def test_a_checkpoint_replaced_by_no_regular_file_is_skipped_never_waited_on_nor_deleted(stopped, tmp_path, kind):
    """The manifest check hashes a listed checkpoint: one replaced by a FIFO, a device link or a folder is skipped
    like a damaged one (a FIFO or /dev/zero hung resume for ever), and pruning deletes only regular files (a folder
    there ended the run)."""
    import warnings

    from rotnet.checkpoint import load_latest_checkpoint, prune_checkpoints
    from rotnet.record import manifest_vouch, read_run

    folder = tmp_path / RUN / "checkpoints"
    older, newest = sorted(folder.iterdir())[-2:]
    newest.unlink()
    make, why = PLANTED[kind]
    make(newest)
    with no_hang(), warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        loaded = load_latest_checkpoint(folder, vouch=manifest_vouch(read_run(folder.parent)))
    assert loaded is not None and loaded[2] == older
    assert any(f"skipping checkpoint {newest.name}: " in str(w.message) and why in str(w.message) for w in said)
    assert newest not in prune_checkpoints(folder, keep=0) and (newest.exists() or newest.is_symlink())


@pytest.mark.parametrize("old", [False, True])
def test_a_partial_run_without_its_seal_is_never_resumed_from_its_checkpoints(
    stopped, tmp_path, fake_root, old, capsys
):
    """A partial run whose manifest and stream contract were deleted (0.4), or that never had them (0.3), is not
    resumed: nothing vouches for its checkpoints."""
    folder = tmp_path / RUN
    before = (folder / "metrics.jsonl").read_text()
    if old:
        as_made_by_0_3(folder)
    else:
        (folder / "manifest.json").unlink()
        drop_keys("stream")(folder)
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 2
    err = capsys.readouterr().err
    assert ("no readable checkpoint" if old else "manifest.json missing") in err
    assert (folder / "metrics.jsonl").read_text() == before and not (folder / "manifest.json").exists()


# fake_root: 80 training images of 10 classes (8 each). Each row: the command (or API call) and its arguments, and
# the start of the one-line refusal. Every way a plan is made is one row; so are the ways a short step arises.
UNTRAINABLE = {
    "train, a last step of one": (["train", "rotation", "--batch-size", "79"], "a step of rotation would train on 1"),
    "train, batches of one": (["train", "full-from-random", "--batch-size", "1"], "a step of full-from-random"),
    "train, a subset's last step": (
        ["train", "layer4-from-random", "--train-per-class", "3", "--batch-size", "29"],
        "a step of layer4-from-random would train on 1 sample (30 images",
    ),
    "reproduce, the transfers' steps only": (  # rotation's last step holds 4 rotations of one image
        ["reproduce", "--batch-size", "79", "--rotations-per-image", "4"],
        "resnet18/layer4-from-rotation/seed0: a step of layer4-from-rotation would train on 1",
    ),
    "label-efficiency": (
        ["label-efficiency", "--per-class", "1", "--batch-size", "9"],
        "resnet18/full-from-rotation@1pc/seed0: a step of full-from-rotation would train on 1 sample (10 images",
    ),
    "api.train": ({"experiment": "rotation", "batch_size": 79}, "a step of rotation would train on 1"),
    "api.reproduce": ({"batch_size": 79, "rotations_per_image": 4}, "resnet18/layer4-from-rotation/seed0: a step"),
    "reproduce, an unlabeled folder": (
        ["reproduce", "--dataset", "{folder}"],
        "{folder}/resnet18/layer4-from-rotation/seed0: ",
    ),
}


@pytest.mark.parametrize("case", list(UNTRAINABLE))
def test_a_run_its_data_cannot_train_is_refused_before_anything_trains(case, tmp_path, fake_root, capsys):
    """A step of one sample made batch norm raise mid-epoch (a traceback, after a run folder and maybe an earlier run's
    hours were spent), and a plan on an unlabeled folder trained its rotation run before its four transfers failed.
    Every run passes checks.refuse_untrainable before its folder is made, and every plan checks all its runs with it
    before the first trains: a one-line error, nothing written."""
    import rotnet
    from rotnet.cli import main
    from rotnet.errors import RotnetError
    from tests.helpers import TINY_PRESET

    folder = tmp_path / "photos"
    write_folder(folder, np.random.default_rng(0).integers(0, 256, (12, 3, 32, 32), dtype=np.uint8))
    args, said = UNTRAINABLE[case]
    said = said.format(folder=folder.name)
    root = tmp_path / "runs"
    if case.startswith("api."):
        common = {"preset": TINY_PRESET, "runs_root": root, "data_root": fake_root, "download": False}
        with pytest.raises(RotnetError) as e:
            rotnet.train(**common, **args) if case == "api.train" else rotnet.reproduce(**common, **args)
        assert str(e.value).startswith(said)
    else:
        args = [a.format(folder=folder) for a in args]
        common = ["--preset", TINY_PRESET, "--runs-root", str(root), "--data-root", str(fake_root), "--no-download"]
        assert main([*args, *common, "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1].startswith(f"rotnet: error: {said}") and "Traceback" not in err
    assert not root.exists()


@pytest.mark.parametrize(("batch", "ranks", "refused"), [(77, 1, False), (77, 2, True), (80, 4, False), (79, 1, True)])
def test_each_process_under_torchrun_needs_two_samples_a_step(batch, ranks, refused, fake_root):
    """Under torchrun each rank trains its strided share of a step: 80 images in batches of 77 leave 3, one rank's
    share 1."""
    from rotnet.checks import refuse_untrainable
    from rotnet.config import DataOptions, RunConfig
    from rotnet.datasets import load_for
    from rotnet.errors import RotnetError

    cfg = RunConfig(experiment="rotation", batch_size=batch)
    data = load_for(cfg, DataOptions(fake_root, download=False))
    if refused:
        with pytest.raises(RotnetError, match="would train on 1 sample"):
            refuse_untrainable(cfg, data, ranks)
    else:
        assert refuse_untrainable(cfg, data, ranks) == 4


INSIDE = {  # (runs root relative to tmp_path, the command's own arguments); the image folder is tmp_path/photos
    "the folder as runs root, reproduce": ("photos", ["reproduce", "--experiments", "rotation"]),
    "a runs root inside it, train": ("photos/runs", ["train", "rotation"]),
    "its parent as runs root (run folders land in photos/)": (".", ["train", "rotation"]),
    "the folder as pretraining data of a plan": (
        "photos/runs",
        ["reproduce", "--pretrain-dataset", "{photos}", "--experiments", "rotation,full-from-rotation"],
    ),
}


@pytest.mark.parametrize("case", list(INSIDE))
def test_nothing_of_a_run_is_written_inside_the_image_folder_it_reads(case, tmp_path, fake_root, capsys, monkeypatch):
    """`--dataset photos --runs-root photos` trained, then wrote its plan's log and report into photos/, which then
    counted as rotnet's output: the next command found "no images under photos". Every run and every plan is
    refused before anything is written where a runs root or a run folder would lie inside an image folder it reads;
    the folder stays images. Refused before the folder is read: its images were prepared into its cache first."""
    from rotnet.cli import main
    from tests.helpers import TINY_PRESET

    photos = tmp_path / "photos"
    write_folder(photos, np.random.default_rng(0).integers(0, 256, (12, 3, 32, 32), dtype=np.uint8))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    root, args = INSIDE[case]
    monkeypatch.chdir(tmp_path)
    data = [] if "--pretrain-dataset" in args else ["--dataset", "photos"]
    args = [a.format(photos=photos) for a in args] + data
    common = ["--preset", TINY_PRESET, "--runs-root", root, "--data-root", str(fake_root), "--no-download"]
    assert main([*args, *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "lies inside the image folder" in err and str(photos) in err and "name a runs root elsewhere" in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("per_class, used", [(6, 6), (100, 36)])
def test_a_subset_of_data_without_labels_says_it_is_n_images_in_all(tmp_path, capsys, per_class, used):
    """`--train-per-class 6` on an unlabeled folder trained on 6 images in all and said nothing of it (100 on its 36
    training images said "fewer than 100 training images per class in unlabeled (36)")."""
    from rotnet.cli import main
    from tests.helpers import images, save

    save(tmp_path / "photos", images(40, seed=3))
    args = ["train", "rotation", "--dataset", str(tmp_path / "photos"), "--runs-root", str(tmp_path / "runs")]
    flags = ["--train-per-class", str(per_class), "--epochs", "1", "--batch-size", "3", "--device", "cpu"]
    assert main([*args, *flags]) == 0
    err = capsys.readouterr().err
    assert f"train_per_class={per_class}: photos has no class labels, so {used} of its 36 images are used in all" in err
    assert "per class in" not in err


def test_a_knn_monitor_asked_of_data_without_labels_says_it_logs_none(tmp_path, capsys):
    """`--knn-every 1` on an unlabeled folder trained with no kNN accuracy and said nothing of it."""
    from rotnet.cli import main
    from tests.helpers import images, save

    save(tmp_path / "photos", images(40, seed=3))
    args = ["train", "rotation", "--dataset", str(tmp_path / "photos"), "--runs-root", str(tmp_path / "runs")]
    assert main([*args, "--knn-every", "1", "--epochs", "1", "--batch-size", "16", "--device", "cpu"]) == 0
    assert "--knn-every 1: photos has no class labels, so no kNN accuracy is logged" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    ["full-from-random", "layer4-from-random", "full-from-rotation", "label-efficiency", "probe", "reproduce"],
)
def test_data_of_one_class_is_refused_for_what_measures_classes(tiny_runs, tmp_path, capsys, command):
    """A folder with one class folder: full-from-random trained to 100% test accuracy (every model scores that on
    one class), and a probe likewise. Refused where labels are counted (data.classes_to_tell), before a run's folder
    is made; rotation pretraining takes the folder as it is."""
    import shutil

    from rotnet.cli import main
    from tests.helpers import labeled

    one = labeled(tmp_path / "one", {"cat": 40}, {"cat": 8})
    runs = tmp_path / "runs"
    tiny = ["--epochs", "1", "--batch-size", "16", "--device", "cpu", "--runs-root", str(runs)]
    if command == "probe":
        run = shutil.copytree(tiny_runs, tmp_path / "copy") / "resnet18/rotation/seed0"
        argv = ["probe", str(run), "--dataset", str(one), "--epochs", "1", "--device", "cpu"]
    elif command in ("label-efficiency", "reproduce"):
        argv = [command, "--dataset", str(one), *tiny, *(["--per-class", "4"] if command == "label-efficiency" else [])]
    else:
        argv = ["train", command, "--dataset", str(one), *tiny]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one has one class (cat);" in err[0] and "needs two or more" in err[0], err
    assert not runs.exists() or not list(runs.rglob("config.json"))


def test_a_knn_monitor_asked_of_data_of_one_class_says_it_logs_none(tmp_path, capsys):
    """`--knn-every 1` on a one-class folder logged a kNN accuracy of 100% at every epoch."""
    from rotnet.cli import main
    from tests.helpers import labeled

    one = labeled(tmp_path / "one", {"cat": 40}, {"cat": 8})
    args = ["train", "rotation", "--dataset", str(one), "--runs-root", str(tmp_path / "runs")]
    assert main([*args, "--knn-every", "1", "--epochs", "1", "--batch-size", "16", "--device", "cpu"]) == 0
    assert "--knn-every 1: one has one class (cat), so no kNN accuracy is logged" in capsys.readouterr().err
    history = (tmp_path / "runs/one/resnet18/rotation/seed0/metrics.jsonl").read_text()
    assert "knn_acc" not in history


@pytest.mark.parametrize("weights", ["examples.safetensors", "a tensor missing", "a wrong shape", "a head only"])
def test_init_weights_that_do_not_fit_the_model_are_refused_before_a_restart_sets_the_old_run_aside(
    tiny_five, tmp_path, fake_root, capsys, weights
):
    """`train full-from-rotation --restart --init RUN/examples.safetensors` moved the finished run to seed0.old1,
    then failed to load the weights: the command was refused and still left no run at seed0. The tensors are now
    checked against the model where the init weights are read (checks.init_weights), before anything is written."""
    import shutil

    from rotnet.checkpoint import load_tensors, save_tensors
    from tests.helpers import cli

    root = shutil.copytree(tiny_five, tmp_path / "runs")
    rotation = root / "resnet18/rotation/seed0"
    if weights == "examples.safetensors":
        init = rotation / "examples.safetensors"
    else:
        tensors, _ = load_tensors(rotation / "model.safetensors")
        if weights == "a tensor missing":
            del tensors["layer3.0.conv1.weight"]
        elif weights == "a wrong shape":
            tensors["layer1.0.conv1.weight"] = tensors["layer1.0.conv1.weight"][:32]
        else:
            tensors = {k: v for k, v in tensors.items() if k.startswith("fc.")}
        init = tmp_path / "loose.safetensors"
        save_tensors(init, tensors, {})
    folder = root / "resnet18/full-from-rotation/seed0"
    before = sorted(p.name for p in folder.parent.iterdir())
    assert cli("train", "full-from-rotation", "--restart", "--init", str(init), root=root, data=fake_root) == 2
    err = capsys.readouterr().err.strip().splitlines()
    said = (
        f"{init} is a file inside the run folder {rotation}; name that folder"  # the run's test images: not weights
        if weights == "examples.safetensors"
        else f"the tensors in {init} do not match the model"
    )
    assert len(err) == 1 and said in err[0], err
    assert sorted(p.name for p in folder.parent.iterdir()) == before and (folder / "result.json").is_file()


# A from-rotation run starts from rotation weights pretrained on the very files it trains on. Which files is their
# fingerprint (sizes and md5s, image counts, statistics), not the dataset's name: "cifar10" named every copy alike, so
# a transfer on one copy from a rotation run of another trained, reported and verified as one pipeline on one data.

HOW = ["train layer4", "train full", "reproduce", "label-efficiency", "api.train", "api.reproduce"]


def start_transfer(how: str, root, data) -> str:
    """Start a from-rotation run (or a plan of them) the way `how` does; '' if it ran, else the one error line."""
    import rotnet
    from rotnet.cli import main
    from rotnet.errors import RotnetError

    common = {"preset": TINY_PRESET, "runs_root": root, "data_root": data, "download": False}
    if how.startswith("api."):
        try:
            rotnet.train("layer4-from-rotation", **common) if how == "api.train" else rotnet.reproduce(**common)
        except RotnetError as e:
            return str(e)
        return ""
    command, *experiment = how.split()
    experiment = [f"{experiment[0]}-from-rotation"] if experiment else []
    experiment += ["--per-class", "5"] if command == "label-efficiency" else []  # of the 10 the fake data has
    args = [command, *experiment, "--preset", TINY_PRESET, "--runs-root", str(root), "--data-root", str(data)]
    return "" if main([*args, "--no-download"]) == 0 else "refused"


@pytest.mark.parametrize("how", HOW)
def test_rotation_weights_pretrained_on_other_files_are_refused_before_anything_trains(
    tiny_runs, tmp_path, capsys, how
):
    """The runs root's rotation run was trained on one CIFAR-10 copy; a transfer asked for on another copy is refused
    in one line that names the copy the weights came from, and nothing is trained or left behind."""
    root = with_rotation(tiny_runs, tmp_path / "runs")
    other = write_fake_cifar(tmp_path / "other", seed=1)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    said = start_transfer(how, root, other)
    if said == "refused":
        err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("rotnet: warning")]
        assert len(err) == 1 and "Traceback" not in err[0], err
        said = err[0]
    assert said, "trained from rotation weights of other files"
    # A plan checks its rotation run first, which names that run's data; a lone transfer names its weights'.
    assert "trained on other data" in said or "were pretrained on other cifar10 files" in said, said
    assert "--data-root" in said, said
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


@pytest.mark.parametrize("how", ["train layer4", "api.train"])
def test_the_same_files_elsewhere_are_the_same_pretraining_data(tiny_runs, tmp_path, fake_root, how):
    """The check compares what the files are, not where they sit: a moved copy trains."""
    root = with_rotation(tiny_runs, tmp_path / "runs")
    moved = shutil.copytree(fake_root, tmp_path / "moved")
    assert start_transfer(how, root, moved) == ""
    record = json.loads((root / "resnet18/layer4-from-rotation/seed0/config.json").read_text())
    assert record["init_source_data"]["files"] == record["dataset"]["files"]


@pytest.mark.parametrize("named", ["folder", "file"])
@pytest.mark.parametrize("recorded", ["today", "before init_source_data"])
def test_a_transfer_from_weights_of_other_files_is_reported_so(tiny_runs, tmp_path, named, recorded):
    """Explicit --init weights are taken as given, and recorded with the data they were pretrained on; the report's
    row says that its seed started from weights pretrained on other data. A record that predates
    `init_source_data` is judged by the rotation run in its runs root that still holds its weights."""
    from rotnet.cli import main
    from rotnet.report import write_report

    root = with_rotation(tiny_runs, tmp_path / "runs")
    other = write_fake_cifar(tmp_path / "other", seed=1)
    source = root / "resnet18/rotation/seed0"
    init = source if named == "folder" else source / "model.safetensors"
    args = ["train", "layer4-from-rotation", "--preset", TINY_PRESET, "--init", str(init)]
    assert main([*args, "--runs-root", str(root), "--data-root", str(other), "--no-download"]) == 0
    run = root / "resnet18/layer4-from-rotation/seed0"
    if recorded != "today":  # as rotnet wrote it before: the rotation run named, not its data
        config = json.loads((run / "config.json").read_text())
        del config["init_source_data"]
        (run / "config.json").write_text(json.dumps(config | {"init_from": "rotation run"}, indent=2))
        reseal(run)
    write_report(root)
    rows = {r["experiment"]: r for r in json.loads((root / "results.json").read_text())["rows"]}
    status = rows["layer4-from-rotation"]["status"]
    assert status.startswith("seed 0 started from rotation weights pretrained on other data"), status
    assert "data_batch_1" in status, status
    assert rows["rotation"]["status"] == "ok", rows["rotation"]["status"]


@pytest.mark.parametrize("how", ["train", "reproduce", "api.train"])
@pytest.mark.parametrize("folder", ["other images", "the same images moved"])
def test_a_pretraining_folder_is_its_images_not_its_name(tiny_runs, tmp_path, fake_root, capsys, how, folder):
    """`--pretrain-dataset PATH` finds its rotation run by the folder's name (runs/photos/...), so a folder of that
    name elsewhere with other images started from weights pretrained on the first: refused, naming the folder the
    weights came from; the same images at another place train."""
    import rotnet
    from rotnet.cli import main
    from rotnet.errors import RotnetError
    from tests.helpers import images, save

    first, second = tmp_path / "a/photos", tmp_path / "b/photos"
    save(first, images(40, seed=5))
    if folder == "other images":
        save(second, images(40, seed=6))
    else:
        shutil.copytree(first, second)
    common = ["--preset", TINY_PRESET, "--runs-root", str(tmp_path / "runs"), "--data-root", str(fake_root)]
    assert main(["train", "rotation", "--dataset", str(first), *common, "--no-download"]) == 0
    capsys.readouterr()
    if how == "api.train":
        kwargs = {"preset": TINY_PRESET, "runs_root": tmp_path / "runs", "data_root": fake_root, "download": False}
        try:
            rotnet.train("layer4-from-rotation", pretrain_dataset=str(second), **kwargs)
            said = ""
        except RotnetError as e:
            said = str(e)
    else:
        args = [how, *(["layer4-from-rotation"] if how == "train" else []), "--pretrain-dataset", str(second)]
        code = main([*args, *common, "--no-download"])
        err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("rotnet: warning")]
        said = "" if code == 0 else err[0]
        assert code == 0 or (code == 2 and len(err) == 1), err
    if folder == "other images":
        assert f"--pretrain-dataset {first}" in said or f"image folder it was trained on ({first})" in said, said
        assert not list((tmp_path / "runs").glob("cifar10_from_photos/*/*/seed0/model.safetensors"))
    else:
        assert said == ""
        assert list((tmp_path / "runs").glob("cifar10_from_photos/*/layer4-from-rotation/seed0/model.safetensors"))
