import json
from pathlib import Path

import pytest
import torchvision

from rotnet.checkpoint import load_tensors
from rotnet.experiments import EXPERIMENTS
from tests.helpers import cli, metrics


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
    import subprocess
    import sys

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
    for command in ("reproduce", "label-efficiency", "probe", "verify", "report", "bench"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "default" in capsys.readouterr().out or command == "report"


def test_help_explains_what_each_command_takes(capsys):
    """probe's --help did not say what --head chooses; export-images offered a --device it never uses."""
    from rotnet.cli import main

    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    assert "mlp (Linear-BN-ReLU-Linear" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["export-images", "--help"])
    assert "--device" not in capsys.readouterr().out


def test_bench_smoke(tmp_path, fake_root, capsys):
    from rotnet.cli import main

    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--steps", "1", "--warmup", "0", "--batch-size", "8", "--out", str(out)]
    assert main([*args, "--data-root", str(fake_root)]) == 0
    result = json.loads(out.read_text())
    assert set(result["tasks"]) == {"rotation", "layer4"} and result["batch_size"] == 8
    for r in result["tasks"].values():  # every figure measured, every ratio the ratio of the figures it names
        assert all(r[k] > 0 for k in ("a_model_only", "b_rotnet", "c_plain_workers0", "c_plain_workers2", "eval"))
        assert r["b/a"] == r["b_rotnet"] / r["a_model_only"] and r["b/c0"] == r["b_rotnet"] / r["c_plain_workers0"]
    printed = capsys.readouterr().out
    assert f"| rotation | {result['tasks']['rotation']['a_model_only']:.0f} |" in printed
    # A second bench never replaces the first's figures, and says so before it measures anything.
    capsys.readouterr()
    assert main([*args, "--data-root", str(fake_root)]) == 2
    assert "bench.json exists" in capsys.readouterr().err and json.loads(out.read_text()) == result
    assert main([*args[:-1], str(tmp_path / "missing" / "b.json"), "--data-root", str(fake_root)]) == 2
    assert "folder not found" in capsys.readouterr().err


def test_a_mistyped_experiment_is_refused_before_torch_loads_with_a_suggestion():
    import subprocess
    import sys

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
    """A mistyped --data-root was created for the download, and left behind empty when the download failed."""
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


def test_the_plan_estimate_says_seconds_minutes_or_hours():
    from rotnet.plan import Eta

    eta = Eta([10, 10, 10])
    eta.done(0, 12.0)
    assert eta.text(1) == "; about 24 s left in the plan"  # it said "about 0 min"
    eta = Eta([1, 1000])
    eta.done(0, 30.0)
    assert eta.text(1) == "; about 8.3 h left in the plan"


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
