"""A from-rotation run starts from rotation weights pretrained on the very files it trains on. Which files is their
fingerprint (sizes and md5s, image counts, statistics), not the dataset's name: "cifar10" named every copy alike, so a
transfer on one copy from a rotation run of another trained, reported and verified as one pipeline on one data."""

from __future__ import annotations

import json
import shutil

import pytest

import rotnet
from rotnet.cli import main
from rotnet.errors import RotnetError
from rotnet.report import write_report
from tests.conftest import write_fake_cifar
from tests.helpers import TINY_PRESET, reseal, with_rotation

HOW = ["train layer4", "train full", "reproduce", "label-efficiency", "api.train", "api.reproduce"]


def start(how: str, root, data) -> str:
    """Start a from-rotation run (or a plan of them) the way `how` does; '' if it ran, else the one error line."""
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
    said = start(how, root, other)
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
    assert start(how, root, moved) == ""
    record = json.loads((root / "resnet18/layer4-from-rotation/seed0/config.json").read_text())
    assert record["init_source_data"]["files"] == record["dataset"]["files"]


@pytest.mark.parametrize("named", ["folder", "file"])
@pytest.mark.parametrize("recorded", ["today", "before init_source_data"])
def test_a_transfer_from_weights_of_other_files_is_reported_so(tiny_runs, tmp_path, named, recorded):
    """Explicit --init weights are taken as given, and recorded with the data they were pretrained on; the report's
    row says that its seed started from weights pretrained on other data. A record that predates
    `init_source_data` is judged by the rotation run in its runs root that still holds its weights."""
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
