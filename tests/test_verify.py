"""`rotnet verify RUN`: re-training the first epochs reproduces metrics.jsonl exactly; a tampered line is caught."""

import json
import shutil

import pytest

from rotnet.cli import main
from tests.helpers import cli


@pytest.fixture(scope="module")
def runs(tmp_path_factory, fake_root):
    root = tmp_path_factory.mktemp("runs")
    assert cli("train", "rotation", root=root, data=fake_root) == 0
    assert cli("train", "layer4-from-rotation", root=root, data=fake_root) == 0
    return root


def verify(folder, data, *extra):
    return main(["verify", str(folder), "--data-root", str(data), "--no-download", "--device", "cpu", *extra])


def test_verify_matches_a_run(runs, fake_root, capsys):
    folder = runs / "resnet18/rotation/seed0"
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*")}
    assert verify(folder, fake_root, "--epochs", "2") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{folder}: re-training 2 epochs of 2 on cpu")  # says what it does before minutes of it
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*")} == before  # and writes nothing
    assert "verified, 2 epoch(s) identical" in out and "MISMATCH" not in out
    assert out.count("epoch 2 train_loss") == 1


def test_verify_a_transfer_run_from_a_copied_results_folder(runs, fake_root, tmp_path):
    """Copied elsewhere (as docs/results/ holds them): the source weights are found beside it by their sha256."""
    copy = tmp_path / "copy"
    shutil.copytree(runs, copy)
    shutil.rmtree(runs.parent / "gone", ignore_errors=True)
    record = json.loads((copy / "resnet18/layer4-from-rotation/seed0/config.json").read_text())
    record["init_weights"] = "/nonexistent/model.safetensors"
    (copy / "resnet18/layer4-from-rotation/seed0/config.json").write_text(json.dumps(record))
    assert verify(copy / "resnet18/layer4-from-rotation/seed0", fake_root) == 0


def test_verify_catches_a_tampered_metrics_line(runs, fake_root, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(runs / "resnet18/rotation/seed0", copy / "resnet18/rotation/seed0")
    path = copy / "resnet18/rotation/seed0/metrics.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines[0]["test_acc"] += 0.01
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert verify(copy / "resnet18/rotation/seed0", fake_root) == 1
    assert "epoch 1 test_acc" in capsys.readouterr().out.split("MISMATCH")[0].splitlines()[-1]


def test_verify_refuses_other_data(runs, tmp_path, capsys):
    from tests.conftest import write_fake_cifar

    other = write_fake_cifar(tmp_path / "other", seed=3)
    assert verify(runs / "resnet18/rotation/seed0", other) == 2
    assert "the data differs" in capsys.readouterr().err


def test_verify_re_trains_with_the_threads_the_run_recorded(fake_root, tmp_path, capsys):
    """A run `reproduce --jobs 2` trained on one thread verifies from a two-thread process (sums depend on threads)."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert cli("train", "rotation", root=tmp_path, data=fake_root) == 0
        torch.set_num_threads(2)
        record = json.loads((tmp_path / "resnet18/rotation/seed0/config.json").read_text())
        assert record["device_name"].endswith("(1 thread)")
        assert verify(tmp_path / "resnet18/rotation/seed0", fake_root, "--epochs", "2") == 0
        assert "re-trained on 1 thread, as recorded" in capsys.readouterr().out
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)
