"""Bad input: one line on stderr, a non-zero exit, no traceback, nothing overwritten. One test per case."""

import errno
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from rotnet.checkpoint import load_tensors, save_tensors
from rotnet.cli import main
from rotnet.models import build_model
from rotnet.readers import FOLDER
from tests.helpers import TINY, cli, error_line, reseal, wait_for


def test_missing_data_root(capsys, tmp_path):
    line = error_line(capsys, "train", "rotation", root=tmp_path, data=tmp_path / "none")
    assert "CIFAR-10 not found" in line and "put the cifar-10-batches-py folder" in line


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


def test_unknown_experiment(capsys, tmp_path, fake_root):
    line = error_line(capsys, "train", "rotaton", root=tmp_path, data=fake_root)
    assert "unknown experiment 'rotaton'" in line and "layer4-from-rotation" in line


def test_unknown_arch(capsys, tmp_path, fake_root):
    line = error_line(capsys, "train", "rotation", "--arch", "resnet19", root=tmp_path, data=fake_root)
    assert "arch must be one of resnet18, resnet34, resnet50" in line


def test_unknown_preset(capsys, tmp_path, fake_root):
    line = error_line(capsys, "train", "rotation", "--preset", "fast", root=tmp_path, data=fake_root)
    assert "unknown preset 'fast'" in line and "paper" in line and "quick" in line


@pytest.mark.parametrize("flag, value", [("--epochs", "0"), ("--lr", "-0.1"), ("--batch-size", "0")])
def test_non_positive_numbers(capsys, tmp_path, fake_root, flag, value):
    line = error_line(capsys, "train", "rotation", flag, value, root=tmp_path, data=fake_root)
    assert "must be a positive number" in line


def test_negative_jobs(capsys, tmp_path, fake_root):
    line = error_line(capsys, "reproduce", "--jobs=-1", root=tmp_path, data=fake_root)
    assert "--jobs (jobs) must be zero (auto) or a positive number; got -1" in line


def test_jobs_with_one_named_gpu(capsys, tmp_path, fake_root):
    """--jobs 2 gives each job a GPU of those visible, so it would silently ignore the GPU --device names."""
    line = error_line(capsys, "reproduce", "--jobs=2", "--device", "cuda:1", root=tmp_path, data=fake_root)
    assert "--device cuda:1 names one GPU" in line and "CUDA_VISIBLE_DEVICES" in line


def test_not_a_number(capsys, tmp_path, fake_root):
    line = error_line(capsys, "train", "rotation", "--set", "lr=fast", root=tmp_path, data=fake_root)
    assert "lr must be a number" in line


def test_unknown_configuration_key(capsys, tmp_path, fake_root):
    line = error_line(capsys, "train", "rotation", "--set", "learning_rate=0.1", root=tmp_path, data=fake_root)
    assert "unknown configuration key 'learning_rate'" in line and "valid keys" in line
    toml = tmp_path / "c.toml"
    toml.write_text("epochz = 3\n")
    line = error_line(capsys, "train", "rotation", "--config", str(toml), root=tmp_path, data=fake_root)
    assert "unknown configuration key 'epochz'" in line


def test_init_from_another_arch(capsys, tmp_path, fake_root):
    path = tmp_path / "r50.safetensors"
    save_tensors(path, build_model("resnet50", 4).state_dict(), {"config": {"task": "rotation", "arch": "resnet50"}})
    line = error_line(capsys, "train", "full-from-rotation", "--init", str(path), root=tmp_path, data=fake_root)
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


def test_output_directory_not_writable(capsys, tmp_path, fake_root):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the runs folder should be")
    line = error_line(capsys, "train", "rotation", root=blocker / "runs", data=fake_root)
    assert "is not writable" in line


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
    from rotnet.errors import RotnetError

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


def start(tmp_path, fake_root, *extra):
    args = ["--runs-root", str(tmp_path), "--data-root", str(fake_root), "--no-download", *TINY, *extra]
    cmd = [sys.executable, "-m", "rotnet", "train", "rotation", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("delay", [0.3, 2.0])
def test_sigint_during_start_up_is_one_line(tmp_path, fake_root, delay):
    proc = start(tmp_path, fake_root, "--epochs", "500")  # never done before the signal
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)  # a Ctrl-C in torch's import is held until it ends: 40 s on a busy CPU
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err


@pytest.mark.parametrize("presses", [1, 2])
def test_sigint_while_torch_imports_is_one_line(tmp_path, fake_root, presses):
    """A KeyboardInterrupt raised inside torch's start-up, where C++ calls Python, used to abort the process
    ("terminate called after throwing an instance of 'pybind11::error_already_set'", exit -6). Now it is held
    until torch has loaded; a second Ctrl-C stops at once."""
    args = ["--runs-root", str(tmp_path), "--data-root", str(fake_root), "--no-download", *TINY]
    cmd = [sys.executable, "-X", "importtime", "-m", "rotnet", "train", "rotation", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:  # -X importtime prints a line as each module finishes: a torch submodule is done,
        lines.append(line)  # so torch's own __init__ is still running
        if line.rsplit("|", 1)[-1].strip().startswith("torch."):
            for _ in range(presses):
                proc.send_signal(signal.SIGINT)
                time.sleep(0.1)
            break
    err = "".join(lines) + proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    said = [line for line in err.splitlines() if line.startswith("rotnet:")]
    at_once = ", before anything was written" if presses == 2 else "; checkpoints already written are kept"
    assert said == [f"rotnet: stopped at once{at_once}"], said
    assert "Traceback" not in err and "terminate called" not in err


def test_ctrl_c_in_verify_does_not_speak_of_checkpoints(monkeypatch, tmp_path, capsys):
    """verify writes nothing, but a Ctrl-C there said "checkpoints already written are kept"."""
    import rotnet.verify

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rotnet.verify, "verify", interrupted)
    assert main(["verify", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "rotnet: stopped at once"


def test_signals_held_while_torch_loads_arrive_after():
    from rotnet.signals import signals_held

    reached = []
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # Python runs a handler between bytecodes: the default one would have raised by now
            reached.append(True)
    assert reached and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_double_sigint_within_50ms_is_one_line(tmp_path, fake_root):
    proc = start(tmp_path, fake_root, "--epochs", "500")

    wait_for("resnet18/rotation/seed0/metrics.jsonl", tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if not line.startswith("rotnet: warning")]  # the fake data warns
    assert len(lines) == 1 and lines[0].startswith("rotnet: "), err


def test_a_run_refused_before_it_starts_leaves_no_folder(capsys, tmp_path, fake_root):
    """A run refused after config.json and .lock were written (here: init weights of another arch) left them: `report`
    then listed a run "started 0/2" that never was."""
    path = tmp_path / "r50.safetensors"
    save_tensors(path, build_model("resnet50", 4).state_dict(), {"config": {"task": "rotation", "arch": "resnet50"}})
    runs = tmp_path / "runs"
    line = error_line(capsys, "train", "full-from-rotation", "--init", str(path), root=runs, data=fake_root)
    assert "do not match the model" in line
    assert not (runs / "resnet18").exists()


@pytest.mark.parametrize("command", ["probe", "verify", "export"])
def test_a_mistyped_run_folder_names_the_run_folders_near_it(capsys, tmp_path, command):
    """The smoke preset writes rotation@200pc/seed0; a command given rotation/seed0 said only "not a rotnet run
    folder (no readable config.json)", as if there were no runs at all."""
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
    """--init on an experiment that starts from random init was ignored; --set task=classification on rotation, or
    a rule that sets the experiment, wrote a run of one kind into another's folder."""
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
    """With seed0/checkpoints a link to another folder, a 134 MB checkpoint was written there and the final prune
    deleted a file that was already there."""
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


def test_stop_signals_the_process_was_started_ignoring_stay_ignored():
    """A rotnet started with Ctrl-C ignored (a shell's background job `cmd &`) ignored it while preparing but stopped
    on it while training, and one held while torch loaded was re-raised into SIG_IGN: now it stays ignored."""
    from rotnet.signals import StopFlag, raise_on_stop, signals_held, stop_handlers

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stop = StopFlag()
        for block in (signals_held(), stop_handlers(stop), raise_on_stop("stopped")):
            with block:
                assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert not stop.requested
    finally:
        signal.signal(signal.SIGINT, before)


def sigint_at_final_outputs(monkeypatch):
    """Ctrl-C once the last step is done, as the first run's weights are written."""
    import rotnet.run

    real, sent = rotnet.run.weights_meta, []

    def meta_then_ctrl_c(*a, **kw):
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))
        return real(*a, **kw)

    monkeypatch.setattr(rotnet.run, "weights_meta", meta_then_ctrl_c)


def test_ctrl_c_after_the_last_step_finishes_the_run_and_stops(capsys, monkeypatch, tmp_path, fake_root):
    """A Ctrl-C after a run's last step was silently dropped: `rotnet train` exited 0 (so `a && b` went on), and
    `reproduce` started its next run. Now the finished run is kept whole and the command stops with 130."""
    sigint_at_final_outputs(monkeypatch)
    line = error_line(capsys, "train", "rotation", root=tmp_path / "one", data=fake_root, code=130)
    folder = tmp_path / "one/resnet18/rotation/seed0"
    assert line == f"rotnet: stopped after the last step; {folder} finished"
    assert (folder / "result.json").is_file()

    sigint_at_final_outputs(monkeypatch)
    root = tmp_path / "plan"
    argv = ["--runs-root", str(root), "--data-root", str(fake_root), "--no-download", "--jobs", "1", *TINY]
    assert main(["reproduce", *argv]) == 130
    assert (root / "resnet18/rotation/seed0/result.json").is_file()
    assert sorted(p.name for p in (root / "resnet18").iterdir()) == ["rotation"]  # no other run began
    assert "stopped; 4 of 5 runs not finished" in capsys.readouterr().err


def test_a_run_started_with_ctrl_c_ignored_trains_through_it(monkeypatch, tmp_path, fake_root):
    from tests.helpers import partial

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert partial("train", "rotation", root=tmp_path, data=fake_root, monkeypatch=monkeypatch) == 0
    finally:
        signal.signal(signal.SIGINT, before)
    assert (tmp_path / "resnet18/rotation/seed0/result.json").is_file()
