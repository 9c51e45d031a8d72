"""The command line (rotnet.cli): each command's output, its one-line errors and exit codes, and help that says what
each command takes."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from rotnet.checkpoint import load_tensors, save_tensors
from rotnet.cli import main
from rotnet.errors import RotnetError
from rotnet.experiments import EXPERIMENTS
from rotnet.models import build_model
from rotnet.readers import FOLDER
from tests.helpers import (
    TINY,
    TINY_PRESET,
    cli,
    error_line,
    metrics,
    reseal,
)


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_experiment_writes_config_metrics_and_weights(tiny_five, name):
    folder = tiny_five / "resnet18" / name / "seed0"
    config = json.loads((folder / "config.json").read_text())
    assert config["config"]["experiment"] == name and config["config"]["epochs"] == 2
    assert config["dataset_checksums_match"] is False and config["torch"]
    lines = metrics(folder)
    assert [r["epoch"] for r in lines] == [1, 2]
    scored = 16 * 4 if name == "rotation" else 16  # the 16 test images (in four rotations for the rotation task)
    for r in lines:
        assert {"epoch", "lr", "train_loss", "train_acc", "test_acc", "images_per_s", "seconds"} <= set(r)
        correct = r["test_acc"] * scored / 100  # a count of correct predictions, not any number in [0, 100]
        assert 0 <= correct <= scored and abs(correct - round(correct)) < 1e-9
    result = json.loads((folder / "result.json").read_text())
    assert result["test_acc"] == lines[-1]["test_acc"]
    assert sum(result["confusion"][i][i] for i in range(len(result["confusion"]))) == round(correct)
    weights, _ = load_tensors(folder / "model.safetensors")
    classes = 4 if name == "rotation" else 10
    torchvision.models.resnet18(num_classes=classes).load_state_dict(weights, strict=True)
    if "from-rotation" in name:
        assert config["init_weights"].endswith("rotation/seed0/model.safetensors")


def test_rotation_eval_scores_all_four_rotations(tiny_five):
    result = json.loads((tiny_five / "resnet18" / "rotation" / "seed0" / "result.json").read_text())
    assert sum(map(sum, result["confusion"])) == 16 * 4  # 16 test images x 4 rotations
    assert [sum(row) for row in result["confusion"]] == [16] * 4


def test_same_seed_same_weights_and_the_same_weight_file(tiny_runs, tmp_path, fake_root):
    """The session's rotation run made again (keeping checkpoints changes no number): the same weights, losses and
    weight file, byte for byte; seed 1 gives other weights."""
    a, b = tiny_runs / "resnet18/rotation/seed0", tmp_path / "resnet18/rotation/seed0"
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 0
    wa, _ = load_tensors(a / "model.safetensors")
    wb, _ = load_tensors(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    assert [r["train_loss"] for r in metrics(a)] == [r["train_loss"] for r in metrics(b)]
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert cli("train", "rotation", "--seed", "1", root=tmp_path, data=fake_root) == 0
    wc, _ = load_tensors(tmp_path / "resnet18/rotation/seed1/model.safetensors")
    assert not all((wa[k] == wc[k]).all() for k in wa)


def test_transfer_without_rotation_weights_says_how_to_make_them(tmp_path, fake_root, capsys):
    assert cli("train", "full-from-rotation", root=tmp_path, data=fake_root) == 2
    err = capsys.readouterr().err
    assert "no rotation weights" in err and "rotnet train rotation --arch resnet18" in err


def test_help_runs_without_importing_torch():

    code = (
        "import sys, contextlib, io\n"
        "from rotnet.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['reproduce', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_the_top_level_help_tells_a_newcomer_where_to_start(capsys):
    """It printed the module's docstring, written for developers ("This module imports nothing heavy")."""
    from rotnet.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "rotnet reproduce --preset smoke" in out and "This module" not in out


def test_every_config_field_has_a_flag_with_its_default_and_choices(capsys):
    from rotnet.cli import main
    from rotnet.config import CHOICES, RunConfig
    from rotnet.flags import NO_FLAG

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for key, default in RunConfig().to_dict().items():
        if key in NO_FLAG:
            continue
        flag = "--" + key.replace("_", "-")
        assert flag in text, flag
        # the epochs are the experiment's (45 rotation, 20 transfer): one number would be wrong for most
        shown = "(default: the experiment's, as the preset sets it)" if key == "epochs" else f"(default: {default})"
        assert shown in text, key
        if key in CHOICES:
            assert "{" + ",".join(map(str, CHOICES[key])) + "}" in text, key
    assert "--no-channels-last" in text
    assert options_without_their_default() == []


def options_without_their_default() -> list[str]:
    """Each subcommand's options that have a default its --help does not show (as argparse formats it)."""
    import argparse

    from rotnet.flags import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, parser in sub.choices.items():
        text = " ".join(parser.format_help().split())
        for a in parser._actions:
            switch = isinstance(a, argparse._StoreTrueAction | argparse._StoreFalseAction)  # off unless given
            if switch or not a.option_strings or a.help == argparse.SUPPRESS or a.default in (None, argparse.SUPPRESS):
                continue
            if "default" not in (a.help or "") and f"(default: {a.default})" not in text:
                missing.append(f"{name} {a.option_strings[0]}")
    return missing


def test_help_explains_what_each_command_takes(capsys):
    """Each command's --help says what each of its options chooses, and offers no option the command ignores."""
    from rotnet.cli import main

    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    assert "mlp (Linear-BN-ReLU-Linear" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["export-images", "--help"])
    assert "--device" not in capsys.readouterr().out


def test_every_argument_a_user_gives_says_what_it_takes():
    """Every positional argument of every command a user runs has its help (`job` is internal)."""
    import argparse

    from rotnet.flags import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    silent = [f"{c} {a.dest}" for c, p in commands.items() for a in p._actions if not a.option_strings and not a.help]
    assert silent == ["job file"]


def test_a_mistyped_experiment_is_refused_before_torch_loads_with_a_suggestion():

    code = "import sys; from rotnet.cli import main; rc = main(['train', 'rotaton']); print('torch' in sys.modules, rc)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["False", "2"]
    assert proc.stderr.startswith("rotnet: error: unknown experiment 'rotaton'; did you mean rotation?")


def test_usage_errors_have_one_prefix_and_rotnet_alone_prints_the_help(capsys):
    from rotnet.cli import main

    assert main(["train", "rotation", "--bogus"]) == 2
    assert (
        capsys.readouterr().err == "rotnet: error: unrecognized arguments: --bogus\n"
    )  # once "rotnet: error: rotnet: "
    assert main([]) == 0
    assert capsys.readouterr().out.startswith("usage: rotnet")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--preset", "smok"], "unknown preset 'smok'; did you mean smoke?"),
        (["--device", "gpu"], "unknown device 'gpu'; did you mean cpu? choose one of auto, cpu, cuda, cuda:N"),
        (["--device", "cuda"], "torch sees no CUDA device; use --device cpu (or auto: cuda when present)"),
    ],
)
def test_a_mistyped_preset_or_device_names_the_fix(args, words, tmp_path, capsys, monkeypatch):
    import torch

    from rotnet.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    assert main(["train", "rotation", *args, "--runs-root", str(tmp_path / "runs"), "--no-download"]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_failed_download_leaves_no_folder_it_made(tmp_path, capsys, monkeypatch):
    """A download that fails removes the --data-root folder it created."""
    import torchvision.datasets.utils

    from rotnet.cli import main

    def fail(url, download_root, **kw):
        Path(download_root).mkdir(parents=True, exist_ok=True)  # as torchvision does before it fetches
        (Path(download_root) / "partial.tar.gz").write_bytes(b"half")  # what a broken transfer leaves
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", fail)
    (tmp_path / "kept").mkdir()
    for root in (tmp_path / "typo/deeper", tmp_path / "kept"):
        assert main(["train", "rotation", "--data-root", str(root), "--runs-root", str(tmp_path / "runs")]) == 2
        assert "the download failed (network unreachable)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]  # the user's own folder stays (with what the
    # download left in it: rotnet did not make that folder, so it removes nothing there)


def test_a_one_epoch_run_says_epoch_once_and_when_it_is_tested(tmp_path, fake_root, capsys):
    from rotnet.cli import main

    args = ["--runs-root", str(tmp_path), "--data-root", str(fake_root), "--no-download", "--batch-size", "32"]
    assert main(["train", "rotation", "--epochs", "1", "--eval-every", "100", *args]) == 0
    out = capsys.readouterr().out
    assert ": 1 epoch (1 to go) of 80 images" in out and "tested on 16 images after the last epoch" in out
    assert "test accuracy" in out and "after 1 epoch\n" in out


def test_train_help_gives_no_single_epochs_default(capsys):
    from rotnet.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: the experiment's, as the preset sets it)" in out and "(default: 45)" not in out


def test_a_transfer_with_other_epochs_leads_with_init_and_every_suggested_command_works(tmp_path, fake_root, capsys):
    """`train rotation --epochs 1`, then `train layer4-from-rotation --epochs 2`: the transfer's --epochs changes the
    rotation run it resolves. The refusal gives --init with the weights that exist first, and a command that makes
    the right ones; both are run here as a user would paste them (the second said --set epochs=2 and then failed:
    the rotation folder held the 1-epoch run)."""
    import shlex
    import shutil

    from rotnet.cli import main

    data = ["--data-root", str(fake_root), "--no-download", "--batch-size", "32"]
    root = ["--runs-root", str(tmp_path)]
    assert main(["train", "rotation", "--epochs", "1", *root, *data]) == 0
    transfer = ["train", "layer4-from-rotation", "--epochs", "2", *root, *data]
    capsys.readouterr()
    assert main(transfer) == 2
    err = capsys.readouterr().err
    weights = tmp_path / "resnet18/rotation/seed0/model.safetensors"
    assert f"To start from its weights anyway, add --init {weights} to this command" in err
    assert main([*transfer, "--init", str(weights)]) == 0
    shutil.rmtree(tmp_path / "resnet18/layer4-from-rotation")
    make = err.split("to train rotation weights of this protocol: ")[1].split(" (that run is kept")[0]
    assert make.startswith("rotnet train rotation") and "--restart" in make
    assert main([*shlex.split(make)[1:], *data]) == 0
    assert main(transfer) == 0
    assert (tmp_path / "resnet18/rotation/seed0.old1/model.safetensors").is_file()  # the 1-epoch run, kept


def data_commands(run: Path, out: Path, data: Path) -> dict[str, list[str]]:
    """Every command that reads a dataset a user names (its name or size), as argv before that flag."""
    flags = ["--data-root", str(data), "--no-download", "--device", "cpu"]
    return {
        "train": ["train", "rotation", *TINY, "--runs-root", str(out / "runs"), *flags],
        "probe": ["probe", str(run), "--epochs", "1", *flags],
        "verify": ["verify", str(run), *flags],
        "export-images": ["export-images", "cifar10", str(out / "png"), *flags[:3]],
    }


@pytest.mark.parametrize("command", ["train", "probe", "export-images"])
@pytest.mark.parametrize("size", ["100000", "4097", "7", "-3"])
def test_an_impossible_image_size_is_one_line_before_anything_is_written(
    tiny_runs, tmp_path, fake_root, capsys, command, size
):
    """`--image-size 100000` asked for a 3 TB array (a sparse file for a folder, memory for CIFAR-10). Train refused
    it; probe and export-images had no check (100000: a traceback after the data was read; 7: taken; probe -3: a
    traceback): every size now passes config.check_image_size, asked by the one loader of data."""
    run = shutil.copytree(tiny_runs, tmp_path / "copy") / "resnet18/rotation/seed0"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = data_commands(run, tmp_path, fake_root)[command]
    assert main([*argv, "--image-size", size]) == 2
    err = capsys.readouterr().err
    assert f"image_size must be 0 (the dataset's own) or from 8 to 4096; got {size}" in err and err.count("\n") == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("command", "name"),
    [(c, n) for c in ("train", "probe", "verify", "export-images") for n in ("", " ")] + [("--pretrain-dataset", " ")],
)  # --pretrain-dataset '' is its default: the run's own dataset
def test_an_empty_dataset_name_is_refused_never_read_as_the_working_folder(
    tiny_runs, tmp_path, fake_root, capsys, monkeypatch, command, name
):
    """`--dataset "$DATA"` with DATA unset: probe and export-images read the working folder as an image folder (and
    wrote a .rotnet-cache into it); verify took it as not given and verified on the recorded data. A variant:
    `--pretrain-dataset " "` ('' means the run's own dataset) named a folder called " "."""
    run = shutil.copytree(tiny_runs, tmp_path / "copy") / "resnet18/rotation/seed0"
    (work := tmp_path / "work").mkdir()
    monkeypatch.chdir(work)
    key = "pretrain_dataset" if command == "--pretrain-dataset" else "dataset"
    if command == "--pretrain-dataset":
        argv = [*data_commands(run, tmp_path, fake_root)["train"], "--pretrain-dataset", name]
        argv[1] = "layer4-from-rotation"
    else:
        argv = data_commands(run, tmp_path, fake_root)[command]
        argv = [*argv[:1], name, *argv[2:]] if command == "export-images" else [*argv, "--dataset", name]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{key} must name a dataset or an image folder; got {name!r}" in err and err.count("\n") == 1
    assert not any(work.iterdir()) and not (run / "verify.json").exists()


def test_missing_data_root(capsys, tmp_path):
    line = error_line(capsys, "train", "rotation", root=tmp_path, data=tmp_path / "none")
    assert "CIFAR-10 not found" in line and "put the cifar-10-batches-py folder" in line


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "stl10"])
@pytest.mark.parametrize("download", [False, True])
def test_a_data_root_that_is_a_file_is_named_so(capsys, tmp_path, dataset, download):
    """`ROTNET_DATA=/etc/passwd` was told to "put the cifar-10-batches-py folder under /etc/passwd" and, downloading,
    tried to extract an archive into the file."""
    afile = tmp_path / "notes.txt"
    afile.write_text("mine\n")
    argv = ["train", "rotation", *TINY, "--runs-root", str(tmp_path / "runs"), "--data-root", str(afile)]
    assert main([*argv, "--dataset", dataset, *([] if download else ["--no-download"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"rotnet: error: {afile} is a file, not a folder; name the folder"), err
    assert afile.read_text() == "mine\n" and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("download", [False, True])
@pytest.mark.parametrize(
    "dataset, folder, present, missing",
    [
        ("cifar10", FOLDER, ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"],
         "test_batch"),
        ("cifar10", FOLDER, ["test_batch"], "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5"),
        ("cifar100", "cifar-100-python", ["train"], "test"),
        ("stl10", "stl10_binary", ["train_X.bin", "test_X.bin", "test_y.bin"], "train_y.bin"),
        ("stl10-unlabeled", "stl10_binary", ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"],
         "unlabeled_X.bin"),
    ],
)  # fmt: skip
def test_a_partial_copy_of_a_dataset_names_what_it_lacks_and_is_never_downloaded_over(
    capsys, tmp_path, monkeypatch, dataset, folder, present, missing, download
):
    """A CIFAR-10 folder without its test_batch was "not found" (put the folder there: it was there) and, downloading,
    had the archive extracted over the files it held: a copy that differs from the official release (as a rebuilt
    one does) was replaced without a word, and the runs made on it no longer matched their data."""
    import torchvision.datasets.utils

    def no_download(*args, **kwargs):
        raise AssertionError("a download over a partial copy")

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", no_download)
    for name in present:
        (tmp_path / "data" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / folder / name).write_bytes(b"mine")
    argv = ["train", "rotation", *TINY, "--runs-root", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data")]
    assert main([*argv, "--dataset", dataset, *([] if download else ["--no-download"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'data' / folder} lacks {missing} of " in err[0], err
    assert sorted(p.name for p in (tmp_path / "data" / folder).iterdir()) == sorted(present)
    assert all((tmp_path / "data" / folder / name).read_bytes() == b"mine" for name in present)


@pytest.mark.parametrize("download", [False, True])
def test_data_root_naming_the_batches_folder_itself(capsys, tmp_path, data, download):
    """--data-root .../cifar-10-batches-py asked to put that folder "under .../cifar-10-batches-py" and, downloading,
    created one inside it."""
    inner = data / FOLDER
    before = sorted(inner.rglob("*"))
    argv = ["train", "rotation", *TINY, "--runs-root", str(tmp_path / "runs"), "--data-root", str(inner)]
    assert main(argv if download else [*argv, "--no-download"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rotnet: error: {inner} is the {FOLDER} folder itself; pass the folder that holds it: {data}"]
    assert sorted(inner.rglob("*")) == before


def test_truncated_batch_file(capsys, tmp_path, data):
    path = data / FOLDER / "data_batch_3"
    path.write_bytes(path.read_bytes()[:1000])
    assert "truncated or corrupt" in error_line(capsys, "train", "rotation", root=tmp_path, data=data)


def test_wrong_array_shape(capsys, tmp_path, data):
    path = data / FOLDER / "data_batch_1"
    batch = pickle.loads(path.read_bytes())
    batch["data"] = batch["data"].reshape(-1, 3, 32, 32)
    path.write_bytes(pickle.dumps(batch, protocol=2))
    assert "(N, 3072) uint8" in error_line(capsys, "train", "rotation", root=tmp_path, data=data)


def test_labels_out_of_range(capsys, tmp_path, data):
    path = data / FOLDER / "test_batch"
    batch = pickle.loads(path.read_bytes())
    batch["labels"][3] = 10
    path.write_bytes(pickle.dumps(batch, protocol=2))
    assert "labels must lie in 0-9" in error_line(capsys, "train", "rotation", root=tmp_path, data=data)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("train", "rotaton"), ["unknown experiment 'rotaton'", "layer4-from-rotation"]),
        (("train", "rotation", "--arch", "resnet19"), ["arch must be one of resnet18, resnet34, resnet50"]),
        (("train", "rotation", "--preset", "fast"), ["unknown preset 'fast'", "paper", "quick"]),
        (("train", "rotation", "--epochs", "0"), ["must be a positive number"]),
        (("train", "rotation", "--lr", "-0.1"), ["must be a positive number"]),
        (("train", "rotation", "--batch-size", "0"), ["must be a positive number"]),
        (("train", "rotation", "--set", "lr=fast"), ["lr must be a number"]),
        (("reproduce", "--jobs=-1"), ["--jobs (jobs) must be zero (auto) or a positive number; got -1"]),
        # --jobs 2 gives each job a GPU of those visible: it would silently ignore the one GPU --device names
        (("reproduce", "--jobs=2", "--device", "cuda:1"), ["--device cuda:1 names one GPU", "CUDA_VISIBLE_DEVICES"]),
    ],
)
def test_a_bad_name_or_value_is_one_line(capsys, tmp_path, fake_root, args, said):
    line = error_line(capsys, *args, root=tmp_path, data=fake_root)
    assert all(words in line for words in said), line


def test_unknown_configuration_key(capsys, tmp_path, fake_root):
    line = error_line(capsys, "train", "rotation", "--set", "learning_rate=0.1", root=tmp_path, data=fake_root)
    assert "unknown configuration key 'learning_rate'" in line and "valid keys" in line
    toml = tmp_path / "c.toml"
    toml.write_text("epochz = 3\n")
    line = error_line(capsys, "train", "rotation", "--config", str(toml), root=tmp_path, data=fake_root)
    assert "unknown configuration key 'epochz'" in line


@pytest.mark.parametrize("recorded", [{"arch": "resnet50"}, {}])
def test_init_from_another_arch(capsys, tmp_path, fake_root, recorded):
    """Weights that record their arch are named by it; others by the tensors that differ."""
    path = tmp_path / "r50.safetensors"
    save_tensors(path, build_model("resnet50", 4).state_dict(), {"config": {"task": "rotation", **recorded}})
    line = error_line(capsys, "train", "full-from-rotation", "--init", str(path), root=tmp_path, data=fake_root)
    if recorded:
        assert "holds rotation weights of arch resnet50, but this run builds resnet18" in line
        assert "pass --arch resnet50," in line
    else:
        assert "do not match the model: missing" in line and "wrong shape" in line


def test_init_from_another_task(capsys, tmp_path, fake_root, trained):
    assert (
        main(
            [
                "train",
                "full-from-random",
                "--runs-root",
                str(trained),
                "--data-root",
                str(fake_root),
                "--no-download",
                *TINY,
            ]
        )
        == 0
    )
    capsys.readouterr()
    path = trained / "resnet18/full-from-random/seed0/model.safetensors"
    line = error_line(capsys, "train", "full-from-rotation", "--init", str(path), root=tmp_path, data=fake_root)
    assert "weights of a classification run, not of a rotation run" in line


def test_checkpoint_from_another_run(capsys, tmp_path, fake_root, trained):
    """Another run's checkpoints copied in: without a manifest nothing vouches for them; sealed in by a forger, they
    are refused as another run's, naming the difference."""
    target = tmp_path / "resnet18/full-from-random/seed0/checkpoints"
    target.mkdir(parents=True)
    for ckpt in (trained / "resnet18/rotation/seed0/checkpoints").glob("*.safetensors"):
        shutil.copy(ckpt, target)
    line = error_line(capsys, "train", "full-from-random", root=tmp_path, data=fake_root)
    assert "no readable checkpoint" in line and "--restart" in line
    reseal(target.parent)
    line = error_line(capsys, "train", "full-from-random", root=tmp_path, data=fake_root)
    assert "belongs to another run" in line and "task: 'rotation' -> 'classification'" in line


def test_truncated_checkpoints(capsys, tmp_path, fake_root, trained):
    folder = trained / "resnet18/rotation/seed0"
    (folder / "result.json").unlink()
    reseal(folder)  # a run that stopped before its end: no result.json in its record
    for ckpt in (folder / "checkpoints").glob("*.safetensors"):
        ckpt.write_bytes(ckpt.read_bytes()[:200])
    line = error_line(capsys, "train", "rotation", root=trained, data=fake_root)
    assert "no readable checkpoint" in line and "--restart" in line


def test_weights_file_not_safetensors(capsys, tmp_path, fake_root):
    path = tmp_path / "weights.pt"
    path.write_text("not weights")
    line = error_line(capsys, "train", "full-from-rotation", "--init", str(path), root=tmp_path, data=fake_root)
    assert "is not a readable safetensors file" in line


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_weights_with_a_code_payload_are_refused_unrun(capsys, tmp_path, fake_root):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": Payload(marker)}, path)
    line = error_line(capsys, "train", "full-from-rotation", "--init", str(path), root=tmp_path, data=fake_root)
    assert "not a readable safetensors file" in line and not marker.exists()
    ckpts = tmp_path / "resnet18/rotation/seed0/checkpoints"
    ckpts.mkdir(parents=True)
    shutil.copy(path, ckpts / "e0001-s000000.safetensors")
    line = error_line(capsys, "train", "rotation", root=tmp_path, data=fake_root)
    assert "no readable checkpoint" in line and not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # and torch's own safe loader refuses it too
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_disk_full_while_saving(capsys, tmp_path, fake_root, monkeypatch):
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            name = ""
        if ".e0002-s" in name:  # the first epoch's files are written, then the disk fills at the second checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    args = ("--checkpoint-minutes", "0", "--keep-checkpoints", "1")
    line = error_line(capsys, "train", "rotation", *args, root=tmp_path, data=fake_root)
    assert "No space left on device" in line
    folder = tmp_path / "resnet18/rotation/seed0"
    files = sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert files == ["e0001-s000000.safetensors"]  # the good checkpoint survives; no temp file is left
    load_tensors(folder / "checkpoints" / files[0])
    assert (folder / "metrics.jsonl").read_text().count("\n") == 1
    monkeypatch.setattr(os, "fsync", real_fsync)
    args = ["--runs-root", str(tmp_path), "--data-root", str(fake_root), "--no-download", *TINY]
    assert main(["train", "rotation", *args, "--checkpoint-minutes", "0", "--keep-checkpoints", "1"]) == 0  # resumes
    assert "resuming at epoch 2" in capsys.readouterr().out


def test_init_path_missing(capsys, tmp_path, fake_root):
    line = error_line(
        capsys,
        "train",
        "layer4-from-rotation",
        "--init",
        str(tmp_path / "no.safetensors"),
        root=tmp_path,
        data=fake_root,
    )
    assert "no rotation weights at" in line and "check the --init path" in line


def test_non_finite_loss_stops_naming_epoch_and_step(capsys, tmp_path, fake_root):
    line = error_line(
        capsys, "train", "rotation", "--lr", "1e30", "--checkpoint-every", "1", root=tmp_path, data=fake_root, code=3
    )
    assert "non-finite loss at epoch 1, step" in line and "last good checkpoint is kept" in line
    step = int(line.split("step ")[1].split(";")[0])
    ckpts = sorted(p.name for p in (tmp_path / "resnet18/rotation/seed0/checkpoints").iterdir())
    assert all(int(name[7:13]) < step for name in ckpts)  # nothing saved at or after the bad step


def test_debug_shows_the_traceback(tmp_path, fake_root):

    with pytest.raises(RotnetError):
        main(
            [
                "--debug",
                "train",
                "rotation",
                "--runs-root",
                str(tmp_path),
                "--data-root",
                str(tmp_path / "x"),
                "--no-download",
            ]
        )


def erofs(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system")


@pytest.mark.parametrize("command", ["report", "reproduce", "restart"])
def test_read_only_runs_root_is_one_line(capsys, tmp_path, fake_root, monkeypatch, trained, command):
    import shutil
    import tempfile

    root = tmp_path / "ro"
    shutil.copytree(trained, root)
    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):  # what a read-only file system answers to a new file
        if flags & os.O_CREAT:
            erofs()
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", erofs)
    monkeypatch.setattr(os, "open", read_only_open)
    monkeypatch.setattr(os, "rename", erofs)
    if command == "report":
        code = main(["report", str(root)])
    elif command == "reproduce":
        args = ["--runs-root", str(root), "--data-root", str(fake_root), "--no-download", "--jobs", "1", *TINY]
        code = main(["reproduce", *args])
    else:
        args = ["--runs-root", str(root), "--data-root", str(fake_root), "--no-download", "--restart", *TINY]
        code = main(["train", "rotation", *args])
    err = capsys.readouterr().err
    assert code == 2 and "Read-only file system" in err and "Traceback" not in err, err


def test_a_run_refused_before_it_starts_leaves_no_folder(capsys, tmp_path, fake_root):
    """A run refused at its start (here: init weights of another arch) leaves no config.json or .lock behind for
    `report` to list as started."""
    path = tmp_path / "r50.safetensors"
    save_tensors(path, build_model("resnet50", 4).state_dict(), {"config": {"task": "rotation", "arch": "resnet50"}})
    runs = tmp_path / "runs"
    line = error_line(capsys, "train", "full-from-rotation", "--init", str(path), root=runs, data=fake_root)
    assert "holds rotation weights of arch resnet50" in line
    assert not (runs / "resnet18").exists()


@pytest.mark.parametrize("command", ["probe", "verify", "export"])
def test_a_mistyped_run_folder_names_the_run_folders_near_it(capsys, tmp_path, command):
    """A run folder that does not exist (rotation/seed0 where the smoke preset wrote rotation@200pc/seed0) is named
    with the run folders near it."""
    for name in ("rotation@200pc/seed0", "rotation@200pc/seed1", "full-from-random@200pc/seed0"):
        (tmp_path / "resnet18" / name).mkdir(parents=True)
        (tmp_path / "resnet18" / name / "config.json").write_text("{}")
    asked = tmp_path / "resnet18/rotation/seed0"
    args = [command, str(asked), *([str(tmp_path / "out")] if command == "export" else [])]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{asked} does not exist; run folders near it: " in err[0], err
    assert err[0].split("near it: ")[1].startswith(str(tmp_path / "resnet18/rotation@200pc/seed0"))
    assert str(tmp_path / "resnet18/full-from-random@200pc/seed0") in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given", ["", "resnet18", "resnet18/rotation"])
@pytest.mark.parametrize("door", ["probe", "verify", "export", "train --init", "load_backbone", "metadata"])
def test_a_runs_root_named_where_a_run_is_wanted_names_its_runs(capsys, tmp_path, fake_root, tiny_runs, door, given):
    """`verify RUNS_ROOT` said "not a rotnet run folder (no config.json)", `export` of an experiment's folder "not a
    finished rotnet run", and `load_backbone(RUNS_ROOT)` "weights file not found: RUNS_ROOT/model.safetensors": each
    door that takes a run now names the runs the folder holds (layout.not_a_run)."""
    import shutil

    import rotnet

    root = tmp_path / "runs"
    shutil.copytree(tiny_runs / "resnet18/rotation", root / "resnet18/rotation")
    folder = root / given if given else root
    before = sorted(tmp_path.rglob("*"))
    if door in ("load_backbone", "metadata"):
        with pytest.raises(RotnetError) as e:
            getattr(rotnet, door)(folder)
        err = [str(e.value)]
    else:
        data = ["--runs-root", str(tmp_path / "new"), "--data-root", str(fake_root), "--no-download"]
        argv = {
            "probe": ["probe", str(folder)],
            "verify": ["verify", str(folder)],
            "export": ["export", str(folder), str(tmp_path / "out")],
            "train --init": ["train", "full-from-rotation", *TINY, "--init", str(folder), *data],
        }[door]
        assert main(argv) == 2
        err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("rotnet: warning")]
    assert len(err) == 1 and f"{folder} is not a rotnet run folder (" in err[0], err
    assert f"; it holds {root / 'resnet18/rotation/seed0'}" in err[0], err
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("experiment", "args", "toml", "words"),
    [
        ("rotation", ["--set", "task=classification"], "", "task=classification contradicts the experiment rotation"),
        ("rotation", [], '[[rule]]\nwhen = { task = "rotation" }\nset = { experiment = "full-from-random" }\n',
         "experiment=full-from-random contradicts the experiment rotation"),
        ("full-from-random", [], 'init = "rotation"\n',
         "init=rotation contradicts the experiment full-from-random (init=random); that is the experiment "
         "full-from-rotation: name it instead"),
        ("layer4-from-random", ["--set", "trainable=all"], "", "that is the experiment full-from-random"),
        ("full-from-random", ["--init", "w.safetensors"], "",
         "--init names weights to start from, but full-from-random starts from random init; use train "
         "full-from-rotation --init PATH"),
        ("rotation", ["--init", "w.safetensors"], "", "rotation starts from random init; use a -from-rotation"),
    ],
)  # fmt: skip
def test_a_configuration_that_contradicts_its_experiment_is_refused(
    capsys, tmp_path, fake_root, experiment, args, toml, words
):
    """--init on a from-random experiment, --set task=classification on rotation, or a rule that sets the experiment,
    is refused: no setting is ignored and no run is written into another kind's folder."""
    if toml:
        (tmp_path / "c.toml").write_text(toml)
        args = [*args, "--config", str(tmp_path / "c.toml")]
    line = error_line(capsys, "train", experiment, *args, root=tmp_path / "runs", data=fake_root)
    assert words in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("where", ["checkpoints", "run folder", "arch folder", "tensorboard", "plots"])
def test_no_write_or_delete_passes_through_a_folder_link_rotnet_did_not_make(
    capsys, tmp_path, fake_root, tiny_runs, where
):
    """With seed0/checkpoints a link to another folder, no checkpoint is written there and no file there is pruned."""
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    elsewhere.mkdir()
    theirs = elsewhere / "e0000-s000001.safetensors"
    theirs.write_bytes(b"someone else's file")
    link = {
        "checkpoints": runs / "resnet18/rotation/seed0/checkpoints",
        "run folder": runs / "resnet18/rotation/seed0",
        "arch folder": runs / "resnet18",
        "tensorboard": runs / "resnet18/rotation/seed0/tensorboard",
        "plots": runs / "plots",
    }[where]
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere, target_is_directory=True)
    args = ["--checkpoint-minutes", "0", *(["--logger", "tensorboard"] if where == "tensorboard" else [])]
    if where == "plots":  # a report over the session's run
        shutil.copytree(tiny_runs, runs, dirs_exist_ok=True)
        assert main(["report", str(runs)]) == 2
    else:
        assert cli("train", "rotation", *args, root=runs, data=fake_root) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"{link} is a link rotnet did not make" in err[-1]
    assert (
        sorted(p.name for p in elsewhere.iterdir()) == [theirs.name] and theirs.read_bytes() == b"someone else's file"
    )


FOLDER_PLACES = {  # every path a user names that rotnet makes (or reads) a folder at; {f} is the path under test
    "train --runs-root": ["train", "rotation", *TINY, "--runs-root", "{f}", "--data-root", "{data}", "--no-download"],
    "reproduce --runs-root": ["reproduce", *TINY, "--runs-root", "{f}", "--data-root", "{data}", "--no-download"],
    "label-efficiency --runs-root": ["label-efficiency", "--per-class", "2", *TINY, "--runs-root", "{f}",
                                     "--data-root", "{data}", "--no-download"],
    "report": ["report", "{f}"],
    "export": ["export", "{run}", "{f}"],
    "export-images": ["export-images", "cifar10", "{f}", "--data-root", "{data}", "--no-download"],
    "probe --feature-cache": ["probe", "{run}", "--feature-cache", "{f}", "--data-root", "{data}", "--no-download"],
    "--cache-dir": ["train", "rotation", *TINY, "--dataset", "{photos}", "--cache-dir", "{f}", "--runs-root", "{runs}"],
    "--data-root": ["train", "rotation", *TINY, "--data-root", "{f}", "--runs-root", "{runs}"],
}  # fmt: skip


@pytest.mark.parametrize("below", ["", "sub", "sub/deeper"])
@pytest.mark.parametrize("place", list(FOLDER_PLACES))
def test_a_file_where_a_folder_is_named_is_said_in_one_line(tiny_runs, fake_root, tmp_path, capsys, place, below):
    """A runs root that is a file said "cannot open notes.txt: Not a directory", one under a file "output directory
    ... is not writable", and export, a probe's feature cache or a download into notes.txt/sub a bare "Not a
    directory" (the probe after extracting every feature): each names the file in the way, before any work; the
    runs roots before the data is read (its warning came first, and seconds of reading on the real data)."""
    from tests.helpers import images, save

    save(tmp_path / "photos", images(12, seed=1))
    afile = tmp_path / "notes.txt"
    afile.write_text("mine\n")
    before = sorted(tmp_path.rglob("*"))
    given = {"f": str(afile / below), "data": str(fake_root), "run": str(tiny_runs / "resnet18/rotation/seed0")}
    given |= {"photos": str(tmp_path / "photos"), "runs": str(tmp_path / "runs")}
    assert main([a.format(**given) for a in FOLDER_PLACES[place]]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and (f"{afile} is a file, not a folder" in err[0] or "is not a folder" in err[0]), err
    assert afile.read_text() == "mine\n" and sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "args",
    [
        ["probe", "RUN"],
        ["export", "RUN", "OUT"],
        ["export-images", "cifar10", "OUT"],
        ["report", "RUN"],
        ["bench", "--archs", "resnet18"],
    ],
)
def test_a_one_process_command_under_torchrun_is_refused_before_it_writes(args, tmp_path, monkeypatch, capsys):
    """Under torchrun every process runs the command it is given: one made for a single process (anything but train,
    reproduce, label-efficiency and verify, which run as ranks of one job) would run whole in each, each writing the
    same files (two exports, two reports at once). It is refused in every process, naming why."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"rotnet {args[0]} runs in one process; run it without torchrun (it started 2" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["two", "", "-1", "2.0"])
def test_a_world_size_that_is_no_number_is_one_line(value, tmp_path, monkeypatch, capsys, fake_root):
    """WORLD_SIZE is torchrun's; set by hand to something else it was a ValueError's traceback."""
    monkeypatch.setenv("WORLD_SIZE", value)
    assert cli("train", "rotation", root=tmp_path / "runs", data=fake_root) == 2
    assert f"WORLD_SIZE must be a whole number (torchrun sets it); got {value!r}" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


RUN = "~/runs/resnet18/rotation/seed0"
TILDE = {  # every way a user names a path, spelled with ~ as no shell expands it -> (argv or API call, what it makes)
    "--runs-root=~/...": (["train", "rotation", *TINY, "--runs-root=~/runs", "--data-root=~/data"], None),
    "$ROTNET_DATA": (["train", "rotation", *TINY, "--runs-root", "~/runs"], None),
    "--init": (["train", "full-from-rotation", *TINY, "--init", RUN, "--runs-root", "~/new", "--data-root", "~/data"],
               "new/resnet18/full-from-rotation/seed0/result.json"),
    "--set init_path": (["train", "full-from-rotation", *TINY, f"--set=init_path={RUN}", "--runs-root", "~/set",
                         "--data-root", "~/data"], "set/resnet18/full-from-rotation/seed0/result.json"),
    "--config": (["train", "rotation", "--config", "~/tiny.toml", *TINY, "--runs-root", "~/runs", "--data-root",
                  "~/data"], None),
    "verify RUN": (["verify", RUN, "--data-root", "~/data", "--device", "cpu"],
                   "runs/resnet18/rotation/seed0/verify.json"),
    "export RUN OUT": (["export", RUN, "~/hub"], "hub/model.safetensors"),
    "report ROOT": (["report", "~/runs"], "runs/report.md"),
    "export-images FOLDER OUT": (["export-images", "~/photos", "~/pngs", "--unlabeled"], "pngs"),  # read ./~/photos
    "api runs_root, data_root": ("train", None),
    "api load_backbone": ("load_backbone", None),
}  # fmt: skip


@pytest.mark.parametrize("how", list(TILDE))
def test_a_path_spelled_with_a_tilde_is_the_users_home_never_a_folder_named_tilde(
    tiny_runs, fake_root, tmp_path, monkeypatch, how
):
    """`--runs-root=~/runs` (no shell expands a ~ after =), a quoted "~/data", ROTNET_DATA="~/data" or
    `runs_root="~/runs"` in Python made or read a folder named `~` in the working folder: every path a user names
    goes through files.user_path, which expands it as torchvision's datasets expand their root."""
    import rotnet
    from tests.helpers import images, save

    home, work = tmp_path / "home", tmp_path / "work"
    shutil.copytree(tiny_runs, home / "runs")
    shutil.copytree(fake_root, home / "data")
    (home / "tiny.toml").write_text("eval_every = 1\n")
    save(home / "photos", images(12, seed=1, size=16))
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ROTNET_DATA", "~/data")
    monkeypatch.chdir(work)
    call, made = TILDE[how]
    if call == "train":
        r = rotnet.train("rotation", runs_root="~/runs", data_root="~/data", download=False, device="cpu",
                         epochs=2, batch_size=32, eval_batch_size=64)  # fmt: skip
        assert r.folder == home / "runs/resnet18/rotation/seed0"
    elif call == "load_backbone":
        assert rotnet.load_backbone(RUN).fc.out_features == 4
    else:
        assert main([*call, "--no-download"] if call[0] not in ("export", "report", "export-images") else call) == 0
    assert list(work.iterdir()) == []
    assert made is None or (home / made).exists()


UNUSABLE = {  # a path no command can use -> what the one error says of it
    "a link loop": ("loop", "loop cannot be used: a link on its way leads back to itself (a link loop)"),
    "a name too long": ("x" * 300, f"{'x' * 70}...{'x' * 20} (300 characters) cannot be used: it is longer than this"
                                   " system allows a path or a name in it to be"),
}  # fmt: skip
PLACES = {  # every place a user names a path -> argv (BAD: the path), or an API call's name
    "--runs-root": ["train", "rotation", *TINY, "--runs-root", "BAD", "--data-root", "DATA"],
    "--data-root": ["train", "rotation", *TINY, "--runs-root", "runs", "--data-root", "BAD"],
    "$ROTNET_DATA": ["train", "rotation", *TINY, "--runs-root", "runs"],
    "--init": ["train", "full-from-rotation", *TINY, "--init", "BAD", "--runs-root", "runs", "--data-root", "DATA"],
    "--set init_path": ["train", "full-from-rotation", *TINY, "--set", "init_path=BAD", "--data-root", "DATA"],
    "--config": ["train", "rotation", *TINY, "--config", "BAD", "--data-root", "DATA"],
    "--cache-dir": ["train", "rotation", *TINY, "--cache-dir", "BAD", "--data-root", "DATA"],
    "--dataset": ["train", "rotation", *TINY, "--dataset", "BAD", "--runs-root", "runs"],
    "--set pretrain_dataset": ["train", "full-from-rotation", *TINY, "--set", "pretrain_dataset=BAD"],
    "reproduce --runs-root": ["reproduce", *TINY, "--runs-root", "BAD", "--data-root", "DATA"],
    "label-efficiency --runs-root": ["label-efficiency", "--runs-root", "BAD", "--data-root", "DATA"],
    "verify RUN": ["verify", "BAD", "--data-root", "DATA"],
    "probe RUN": ["probe", "BAD", "--data-root", "DATA"],
    "probe --feature-cache": ["probe", "RUN", "--feature-cache", "BAD", "--data-root", "DATA"],
    "export RUN": ["export", "BAD", "out"],
    "export OUT": ["export", "RUN", "BAD"],
    "report ROOT": ["report", "BAD"],
    "export-images FOLDER": ["export-images", "BAD", "out"],
    "export-images OUT": ["export-images", "cifar10", "BAD", "--data-root", "DATA"],
    "bench --out": ["bench", "--out", "BAD", "--data-root", "DATA"],
    "api train runs_root": "train",
    "api train data_root": "train",
    "api reproduce runs_root": "reproduce",
    "api metadata": "metadata",
    "api load_backbone": "load_backbone",
}


@pytest.mark.parametrize("bad", list(UNUSABLE))
@pytest.mark.parametrize("place", list(PLACES))
def test_a_path_no_command_can_use_is_one_error_where_it_is_named(
    place, bad, tiny_runs, fake_root, tmp_path, monkeypatch, capsys
):
    """A link that leads back to itself was a RuntimeError's traceback from `Path.resolve` (export OUT, a runs root)
    or "does not exist" (verify); a name longer than the system allows, an OSError from the Python API. Every path a
    user names goes through files.user_path, which says either in one line before anything is read or written."""
    import rotnet

    path, said = UNUSABLE[bad]
    monkeypatch.chdir(tmp_path)
    os.symlink("loop", "loop")
    monkeypatch.setenv("ROTNET_DATA", path if place == "$ROTNET_DATA" else str(fake_root))
    before = sorted(tmp_path.rglob("*"))
    run = tiny_runs / "resnet18/rotation/seed0"
    call = PLACES[place]
    if isinstance(call, str):
        kw = {"runs_root": "runs", "data_root": str(fake_root), "download": False, "device": "cpu"}
        kw |= {"runs_root": path} if "runs_root" in place else {"data_root": path} if "data_root" in place else {}
        with pytest.raises(RotnetError) as e:
            if call in ("metadata", "load_backbone"):
                getattr(rotnet, call)(path)
            else:
                getattr(rotnet, call)(*(["rotation"] if call == "train" else []), preset=TINY_PRESET, **kw)
        assert str(e.value) == f"{said}; name a folder or a file"
    else:
        swap = {"BAD": path, "DATA": str(fake_root), "RUN": str(run)}
        argv = [swap.get(a, a.replace("BAD", path)) for a in call]
        assert main([*argv, *(["--no-download"] if "--data-root" in argv or "DATA" in call else [])]) == 2
        err = capsys.readouterr().err.strip().splitlines()  # argparse names the argument: "argument dataset: ..."
        assert len(err) == 1 and err[0].startswith("rotnet: error: ")
        assert err[0].endswith(f"{said}; name a folder or a file")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("inside", ["model.safetensors", "config.json", "metrics.jsonl", "checkpoints", "a checkpoint"])
@pytest.mark.parametrize("command", ["probe", "verify", "export"])
def test_a_file_or_folder_inside_a_run_named_as_the_run_names_the_run(capsys, tmp_path, tiny_runs, command, inside):
    """`verify RUN/model.safetensors` said "not a rotnet run folder (no config.json)": the run is the folder above,
    which the error now names (layout.not_a_run, every command that takes a run)."""
    import shutil

    run = shutil.copytree(tiny_runs / "resnet18/rotation/seed0", tmp_path / "runs/resnet18/rotation/seed0")
    named = run / inside
    if inside == "a checkpoint":
        named = next((run / "checkpoints").iterdir())
    before = sorted(tmp_path.rglob("*"))
    assert main([command, str(named), *([str(tmp_path / "out")] if command == "export" else [])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rotnet: error: {named} is a {'folder' if named.is_dir() else 'file'} inside the run folder {run}; "
                   "name that folder"], err  # fmt: skip
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "inside", ["config.json", "metrics.jsonl", "examples.safetensors", "checkpoints", "a checkpoint", "a state"]
)
@pytest.mark.parametrize("door", ["train --init", "load_backbone", "metadata"])
def test_a_record_file_or_folder_named_as_weights_names_the_run(capsys, tmp_path, fake_root, tiny_runs, door, inside):
    """`--init RUN/config.json` said "not a readable safetensors file", and a resume checkpoint (a .safetensors of
    model, optimizer and loop state) or the run's test examples "the tensors do not match the model: ... unexpected
    loop.sums" (or "images, pred"): a run's record
    file or folder, named where weights are wanted (a run folder or a .safetensors file), names the run folder
    (record.weights_file), also a .safetensors one below it ("a state": a copy of the weights put there)."""
    import shutil

    import rotnet

    run = shutil.copytree(tiny_runs / "resnet18/rotation/seed0", tmp_path / "runs/resnet18/rotation/seed0")
    named = run / inside
    if inside == "a checkpoint":
        named = next((run / "checkpoints").glob("*.safetensors"))
    elif inside == "a state":
        named = run / "checkpoints/old/model.safetensors"
        named.parent.mkdir()
        shutil.copy2(run / "model.safetensors", named)
    if door == "train --init":
        data = ["--runs-root", str(tmp_path / "new"), "--data-root", str(fake_root), "--no-download"]
        assert main(["train", "full-from-rotation", *TINY, "--init", str(named), *data]) == 2
        err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("rotnet: warning")]
    else:
        with pytest.raises(RotnetError) as e:
            getattr(rotnet, door)(named)
        err = [f"rotnet: error: {e.value}"]
    what = "folder" if named.is_dir() else "file"
    assert err == [f"rotnet: error: {named} is a {what} inside the run folder {run}; name that folder"], err
    assert not (tmp_path / "new").exists()
