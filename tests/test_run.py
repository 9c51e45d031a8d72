"""One run's life: the weights it starts from are the ones its protocol names, on the data it was made with."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rotnet.checkpoint import load_tensors, save_tensors
from rotnet.cli import main
from tests.conftest import write_fake_cifar
from tests.helpers import TINY, cli, images, metrics, partial, reseal, save, wait_for

ROOT_ARGS = ("--no-download",)


def train(*args, root, data, tiny=True):

    extra = TINY if tiny else []
    return main([*args, "--runs-root", str(root), "--data-root", str(data), *ROOT_ARGS, *extra])


def test_a_transfer_run_refuses_rotation_weights_of_another_protocol(tiny_runs, fake_root, capsys):
    """A 2-epoch rotation run must not silently feed a transfer run whose protocol asks for another."""
    code = train(
        "train", "full-from-rotation", "--batch-size", "16", "--epochs", "1", root=tiny_runs, data=fake_root, tiny=False
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "another protocol" in err and "batch_size: 32 -> 16" in err and "epochs: 2 -> 1" in err
    assert "rotnet train rotation --arch resnet18 --seed 0" in err and "--set batch_size=16" in err
    assert not (tiny_runs / "resnet18/full-from-rotation").exists()  # no empty folder left behind


def test_a_transfer_run_records_its_source(tiny_runs, tmp_path, fake_root):
    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    assert train("train", "full-from-rotation", root=tmp_path, data=fake_root) == 0
    record = json.loads((tmp_path / "resnet18/full-from-rotation/seed0/config.json").read_text())
    weights, _ = load_tensors(tmp_path / "resnet18/rotation/seed0/model.safetensors")
    from rotnet.checkpoint import digest

    assert record["init_from"] == "rotation run" and record["init_sha256"] == digest(weights)
    assert record["init_source_config"]["experiment"] == "rotation" and record["init_source_config"]["epochs"] == 2


def test_explicit_init_is_allowed_and_recorded(tiny_runs, tmp_path, fake_root):
    path = tiny_runs / "resnet18/rotation/seed0/model.safetensors"
    assert train("train", "layer4-from-rotation", "--init", str(path), root=tmp_path / "b", data=fake_root) == 0
    record = json.loads((tmp_path / "b/resnet18/layer4-from-rotation/seed0/config.json").read_text())
    assert record["init_from"] == "--init" and record["init_weights"] == str(path)


ROTATION = "runs/resnet18/rotation/seed0"
SAME_WEIGHTS = {  # the first call's --init, the second's (None: no --init, the lookup in the runs root), one weights
    "its folder, then its weights file": (ROTATION, f"{ROTATION}/model.safetensors"),
    "relative, then absolute": (ROTATION, "ABSOLUTE"),
    "the lookup, then --init": (None, ROTATION),
    "--init, then the lookup": (ROTATION, None),
}


@pytest.mark.parametrize("how", ["reused when finished", "resumed when stopped", "verified from a kept epoch"])
@pytest.mark.parametrize("spelled", list(SAME_WEIGHTS))
def test_a_from_rotation_run_whose_weights_are_named_another_way_is_the_same_run(
    tiny_runs, tmp_path, fake_root, monkeypatch, capsys, spelled, how
):
    """Where rotation weights lie (init_path) was compared as text wherever a run's configuration is: the same run
    was refused as "a different configuration" when its weights were named another way, and `verify --from-epoch`
    refused every from-rotation run ("checkpoint ... belongs to another run (init_path: '' -> ...)"), since it names
    the weights where it finds them. What they are is compared by sha256 (`config.WHERE`, `config.run_diff`)."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_runs, tmp_path / "runs")
    first, second = (["--init", str(tmp_path / ROTATION) if s == "ABSOLUTE" else s] if s else [] for s in
                     SAME_WEIGHTS[spelled])  # fmt: skip
    run, args = tmp_path / "runs/resnet18/full-from-rotation/seed0", ("train", "full-from-rotation")
    if how == "resumed when stopped":
        assert partial(*args, *first, root=tmp_path / "runs", data=fake_root, monkeypatch=monkeypatch) == 130
    else:
        assert cli(*args, *first, "--keep-epoch", "1", root=tmp_path / "runs", data=fake_root) == 0
    sha = json.loads((run / "config.json").read_text())["init_sha256"]
    capsys.readouterr()
    if how == "verified from a kept epoch":
        assert main(["verify", str(run), "--from-epoch", "2", "--data-root", str(fake_root), "--device", "cpu"]) == 0
        return
    keep = ["--keep-epoch", "1"] if how == "reused when finished" else []
    assert cli(*args, *second, *keep, root=tmp_path / "runs", data=fake_root) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert ("already finished; reusing it" in said) == (how == "reused when finished"), said
    assert json.loads((run / "config.json").read_text())["init_sha256"] == sha and (run / "result.json").is_file()


@pytest.mark.parametrize("state", ["finished", "stopped"])
def test_a_from_rotation_run_is_never_reused_or_resumed_from_other_weights(
    tiny_runs, tmp_path, fake_root, monkeypatch, capsys, state
):
    """What lets init_path's text go: other weights, however named, are refused by their sha256."""
    shutil.copytree(tiny_runs, tmp_path / "runs")
    assert cli("train", "rotation", "--seed", "1", root=tmp_path / "other", data=fake_root) == 0
    args = ("train", "full-from-rotation", "--init", str(tmp_path / "runs/resnet18/rotation/seed0"))
    if state == "stopped":
        assert partial(*args, root=tmp_path / "runs", data=fake_root, monkeypatch=monkeypatch) == 130
    else:
        assert cli(*args, root=tmp_path / "runs", data=fake_root) == 0
    capsys.readouterr()
    other = str(tmp_path / "other/resnet18/rotation/seed1")
    assert cli("train", "full-from-rotation", "--init", other, root=tmp_path / "runs", data=fake_root) == 2
    assert "was trained from other rotation weights" in capsys.readouterr().err


def test_weights_named_by_a_relative_path_are_found_again_from_another_working_folder(
    tiny_runs, tmp_path, fake_root, monkeypatch, capsys
):
    """config.json recorded `--init w/model.safetensors` as given, so verify run from another folder looked for
    weights outside the runs root at a path that named none there ("... are not at w/model.safetensors or ...;
    verify needs them"). The record names where they lay as an absolute path."""
    (tmp_path / "w").mkdir()
    shutil.copy(tiny_runs / "resnet18/rotation/seed0/model.safetensors", tmp_path / "w")
    monkeypatch.chdir(tmp_path)
    args = ("train", "full-from-rotation", "--init", "w/model.safetensors")
    assert cli(*args, root=tmp_path / "runs", data=fake_root) == 0
    run = tmp_path / "runs/resnet18/full-from-rotation/seed0"
    assert json.loads((run / "config.json").read_text())["init_weights"] == str(tmp_path / "w/model.safetensors")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["verify", str(run), "--data-root", str(fake_root), "--device", "cpu"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("pretrained", "claims", "refused"),
    [
        ("cifar10", [], False),
        ("cifar10", ["--pretrain-dataset", "cifar10"], False),
        ("cifar10", ["--pretrain-dataset", "photos"], True),
        ("photos", [], True),
        ("photos", ["--pretrain-dataset", "photos"], False),
    ],
)
def test_explicit_init_weights_must_be_of_the_pretraining_data_the_run_names(
    tiny_runs, tmp_path, fake_root, capsys, pretrained, claims, refused
):
    """A from-rotation run is filed and reported by the data its rotation weights were pretrained on: `--init` weights
    of a CIFAR-10 rotation run with `--pretrain-dataset photos` made a row "cifar10 (pretrained on photos)", and
    folder weights without it a row of CIFAR-10 pretraining."""
    photos = tmp_path / "photos"
    save(photos, images(40, seed=5))
    if pretrained == "cifar10":
        weights = tiny_runs / "resnet18/rotation/seed0"
    else:
        assert train("train", "rotation", "--dataset", str(photos), root=tmp_path / "src", data=fake_root) == 0
        weights = next((tmp_path / "src").rglob("rotation/seed0"))
    claims = [str(photos) if c == "photos" else c for c in claims]
    capsys.readouterr()
    code = train("train", "full-from-rotation", "--init", str(weights), *claims, root=tmp_path / "b", data=fake_root)
    assert code == (2 if refused else 0)
    if refused:
        err = capsys.readouterr().err
        assert "pretrained on" in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("flags", [["--arch", "resnet34"], ["--arch", "resnet50"], ["--stem", "cifar"]])
def test_explicit_init_weights_of_another_model_are_named_so(tiny_runs, tmp_path, fake_root, capsys, flags):
    """--init weights of ResNet18 for a ResNet34 run said "weights do not match the model" and listed ninety tensors:
    the weights record their arch and stem, so the error names both models and the flags that fit the weights."""
    weights = tiny_runs / "resnet18/rotation/seed0"
    capsys.readouterr()
    assert train("train", "layer4-from-rotation", "--init", str(weights), *flags, root=tmp_path, data=fake_root) == 2
    err = capsys.readouterr().err.strip()
    assert "holds rotation weights of arch resnet18 and stem imagenet, but this run builds" in err, err
    assert "pass --arch resnet18 --stem imagenet" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / flags[1]).exists() and not list(tmp_path.rglob("config.json"))


@pytest.mark.parametrize("experiment", ["layer4-from-rotation", "full-from-rotation", "API"])
def test_a_transfer_its_data_cannot_train_is_refused_for_that_not_for_its_missing_weights(
    tmp_path, fake_root, capsys, experiment
):
    """A classification run on a folder without class labels was refused as "no rotation weights ...; make them with:
    rotnet train rotation ...": the hint sent the user to train rotation weights for a run that cannot train."""
    photos = tmp_path / "photos"
    save(photos, images(40, seed=5))
    if experiment == "API":
        import rotnet
        from rotnet.errors import RotnetError

        with pytest.raises(RotnetError, match="has no class labels"):
            kw = dict(runs_root=tmp_path / "runs", data_root=fake_root, download=False, batch_size=32)
            rotnet.train("full-from-rotation", dataset=str(photos), **kw)
        return
    capsys.readouterr()
    assert train("train", experiment, "--dataset", str(photos), root=tmp_path / "runs", data=fake_root) == 2
    err = capsys.readouterr().err.strip()
    assert "has no class labels" in err and "make them with" not in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("poison", ["nan-param", "inf-buffer", "dtype"])
def test_init_weights_that_are_not_finite_or_of_the_wrong_dtype_are_refused(tmp_path, fake_root, capsys, poison):
    from rotnet.models import build_model

    state = build_model("resnet18", 4).state_dict()
    if poison == "nan-param":
        state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    elif poison == "inf-buffer":
        state["layer2.0.bn1.running_var"][0] = float("inf")
    else:
        state["layer3.0.conv1.weight"] = state["layer3.0.conv1.weight"].double()
    save_tensors(tmp_path / "w.safetensors", state)
    code = train(
        "train", "full-from-rotation", "--init", str(tmp_path / "w.safetensors"), root=tmp_path, data=fake_root
    )
    assert code == 2
    err = capsys.readouterr().err
    assert ("non-finite" in err) if poison != "dtype" else ("wrong dtype" in err)


def test_resuming_on_other_data_is_refused(tmp_path, fake_root, capsys):
    other = write_fake_cifar(tmp_path / "other", seed=1)
    assert train("train", "rotation", "--epochs", "1", root=tmp_path / "runs", data=fake_root, tiny=False) == 0
    (tmp_path / "runs/resnet18/rotation/seed0/result.json").unlink()
    reseal(tmp_path / "runs/resnet18/rotation/seed0")  # as if stopped after its last checkpoint
    capsys.readouterr()
    assert train("train", "rotation", "--epochs", "1", root=tmp_path / "runs", data=other, tiny=False) == 2
    err = capsys.readouterr().err
    assert "trained on other data" in err and "data_batch_1" in err


@pytest.mark.parametrize("spelling", ["relative", "a moved copy"])
def test_the_same_data_spelled_or_placed_otherwise_is_the_same_data(tmp_path, fake_root, monkeypatch, spelling):
    """The same data root as a relative path, or the same files moved, is the same data."""
    import shutil

    assert train("train", "rotation", "--epochs", "1", root=tmp_path / "runs", data=fake_root, tiny=False) == 0
    (tmp_path / "runs/resnet18/rotation/seed0/result.json").unlink()
    reseal(tmp_path / "runs/resnet18/rotation/seed0")  # as if stopped after its last checkpoint
    if spelling == "relative":
        monkeypatch.chdir(fake_root.parent)
        data = Path(fake_root.name)
    else:
        data = shutil.copytree(fake_root, tmp_path / "moved")
    assert train("train", "rotation", "--epochs", "1", root=tmp_path / "runs", data=data, tiny=False) == 0


def test_fingerprint_is_recorded(tiny_runs):
    record = json.loads((tiny_runs / "resnet18/rotation/seed0/config.json").read_text())
    assert record["dataset"]["train"] == 80 and len(record["dataset"]["files"]) == 6


def test_a_subset_larger_than_a_class_runs_on_all_of_it_and_says_which(tmp_path, fake_root, capsys):
    """`--preset smoke` (200 per class) failed every run on a small dataset, after decoding it; the message named
    classes by index. Now a class with fewer images gives all of them, named in a warning and in result.json."""
    args = ("train", "full-from-random", "--train-per-class", "7", "--epochs", "1")
    assert train(*args, root=tmp_path, data=fake_root) == 0
    from rotnet.data import class_counts
    from rotnet.readers import load_cifar10

    data = load_cifar10(fake_root, download=False)
    counts = {data.class_names[c]: n for c, n in class_counts(data.train_labels).items()}
    small = {name: n for name, n in counts.items() if n < 7}
    assert small, "the fake data must have a class under 7 images for this test to mean anything"
    err = capsys.readouterr().err
    assert "fewer than 7 training images per class in " in err
    assert all(f"{name} ({n})" in err for name, n in small.items())
    result = json.loads((tmp_path / "resnet18/full-from-random@7pc/seed0/result.json").read_text())
    assert result["train_images_per_class"] == {name: min(n, 7) for name, n in counts.items()}
    assert result["train_images"] == sum(min(n, 7) for n in counts.values())


def spoil(kind: str):
    """An edit of a state dict that leaves it finite and loadable but unusable."""
    import torch

    def edit(tensors: dict) -> dict:
        if kind == "negative-variance":
            tensors["bn1.running_var"] = -torch.ones_like(tensors["bn1.running_var"])
        elif kind == "huge-conv":
            tensors = {k: v * 1e30 if k.endswith("conv1.weight") else v for k, v in tensors.items()}
        elif kind == "dead-features":  # layer4's output all zero after its last ReLU: every image looks alike
            tensors["layer4.1.bn2.weight"] = torch.zeros_like(tensors["layer4.1.bn2.weight"])
            tensors["layer4.1.bn2.bias"] = -torch.ones_like(tensors["layer4.1.bn2.bias"])
            tensors["layer4.0.downsample.1.weight"] = torch.zeros_like(tensors["layer4.0.downsample.1.weight"])
            tensors["layer4.0.downsample.1.bias"] = torch.zeros_like(tensors["layer4.0.downsample.1.bias"])
            tensors["layer4.0.bn2.weight"] = torch.zeros_like(tensors["layer4.0.bn2.weight"])
            tensors["layer4.0.bn2.bias"] = torch.zeros_like(tensors["layer4.0.bn2.bias"])
        return tensors

    return edit


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("negative-variance", "a negative BatchNorm running variance in bn1.running_var"),
        ("huge-conv", "non-finite outputs (nan or inf) on a fixed batch of 16 test images"),
        ("dead-features", "one and the same output for each of a fixed batch of 16 different test images"),
    ],
)
def test_init_weights_that_load_but_cannot_work_are_refused_before_training(
    tiny_runs, fake_root, tmp_path, capsys, kind, words
):
    """Finite --init weights that cannot work (a negative BatchNorm variance, conv weights x1e30) are refused before
    training, naming the problem, and no run folder is left."""
    tensors, meta = load_tensors(tiny_runs / "resnet18/rotation/seed0/model.safetensors")
    path = tmp_path / "spoiled.safetensors"
    save_tensors(path, spoil(kind)(tensors), meta)
    root = tmp_path / "runs"
    assert cli("train", "full-from-rotation", "--init", str(path), root=root, data=fake_root) == 2
    err = capsys.readouterr().err
    assert f"rotation weights {path} cannot start a run: {words}" in err and "Traceback" not in err
    assert not (root / "resnet18/full-from-rotation").exists()


def test_a_run_whose_final_weights_are_broken_ends_diverged_never_finished(fake_root, tmp_path, capsys, monkeypatch):
    """Training that leaves finite but unusable weights (here a negative BatchNorm variance, put there after the last
    step) writes no weights or result: failed.json says it diverged, the command exits 3, the report says failed."""
    import json

    import rotnet.lifecycle

    real = rotnet.lifecycle.fit

    def fit_then_spoil(cfg, engine, *args, **kwargs):
        history = real(cfg, engine, *args, **kwargs)
        engine.model.bn1.running_var.fill_(-1.0)
        return history

    monkeypatch.setattr(rotnet.lifecycle, "fit", fit_then_spoil)
    assert cli("train", "rotation", "--epochs", "1", root=tmp_path, data=fake_root) == 3
    assert "diverged: the final weights have a negative BatchNorm running variance" in capsys.readouterr().err
    folder = tmp_path / "resnet18/rotation/seed0"
    assert not (folder / "result.json").exists() and not (folder / "model.safetensors").exists()
    assert "diverged" in json.loads((folder / "failed.json").read_text())["error"]
    assert main(["report", str(tmp_path)]) == 0
    row = next(r for r in json.loads((tmp_path / "results.json").read_text())["rows"] if r["experiment"] == "rotation")
    assert row["ours_mean"] is None and "failed" in row["status"] and "ok" != row["status"]


def test_a_cpu_run_records_its_thread_count(tiny_runs):
    import json

    record = json.loads((tiny_runs / "resnet18/rotation/seed0/config.json").read_text())
    assert isinstance(record["cpu_threads"], int) and f"({record['cpu_threads']} thread" in record["device_name"]


def test_epoch_end_checkpoints_wait_for_the_interval(tmp_path, fake_root, monkeypatch):
    from rotnet.manifest import Seal

    saved = []
    real = Seal.write

    def spy(self, name, data):
        if name.startswith("checkpoints/"):
            saved.append((int(name[13:17]), int(name[19:25])))
        return real(self, name, data)

    monkeypatch.setattr(Seal, "write", spy)
    assert cli("train", "rotation", root=tmp_path / "a", data=fake_root) == 0  # 2 epochs in under 10 minutes
    assert saved == [] and len(metrics(tmp_path / "a/resnet18/rotation/seed0")) == 2
    assert not (tmp_path / "a/resnet18/rotation/seed0/checkpoints").exists()  # a finished run keeps its weights only
    assert cli("train", "rotation", "--checkpoint-minutes", "0", root=tmp_path / "b", data=fake_root) == 0
    assert saved == [(1, 0)]  # the last epoch's would be pruned at once: it is not written
    saved.clear()
    assert cli("train", "rotation", "--keep-checkpoints", "1", root=tmp_path / "c", data=fake_root) == 0
    assert saved == [(2, 0)] and len(list((tmp_path / "c/resnet18/rotation/seed0/checkpoints").iterdir())) == 1


def test_a_run_says_its_plan_and_an_estimate_before_its_first_epoch(tmp_path, fake_root, capsys):
    """`rotnet train rotation` with the paper preset started 45 epochs without a word about what it would do."""
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 0  # 2 epochs of 80 images, batch 32
    lines = capsys.readouterr().out.splitlines()
    plan = f"{tmp_path / 'resnet18/rotation/seed0'}: 2 epochs (2 to go) of 80 images (3 steps of 32), tested on 16"
    assert lines[0].startswith(plan)
    estimate = r"resnet18 rotation: about \d+ s of training left at \d+ img/s \(timed over 3 steps.*"
    assert re.fullmatch(estimate, lines[1])
    assert lines[2].startswith("resnet18 rotation epoch 1/2")


TIMING = {"images_per_s", "seconds", "eval_images_per_s"}


# 80 images, batch 16: 5 steps an epoch, 2 epochs (the lr steps down between them), a checkpoint every 2 steps and
# at each epoch end.
ARGS = [
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--set",
    "eval_batch_size=64",
    "--set",
    "lr_step_epochs=1",
    "--checkpoint-every",
    "2",
    "--no-download",
]


# Every run here starts on 2 threads, whatever the machine's cores; resumes run on 1 (see the first test).
STARTS, RESUMES = os.environ | {"OMP_NUM_THREADS": "2"}, os.environ | {"OMP_NUM_THREADS": "1"}


def command(root: Path, data: Path, experiment: str = "rotation") -> list[str]:
    return [
        sys.executable,
        "-m",
        "rotnet",
        "train",
        experiment,
        "--runs-root",
        str(root),
        "--data-root",
        str(data),
        *ARGS,
    ]


def finish(root: Path, data: Path, env: dict = RESUMES) -> subprocess.CompletedProcess:
    return subprocess.run(command(root, data), env=env, capture_output=True, text=True, timeout=300)


def start(root: Path, data: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(command(root, data), env=STARTS, **kwargs)


def outcome(root: Path) -> tuple[dict, list[dict]]:
    folder = root / "resnet18" / "rotation" / "seed0"
    weights, _ = load_tensors(folder / "model.safetensors")
    return weights, [{k: v for k, v in r.items() if k not in TIMING} for r in metrics(folder)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fake_root):
    root = tmp_path_factory.mktemp("reference")
    assert finish(root, fake_root, STARTS).returncode == 0
    return outcome(root)


def same(a: tuple[dict, list[dict]], b: tuple[dict, list[dict]]) -> bool:
    (wa, ma), (wb, mb) = a, b
    return wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa) and ma == mb


@pytest.mark.parametrize("kill_after", ["e0000-s000002", "e0001-s000004"])  # mid-epoch; the last step of one
def test_sigkill_then_resume_is_bit_identical(tmp_path, fake_root, reference, kill_after):
    """Also: CPU sums depend on the thread count, so a run started on 2 threads (say by a shell) and resumed from
    one with 1 (say a one-thread `reproduce` job) must train on the 2 it started with."""
    proc = start(tmp_path, fake_root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(f"**/checkpoints/{kill_after}.safetensors", tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "resnet18/rotation/seed0/model.safetensors").exists()
    done = finish(tmp_path, fake_root)
    assert done.returncode == 0, done.stderr
    assert "resuming at epoch" in done.stdout and "on 2 threads, as the run started" in done.stdout
    assert same(outcome(tmp_path), reference)


def start_in_a_terminal(root: Path, data: Path) -> tuple[subprocess.Popen, int]:
    """The run in a terminal of its own (a pseudo-terminal it controls, as a shell's); returns it and the terminal's
    other end, whose closing hangs the terminal up, as closing its window or losing an ssh session does."""
    import fcntl
    import pty
    import termios

    ours, theirs = pty.openpty()
    proc = subprocess.Popen(
        command(root, data), env=STARTS, stdin=theirs, stdout=theirs, stderr=theirs, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )  # fmt: skip
    os.close(theirs)
    return proc, ours


def read_all(terminal: int) -> str:
    """What a terminal's other end still holds, once the process there has ended."""
    out = b""
    while True:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # EIO: the terminal has no process left on it
            break
        if not chunk:
            break
        out += chunk
    os.close(terminal)
    return out.decode(errors="replace")


# Every way a run is asked to stop: each saves where it stands, exits 128 + the signal and resumes bit-identically.
# SIGHUP had ended the run where it stood (exit -1), losing every step since its last checkpoint; a closed terminal
# also fails every write to it, the progress line before the stop's checkpoint included, while `kill -HUP` to a run
# in a terminal still open leaves its output there. (Ctrl-C takes the same path: test_signals.)
STOPS = [("SIGTERM", 143), ("SIGHUP in a terminal", 129), ("terminal closed", 129)]


@pytest.mark.parametrize("how, code", STOPS)
def test_a_stop_request_saves_and_says_how_to_resume(tmp_path, fake_root, reference, how, code):
    if "terminal" in how:
        proc, terminal = start_in_a_terminal(tmp_path, fake_root)
    else:
        proc = start(tmp_path, fake_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for("**/checkpoints/e0000-s000002.safetensors", tmp_path, proc)
    if how == "terminal closed":
        os.close(terminal)
        proc.wait(timeout=120)
        err = ""
    elif how == "SIGHUP in a terminal":
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=120)
        err = read_all(terminal)
    else:
        proc.send_signal(getattr(signal, how))
        _, err = proc.communicate(timeout=120)
    # No skip when it "finished first": the signal comes within a 10 ms poll of step 2's checkpoint, eight steps and
    # two evaluations before the end, so an exit 0 means the signal was not acted on.
    assert proc.returncode == code, err[-2000:]  # 128 + the signal, as every rotnet command exits on a stop request
    assert how == "terminal closed" or ("Re-run the same command to resume" in err and "Traceback" not in err)
    assert not (tmp_path / "resnet18/rotation/seed0/model.safetensors").exists()
    done = finish(tmp_path, fake_root)
    assert done.returncode == 0, done.stderr
    assert "resuming at epoch" in done.stdout
    assert same(outcome(tmp_path), reference)


def test_torn_latest_checkpoint_falls_back_to_previous(tmp_path, fake_root, reference):
    proc = start(tmp_path, fake_root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("**/checkpoints/e0001-s000002.safetensors", tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    newest = sorted((tmp_path / "resnet18/rotation/seed0/checkpoints").glob("e*.safetensors"))[-1]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # torn write
    done = finish(tmp_path, fake_root)
    assert done.returncode == 0, done.stderr
    assert f"skipping checkpoint {newest.name}" in done.stderr
    assert same(outcome(tmp_path), reference)


def test_finished_run_is_reused_not_redone(tmp_path, fake_root, tiny_runs, capsys):
    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    weights = tmp_path / "resnet18/rotation/seed0/model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 0
    assert "already finished" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == stamp
    assert load_tensors(weights)[0]  # untouched and still verifying


def test_a_stopped_folder_run_resumes_from_the_folders_new_place(tmp_path, fake_root, monkeypatch, capsys):
    """The same images at another place (the same folder name) are the same data: the run resumes there."""
    import shutil

    save(tmp_path / "a/photos", images(40))
    runs = tmp_path / "runs"
    dataset = ["--dataset", str(tmp_path / "a/photos")]
    assert partial("train", "rotation", *dataset, root=runs, data=fake_root, monkeypatch=monkeypatch) == 130
    shutil.move(tmp_path / "a", tmp_path / "b")
    capsys.readouterr()
    assert cli("train", "rotation", "--dataset", str(tmp_path / "b/photos"), root=runs, data=fake_root) == 0
    assert "resuming at epoch 2, step 1" in capsys.readouterr().out  # not a fresh start
    run = runs / "photos/resnet18/rotation/seed0"
    assert len(metrics(run)) == 2 and (run / "result.json").is_file()


def test_a_compiled_run_trains_and_seals_the_plain_models_weights(tmp_path, fake_root, monkeypatch):
    """`--compile` wraps the model in torch.compile's OptimizedModule, which refuses len(): the loop took the wrapper's
    truth value (`engine.forward or model`), so every compiled run died at its first step with a traceback."""
    import torch

    wrapped = []
    real = torch.compile

    def eager(module, **kwargs):  # the wrapper --compile makes, on dynamo's eager backend: no minutes of inductor
        wrapped.append(module)
        return real(module, backend="eager")

    monkeypatch.setattr(torch, "compile", eager)
    assert train("train", "rotation", "--compile", root=tmp_path, data=fake_root) == 0
    assert wrapped, "--compile did not reach torch.compile"
    run = tmp_path / "resnet18/rotation/seed0"
    assert json.loads((run / "config.json").read_text())["config"]["compile"] is True
    tensors, _ = load_tensors(run / "model.safetensors")
    assert not [k for k in tensors if "_orig_mod" in k]  # the model's own names: loads into a plain ResNet
