"""Safetensors I/O (rotnet.checkpoint): byte-identical for identical content, a checksum over tensors and metadata,
the newest usable checkpoint chosen."""

import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from rotnet import checkpoint as ckpt
from rotnet.checkpoint import (
    FORMAT,
    checkpoint_name,
    load_latest_checkpoint,
    load_tensors,
    save_tensors,
)
from rotnet.errors import RotnetError
from tests.helpers import cli, reseal


def save_checkpoint(folder, epoch: int, step: int, tensors: dict, meta: dict) -> str:
    """A checkpoint file as a run writes one (its name, format and sealed metadata), without a run around it."""
    return save_tensors(folder / checkpoint_name(epoch, step), tensors, ckpt.checkpoint_meta(meta))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_a_resumed_optimizer_state_is_laid_out_as_its_parameters(tmp_path, optimizer, channels_last):
    """Each moment restored from a checkpoint has its parameter's memory layout and values. A file gives tensors
    back contiguous; a GPU's fused Adam refused a channels_last conv weight whose moments were not, so every resume
    on a GPU failed at its first step (found by benchmarks/gpu.py on an H200). On a CPU the layouts are compared."""
    from dataclasses import replace

    from rotnet.config import RunConfig
    from rotnet.loop import build_optimizer

    cfg = replace(RunConfig(), optimizer=optimizer, momentum=0.9)

    def model_and_optimizer():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                                    torch.nn.Linear(8 * 6 * 6, 4))  # fmt: skip
        if channels_last:
            model.to(memory_format=torch.channels_last)
        return model, build_optimizer(cfg, list(model.parameters()), torch.device("cpu"))

    model, opt = model_and_optimizer()
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    tensors, meta = ckpt.optimizer_to_tensors(opt.state_dict())
    save_tensors(tmp_path / "c.safetensors", tensors, meta)
    loaded, meta = load_tensors(tmp_path / "c.safetensors")
    fresh, restored = model_and_optimizer()
    ckpt.load_optimizer(restored, loaded, meta)
    moments = 0
    for p, q in zip(model.parameters(), fresh.parameters(), strict=True):
        for key, value in opt.state[p].items():
            assert torch.equal(restored.state[q][key], value), key
            if value.shape == p.shape:
                assert restored.state[q][key].stride() == q.stride(), (key, p.shape)
                moments += 1
    assert moments == (2 if optimizer == "adam" else 1) * len(list(model.parameters()))


def test_identical_content_gives_identical_bytes(tmp_path):
    """safetensors writes its metadata from a hash map, in an order that changes with every map."""
    tensors = {"b": torch.ones(3), "a": torch.arange(4.0)}
    meta = {"config": {"seed": 0, "arch": "resnet18"}, "format": "x", "epoch": 3}
    digests = set()
    for i in range(8):
        save_tensors(tmp_path / f"{i}.safetensors", tensors, meta)
        digests.add(hashlib.sha256((tmp_path / f"{i}.safetensors").read_bytes()).hexdigest())
    assert len(digests) == 1
    assert torch.equal(load_file(tmp_path / "0.safetensors")["a"], tensors["a"])  # still plain safetensors


def edit_metadata(path, change):
    """Rewrite a file's JSON metadata record in place, leaving the tensors and their checksum as they were."""
    tensors = load_file(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata())
    metadata["meta"] = change(metadata["meta"])
    save_file(tensors, path, metadata=metadata)


def test_checksum_covers_the_metadata(tmp_path):
    save_tensors(tmp_path / "w.safetensors", {"a": torch.ones(2)}, {"epoch": 1})
    edit_metadata(tmp_path / "w.safetensors", lambda m: m.replace('"epoch": 1', '"epoch": 9'))
    with pytest.raises(RotnetError, match="checksum"):
        load_tensors(tmp_path / "w.safetensors")


def checkpoint_meta(epoch: int) -> dict:
    return {"config": {}, "epoch": epoch, "step": 0, "seconds": 1.0, "history": [{}] * epoch, "optimizer": {}}


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.replace('"epoch": 2', '"epoch": 45'),  # edited: the checksum no longer matches
        lambda m: "[1, 2]",  # a list, not a record
        lambda m: "{not json",
    ],
)
def test_edited_or_unreadable_metadata_falls_back_to_the_previous_checkpoint(tmp_path, change):
    for epoch in (1, 2):
        save_checkpoint(tmp_path, epoch, 0, {"w": torch.full((2,), float(epoch))}, checkpoint_meta(epoch))
    edit_metadata(tmp_path / checkpoint_name(2, 0), change)
    with pytest.warns(UserWarning, match="skipping"):
        tensors, meta, path = load_latest_checkpoint(tmp_path)
    assert meta["epoch"] == 1 and path.name == checkpoint_name(1, 0)


def test_a_checksummed_checkpoint_with_missing_fields_is_skipped(tmp_path):
    save_checkpoint(tmp_path, 1, 0, {"w": torch.ones(1)}, checkpoint_meta(1))
    bad = checkpoint_meta(2)
    del bad["history"]
    save_checkpoint(tmp_path, 2, 0, {"w": torch.ones(1)}, bad)
    with pytest.warns(UserWarning, match="unreadable"):
        _, meta, _ = load_latest_checkpoint(tmp_path)
    assert meta["epoch"] == 1


@pytest.mark.parametrize("drop", ["sha256", "checksum"])
def test_a_checkpoint_without_its_checksum_is_not_loaded(tmp_path, drop):
    """A checkpoint whose checksum is missing (its metadata edited) is skipped for the one before it."""
    save_checkpoint(tmp_path, 1, 0, {"w": torch.ones(1)}, checkpoint_meta(1))
    save_checkpoint(tmp_path, 2, 0, {"w": torch.ones(1)}, checkpoint_meta(2))
    path = tmp_path / checkpoint_name(2, 0)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata())
    del metadata[drop]
    metadata["meta"] = metadata["meta"].replace("{}", '{"train_loss": 0.001}', 1)
    save_file(load_file(path), path, metadata=metadata)
    with pytest.warns(UserWarning, match="carries no checksum over its tensors and metadata"):
        _, meta, _ = load_latest_checkpoint(tmp_path)
    assert meta["epoch"] == 1


@pytest.mark.parametrize("epoch, step", [(1, -7), (1, 10**6), (-1, 0), (3, 0), (2, 1)])
def test_a_forged_checkpoint_at_an_impossible_position_is_skipped(tmp_path, epoch, step):
    """Sealed by someone who knows the format (so the checksum matches) at a position the run never reaches."""
    save_checkpoint(tmp_path, 1, 0, {"w": torch.ones(1)}, checkpoint_meta(1))
    meta = checkpoint_meta(max(epoch, 0)) | {"epoch": epoch, "step": step}
    save_tensors(tmp_path / "e0009-s000000.safetensors", {"w": torch.ones(1)}, {"format": FORMAT, **meta})
    with pytest.warns(UserWarning, match="position|history"):
        _, meta, _ = load_latest_checkpoint(tmp_path, epochs=2, steps=5)
    assert meta["epoch"] == 1


def test_a_forged_checkpoint_at_an_impossible_step_is_one_line_not_a_traceback(tmp_path, fake_root, capsys):
    from rotnet.files import sha256_file

    assert cli("train", "rotation", "--keep-checkpoints", "1", root=tmp_path, data=fake_root) == 0
    folder = tmp_path / "resnet18/rotation/seed0"
    (folder / "result.json").unlink()  # as if it had stopped at its last checkpoint
    ckpts = sorted((folder / "checkpoints").iterdir())
    tensors, meta = load_tensors(ckpts[-1])
    for p in ckpts:
        p.unlink()
    path = folder / "checkpoints" / checkpoint_name(0, 10**6)
    save_tensors(path, tensors, meta | {"epoch": 0, "step": 10**6, "history": []})
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith(("checkpoints/", "result"))}
    manifest["files"]["checkpoints/" + path.name] = sha256_file(path)
    from rotnet.manifest import Seal

    Seal(folder, manifest["files"]).commit()
    capsys.readouterr()
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 2
    warning, error = capsys.readouterr().err.splitlines()
    assert "its position (epoch 0, step 1000000) is outside the run" in warning
    assert error.startswith("rotnet: error: no readable checkpoint")


def test_a_cpu_checkpoint_records_the_cpu_it_was_computed_on(tiny_runs):
    """Issue 25: config.json named the CPU, its checkpoints did not (a resumed run's state came from somewhere)."""
    from rotnet.checkpoint import load_tensors
    from rotnet.provenance import cpu_identity

    path = tiny_runs / "resnet18/rotation/seed0/checkpoints/e0002-s000000.safetensors"
    assert load_tensors(path)[1]["cpu"] == cpu_identity()


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
