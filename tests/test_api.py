"""rotnet's Python API (rotnet.api): train, reproduce, load_backbone and metadata validate exactly as the command
line does and read a run only through its record."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from rotnet.errors import RotnetError
from tests.helpers import (
    TINY_PRESET,
)


def test_load_backbone_is_plain_torchvision_with_the_runs_metadata(tiny_runs):
    import torchvision

    import rotnet

    model = rotnet.load_backbone(tiny_runs / "resnet18/rotation/seed0")
    assert type(model) is torchvision.models.ResNet and not model.training and model.fc.out_features == 4
    meta = rotnet.metadata(tiny_runs / "resnet18/rotation/seed0/model.safetensors")
    assert meta["arch"] == "resnet18" and meta["stem"] == "imagenet" and meta["task"] == "rotation"
    assert meta["normalization"] == {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.201]}
    assert meta["class_names"] == ["0", "90", "180", "270"] and meta["image_size"] == 32


@pytest.mark.parametrize("how", ["folder", "weights file"])
@pytest.mark.parametrize("reader", ["load_backbone", "metadata"])
def test_weights_inside_a_run_folder_are_read_only_through_its_record(tiny_runs, tmp_path, how, reader):
    """`load_backbone` and `metadata` of RUN/model.safetensors check the run's record as `load_backbone(RUN)` does:
    an edited result is refused by the file's name too."""
    import rotnet
    from rotnet.errors import RotnetError

    run = tmp_path / "resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    target = run if how == "folder" else run / "model.safetensors"
    getattr(rotnet, reader)(target)  # a sealed run loads
    result = json.loads((run / "result.json").read_text())
    (run / "result.json").write_text(json.dumps(result | {"test_acc": 99.0}))
    with pytest.raises(RotnetError, match="its record is tampered"):
        getattr(rotnet, reader)(target)
    loose = shutil.copy(run / "model.safetensors", tmp_path / "loose.safetensors")
    getattr(rotnet, reader)(loose)  # a weights file outside any run folder: its own checksum is what there is


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"experiments": ("nope",)}, "unknown experiment 'nope'"),
        ({"experiments": ("rotation", "full-from-ranodm")}, "did you mean full-from-random"),
        ({"archs": ("resnet19",)}, "unknown arch 'resnet19'"),
        ({"archs": "resnet"}, "unknown arch 'resnet'"),
    ],
)
def test_the_python_reproduce_refuses_unknown_names_before_writing(tmp_path, fake_root, given, named):
    """Was a raw KeyError, or "holds no rotnet runs" after writing reproduce.json (an unknown arch planned nothing)."""
    import rotnet

    with pytest.raises(RotnetError, match=named):
        rotnet.reproduce(preset=TINY_PRESET, runs_root=tmp_path, data_root=fake_root, download=False, **given)
    assert not list(tmp_path.iterdir())


def test_the_python_reproduce_takes_one_name_as_a_one_name_tuple(tiny_runs, tmp_path, fake_root):
    """`archs="resnet18"` is one arch, not a list of letters (the session's rotation run is reused: nothing trains)."""
    import json
    import shutil

    import rotnet

    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    rotnet.reproduce(
        preset=TINY_PRESET, runs_root=tmp_path, data_root=fake_root, download=False, archs="resnet18", seeds=0,
        experiments="rotation",
    )  # fmt: skip
    record = json.loads((tmp_path / "reproduce.json").read_text())
    assert record["archs"] == ["resnet18"] and record["seeds"] == [0] and record["runs"] == ["resnet18/rotation/seed0"]


@pytest.mark.parametrize(
    ("call", "named"),
    [
        ({"archs": ()}, r"archs=\(\) names none"),
        ({"seeds": []}, r"seeds=\(\) names none"),
        ({"seeds": (3, None)}, r"seeds=\(3, None\) holds None; name each one"),
        ({"archs": ("resnet18", None)}, r"archs=\('resnet18', None\) holds None"),
        ({"experiments": ("rotation", None)}, r"experiments=\('rotation', None\) holds None"),
        ({"jobs": -3}, r"--jobs \(jobs\) must be zero"),
        ({"jobs": 1.5}, r"--jobs \(jobs\) must be zero"),
    ],
)
def test_the_python_api_validates_exactly_like_the_command_line(tmp_path, fake_root, call, named):
    """The API accepted jobs=-3 (and an empty archs meant the default): the checks live in the options both build."""
    import rotnet

    with pytest.raises(RotnetError, match=named):
        rotnet.reproduce(preset=TINY_PRESET, runs_root=tmp_path / "r", data_root=fake_root, download=False, **call)
    assert not (tmp_path / "r").exists()


def test_the_python_reproduce_takes_its_seed_from_the_overrides_too(tmp_path, fake_root):
    """`rotnet.reproduce(seed=1)` once trained seed0: its seeds default (0,) beat the override."""
    import rotnet

    common = dict(
        preset=TINY_PRESET, runs_root=tmp_path, data_root=fake_root, download=False, experiments=("rotation",)
    )
    rotnet.reproduce(**common, seed=1)
    assert (tmp_path / "resnet18/rotation/seed1/result.json").is_file()
    assert not (tmp_path / "resnet18/rotation/seed0").exists()
    assert json.loads((tmp_path / "reproduce.json").read_text())["seeds"] == [1]
    with pytest.raises(RotnetError, match="given twice"):
        rotnet.reproduce(**common, seed=1, seeds=(0,))


def test_after_the_python_reproduce_ctrl_c_interrupts_as_usual(tmp_path, fake_root):
    """rotnet.reproduce gives back the process's Ctrl-C handler: in a notebook the next Ctrl-C interrupts as usual."""
    import signal
    import time

    import rotnet

    signal.signal(signal.SIGINT, signal.default_int_handler)
    rotnet.reproduce(
        preset=TINY_PRESET, runs_root=tmp_path, data_root=fake_root, download=False, experiments=("rotation",)
    )
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)


def test_ctrl_c_in_the_python_train_saves_a_checkpoint_and_the_next_call_resumes(
    tmp_path, fake_root, monkeypatch, capsys
):
    """rotnet.train installed no stop handler: Ctrl-C raised KeyboardInterrupt mid-step and nothing was saved,
    where `rotnet train` and rotnet.reproduce finish the step, save and stop."""
    import signal

    import rotnet
    from rotnet import loop
    from rotnet.errors import Interrupted

    step, pressed = loop.train_step, []

    def ctrl_c_in_the_first_step(*args, **kwargs):
        if not pressed:
            pressed.append(os.kill(os.getpid(), signal.SIGINT))
        return step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", ctrl_c_in_the_first_step)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    common = dict(preset=TINY_PRESET, runs_root=tmp_path, data_root=fake_root, download=False, device="cpu", epochs=1)
    with pytest.raises(Interrupted, match="stopped at epoch 1, step 1"):
        rotnet.train("rotation", **common)
    folder = tmp_path / "resnet18/rotation/seed0"
    assert list((folder / "checkpoints").iterdir()) and not (folder / "result.json").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert rotnet.train("rotation", **common).folder == folder and len(pressed) == 1
    assert [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()] == [1]
    assert "resuming at epoch 1, step 1" in capsys.readouterr().out


@pytest.mark.parametrize("call", ["train", "reproduce"])
@pytest.mark.parametrize("argument", ["runs_root", "data_root"])
def test_an_empty_path_is_refused_never_read_as_a_default(tmp_path, monkeypatch, call, argument):
    """`runs_root=os.environ.get("ROOT", "")` trained into runs/PRESET: an empty path is refused, as on the command
    line, and nothing is written."""
    import rotnet
    from rotnet.errors import RotnetError

    monkeypatch.chdir(tmp_path)
    args = ("rotation",) if call == "train" else ()
    with pytest.raises(RotnetError, match="empty path"):
        getattr(rotnet, call)(*args, preset="smoke", device="cpu", download=False, **{argument: ""})
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("call", ["train", "reproduce"])
@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"preset": None}, "unknown preset None"),  # was AttributeError: 'NoneType' object has no attribute 'endswith'
        ({"device": None}, "unknown device None"),  # was AttributeError (startswith)
        ({"device": "cuda:x"}, "unknown device 'cuda:x'"),  # was "torch sees no CUDA device"; on a GPU, a traceback
        ({"device": "gpu"}, "unknown device 'gpu'"),
        ({"download": "no"}, "download must be True or False; got 'no'"),  # was true: a download was tried
        ({"seeds": 1.5}, "seed must be an integer; got 1.5"),  # was TypeError: 'float' object is not iterable
        ({"runs_root": 123}, "123 is not a path; name a folder or a file"),  # was TypeError: expected str, bytes...
        ({"data_root": 3.0}, "3.0 is not a path; name a folder or a file"),
        ({"runs_root": b"runs"}, "b'runs' is not a path; name a folder or a file"),  # was TypeError (bytes)
        ({"data_root": ["data"]}, "['data'] is not a path; name a folder or a file"),
        ({"runs_root": "r\0"}, "'r\\x00' is not a path (it holds a NUL character)"),  # was ValueError: embedded null
        ({"data_root": "d\0"}, "'d\\x00' is not a path (it holds a NUL character)"),
    ],
)
def test_an_api_argument_of_the_wrong_kind_is_one_rotnet_error_before_anything_is_written(
    tmp_path, fake_root, call, given, named
):
    """Each argument passes the check its command-line flag passes (the preset's reader, the device's, DataOptions,
    a seed's coercion), so that the Python API's mistakes are RotnetErrors, not AttributeErrors."""
    import rotnet

    if call == "train" and "seeds" in given:
        given = {"seed": given["seeds"]}
    kw = {"preset": TINY_PRESET, "runs_root": tmp_path / "r", "data_root": fake_root, "download": False} | given
    args = ("rotation",) if call == "train" else ()
    with pytest.raises(RotnetError, match=re.escape(named)):
        getattr(rotnet, call)(*args, **{"device": "cpu", **kw})
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("reader", ["load_backbone", "metadata"])
@pytest.mark.parametrize("named", ["", " ", None, 3])
def test_weights_named_by_nothing_are_refused_never_read_from_the_working_folder(tiny_runs, monkeypatch, reader, named):
    """`load_backbone("")` read the working folder as a run folder (and listed every run below it)."""
    import rotnet

    monkeypatch.chdir(tiny_runs / "resnet18/rotation/seed0")  # a run folder: "" would have loaded its weights
    with pytest.raises(RotnetError, match="names no weights; name a run folder or a .safetensors file"):
        getattr(rotnet, reader)(named)


@pytest.mark.parametrize(("name", "count"), [("cuda:1", 1), ("cuda:4", 2)])
def test_a_cuda_device_beyond_those_torch_sees_is_one_line(monkeypatch, name, count):
    """`--device cuda:1` on a one-GPU machine: torch raised "invalid device ordinal" at the first tensor."""
    import torch

    from rotnet.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with pytest.raises(RotnetError, match=f"torch sees {count} CUDA device"):
        resolve_device(name)


@pytest.mark.parametrize(
    "archs, seeds",
    [
        ("resnet18", "0"),  # recorded as the text "0" in reproduce.json
        (" resnet18 ", " 0 "),
        (["resnet18"], "np.arange(1)"),  # json.dumps failed: int64 is not JSON serializable
        (("resnet18",), "np.int64(0)"),
        ("resnet18", "torch.tensor([0])"),
        ("resnet18", [0]),
    ],
)
def test_the_python_reproduce_records_each_seed_as_the_integer_it_names(tiny_runs, tmp_path, fake_root, archs, seeds):
    """Seeds and archs in any form the API takes (text as the command line's flag, a list, a numpy or torch array)
    plan and record the same runs as `--archs resnet18 --seeds 0` (the session's rotation run is reused)."""
    import numpy as np
    import torch

    import rotnet

    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    seeds = eval(seeds, {"np": np, "torch": torch}) if isinstance(seeds, str) and "(" in seeds else seeds
    rotnet.reproduce(
        preset=TINY_PRESET, runs_root=tmp_path, data_root=fake_root, download=False, archs=archs, seeds=seeds,
        experiments="rotation", jobs=np.int64(1),
    )  # fmt: skip
    record = json.loads((tmp_path / "reproduce.json").read_text())
    assert record["archs"] == ["resnet18"] and record["seeds"] == [0] and record["runs"] == ["resnet18/rotation/seed0"]


@pytest.mark.parametrize(
    "given, named",
    [
        ({"archs": "resnet18,bogus"}, "unknown arch 'bogus'"),  # was: unknown arch 'resnet18,bogus'; did you mean ...
        ({"experiments": "rotation,bogus"}, "unknown experiment 'bogus'"),
        ({"seeds": "0,"}, "seed must be an integer; got ''"),
        ({"seeds": "0,1.5"}, "seed must be an integer; got '1.5'"),
    ],
)
def test_the_python_reproduce_reads_comma_separated_text_as_the_command_line_does(tmp_path, fake_root, given, named):
    import rotnet

    with pytest.raises(RotnetError, match=re.escape(named)):
        rotnet.reproduce(preset=TINY_PRESET, runs_root=tmp_path / "r", data_root=fake_root, download=False, **given)
    assert not (tmp_path / "r").exists()
