"""Exact resume: a run killed at any point and resumed ends bit-identical to an uninterrupted one."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rotnet.checkpoint import load_tensors
from tests.helpers import cli, images, metrics, reseal, save, wait_for

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


def test_sigterm_saves_and_says_how_to_resume(tmp_path, fake_root, reference):
    proc = start(tmp_path, fake_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for("**/checkpoints/e0000-s000002.safetensors", tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    # No skip when it "finished first": the signal comes within a 10 ms poll of step 2's checkpoint, eight steps and
    # two evaluations before the end, so an exit 0 means the signal was not acted on.
    assert proc.returncode == 143  # 128 + SIGTERM, as every rotnet command exits on a stop request
    assert "Re-run the same command to resume" in err and "Traceback" not in err
    done = finish(tmp_path, fake_root)
    assert done.returncode == 0, done.stderr
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


def test_flipped_byte_is_caught_by_the_checksum(tmp_path, fake_root, tiny_runs, capsys):
    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    folder = tmp_path / "resnet18/rotation/seed0"
    (folder / "result.json").unlink()  # pretend the run was interrupted after its last checkpoint
    reseal(folder)
    newest = sorted((folder / "checkpoints").glob("e*.safetensors"))[-1]
    data = bytearray(newest.read_bytes())
    data[-100] ^= 0xFF
    newest.write_bytes(bytes(data))
    cli("train", "rotation", root=tmp_path, data=fake_root)
    assert f"skipping checkpoint {newest.name}: it differs from what rotnet wrote" in capsys.readouterr().err
    reseal(folder)  # past the manifest (a forger's copy): the file's own checksum still catches it
    newest.write_bytes(bytes(data))
    (folder / "result.json").unlink(missing_ok=True)
    reseal(folder)
    cli("train", "rotation", root=tmp_path, data=fake_root)
    assert "checksum does not match" in capsys.readouterr().err


def test_changed_config_is_refused_and_restart_keeps_the_old_run(tmp_path, fake_root, tiny_runs, capsys):
    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    assert cli("train", "rotation", "--lr", "0.01", root=tmp_path, data=fake_root) == 2
    err = capsys.readouterr().err
    assert "different configuration (lr: 0.001 -> 0.01)" in err and err.count("\n") == 1
    assert cli("train", "rotation", "--lr", "0.01", "--restart", root=tmp_path, data=fake_root) == 0
    old = tmp_path / "resnet18/rotation/seed0.old1"
    assert (old / "model.safetensors").is_file() and (old / "config.json").is_file()


def test_finished_run_is_reused_not_redone(tmp_path, fake_root, tiny_runs, capsys):
    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    weights = tmp_path / "resnet18/rotation/seed0/model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 0
    assert "already finished" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == stamp
    assert load_tensors(weights)[0]  # untouched and still verifying


def test_restart_past_a_dangling_old_name_takes_the_next_free_one(tmp_path, fake_root, tiny_runs, capsys):
    """`--restart` past a dangling `seed0.old1` link named the wrong file (it renamed onto the link's name)."""
    import shutil

    from tests.helpers import cli

    root = shutil.copytree(tiny_runs, tmp_path / "runs")
    seed0 = root / "resnet18/rotation/seed0"
    (seed0.parent / "seed0.old1").symlink_to(tmp_path / "nowhere")
    assert cli("train", "rotation", "--restart", root=root, data=fake_root) == 0
    assert (seed0.parent / "seed0.old1").is_symlink() and (seed0.parent / "seed0.old2" / "result.json").is_file()
    assert "seed0.old2" in capsys.readouterr().out


def test_a_stopped_folder_run_resumes_from_the_folders_new_place(tmp_path, fake_root, monkeypatch):
    """The same images at another place (the same folder name) are the same data: the run resumes there."""
    import shutil

    from tests.helpers import metrics, partial

    save(tmp_path / "a/photos", images(40))
    runs = tmp_path / "runs"
    dataset = ["--dataset", str(tmp_path / "a/photos")]
    assert partial("train", "rotation", *dataset, root=runs, data=fake_root, monkeypatch=monkeypatch) == 130
    shutil.move(tmp_path / "a", tmp_path / "b")
    from tests.helpers import cli

    assert cli("train", "rotation", "--dataset", str(tmp_path / "b/photos"), root=runs, data=fake_root) == 0
    run = runs / "photos/resnet18/rotation/seed0"
    assert len(metrics(run)) == 2 and (run / "result.json").is_file()
