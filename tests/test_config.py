"""Configuration (rotnet.config): one precedence rule for every key, typed values, and TOML that is refused in one
line."""

import os
import re
from dataclasses import replace

import pytest

from rotnet.config import CHOICES, RunConfig, coerce, validate
from rotnet.errors import RotnetError
from rotnet.experiments import EXPERIMENTS
from tests.helpers import cli, write


def resolved(*argv: str) -> RunConfig:
    """The configuration `rotnet train ...` would run, resolved as the command line does, without training."""
    from rotnet.flags import build_parser, command_line, protocol_of

    args = build_parser().parse_args(["train", *argv])
    return protocol_of(args, command_line(args)).resolve(args.experiment)


def test_set_seed_and_config_seed_are_not_overridden_by_a_default(tmp_path):
    """A seed from --set or a --config file is the run's seed (no --seed default beats it); an explicit flag beats
    --set, which beats a file."""
    toml = write(tmp_path / "s.toml", "seed = 4\n")
    assert resolved("rotation").seed == 0
    assert resolved("rotation", "--set", "seed=3").seed == 3
    assert resolved("rotation", "--config", str(toml)).seed == 4
    assert resolved("rotation", "--config", str(toml), "--set", "seed=3").seed == 3
    assert resolved("rotation", "--set", "seed=3", "--seed", "5").seed == 5


def test_reproduce_refuses_set_seed_with_seeds(tmp_path, fake_root, capsys):
    assert cli("reproduce", "--set", "seed=1", "--seeds", "0,1", root=tmp_path, data=fake_root) == 2
    assert "--seeds" in capsys.readouterr().err


@pytest.mark.parametrize("key", [k for k, v in RunConfig().to_dict().items() if isinstance(v, float)])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_key_refuses_nan_and_inf(key, value):
    with pytest.raises(RotnetError, match="finite"):
        coerce(key, value)
    with pytest.raises(RotnetError, match="finite"):
        validate(RunConfig(**{key: float(value)}))


def test_coercion():
    assert coerce("epochs", "3") == 3 and coerce("lr", 1) == 1.0 and coerce("nesterov", "yes") is True
    assert coerce("epochs", 4.0) == 4
    for key, value in (("epochs", "three"), ("epochs", True), ("nesterov", "maybe"), ("lr", [1])):
        with pytest.raises(RotnetError):
            coerce(key, value)
    assert CHOICES["optimizer"] == ("adam", "sgd") and CHOICES["rotations_per_image"] == (1, 4)
    with pytest.raises(RotnetError, match="rotations_per_image must be one of 1, 4"):
        validate(RunConfig(rotations_per_image=2))


@pytest.mark.parametrize("text, toml", [("1.0", 1.0), ("1e3", 1e3), ("4", 4)])
def test_a_value_means_the_same_from_a_flag_set_or_toml(text, toml):
    """`epochs = 1.0` in TOML, `--set epochs=1.0` and `--epochs 1.0` all mean the integer 1."""
    from rotnet.flags import build_parser

    args = build_parser().parse_args(["train", "rotation", "--epochs", text])
    assert args.epochs == coerce("epochs", text) == coerce("epochs", toml) == int(toml)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("epochs", "1.5", "epochs must be an integer; got '1.5'"),
        ("epochs", 1.5, "epochs must be an integer; got 1.5"),
        ("lr", "fast", "lr must be a number; got 'fast'"),
        ("nesterov", "maybe", "nesterov must be true or false; got 'maybe'"),
        ("arch", 18, "arch must be a string; got 18"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_in_words(key, value, message):
    with pytest.raises(RotnetError) as e:
        coerce(key, value)
    assert str(e.value) == message


def test_an_lr_factor_of_zero_is_refused():
    """lr_gamma = 0 set the lr to 0 at the first step: every epoch after it trained nothing."""
    with pytest.raises(RotnetError, match="lr_gamma must be a positive number; got 0.0"):
        validate(RunConfig(lr_gamma=0.0))


@pytest.mark.parametrize(
    "command, flags, message",
    [
        ("train rotation", ["--momentum", "0.5"], "momentum=0.5 changes nothing: momentum is used only with"),
        ("train rotation", ["--set", "momentum=0.3"], "momentum=0.3 changes nothing"),
        ("train rotation", ["--nesterov"], "nesterov=True changes nothing"),
        ("train rotation", ["--schedule", "cosine", "--lr-step-epochs", "3"], "lr_step_epochs=3 changes nothing"),
        ("train rotation", ["--set", "schedule=cosine", "--lr-gamma", "0.5"], "lr_gamma=0.5 changes nothing"),
        ("reproduce", ["--momentum", "0.5"], "momentum=0.5 changes nothing"),
        ("label-efficiency", ["--schedule", "cosine", "--lr-gamma", "0.5"], "lr_gamma=0.5 changes nothing"),
        ("train full-from-random", ["--freeze-bn"], "freeze_bn=True changes nothing"),
        ("reproduce", ["--experiments", "rotation,full-from-rotation", "--freeze-bn"], "every run's trainable is all"),
        ("train full-from-random", ["--rotations-per-image", "4"], "rotations_per_image=4 changes nothing"),
        ("train layer4-from-random", ["--set", "rotations_per_image=4"], "this run's pretext is none"),
        ("train full-from-random", ["--pretrain-dataset", "cifar100"], "pretrain_dataset=cifar100 changes nothing"),
        (
            "reproduce",
            ["--experiments", "full-from-random,layer4-from-random", "--rotations-per-image", "4"],
            "every run's pretext",
        ),
        ("train rotation", ["--set", "epochs=abc", "--epochs", "1"], "epochs must be an integer; got 'abc'"),
        ("reproduce", ["--set", "lr=fast", "--lr", "0.01"], "lr must be a number; got 'fast'"),
        ("train rotation", ["--set", "epochs=2", "--set", "epochs=3"], "epochs is set twice, as --set epochs=2 and"),
        ("label-efficiency", ["--set", "lr=0.1", "--set", "lr=0.2"], "lr is set twice"),
        ("train rotation", ["--optimizer", "sgd", "--momentum", "1"], "momentum must be below 1; got 1.0"),
        ("train rotation", ["--optimizer", "sgd", "--momentum", "0", "--nesterov"], "nesterov needs a momentum"),
    ],
)
def test_a_setting_that_changes_nothing_or_cannot_train_is_refused(tmp_path, capsys, command, flags, message):
    """`--momentum` with Adam and `--lr-gamma` under cosine trained as if not given, and the run recorded them;
    `--momentum 5` diverged, and nesterov without momentum died in torch's SGD with a traceback; a `--set` value a
    flag overrides was never read (`--set epochs=abc --epochs 1` trained), and of a key set twice the last won."""
    root = tmp_path / "runs"
    assert cli(*command.split(), *flags, root=root, data=tmp_path / "none") == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not root.exists()


@pytest.mark.parametrize(
    "preset, overrides, experiments",
    [
        ("paper", {"optimizer": "sgd", "momentum": 0.5, "nesterov": True}, ["rotation"]),
        ("paper", {"lr_step_epochs": 3, "lr_gamma": 0.5}, ["rotation"]),
        ("paper", {"momentum": 0.9, "nesterov": False}, ["rotation"]),  # the defaults: nothing asked goes unused
        ("strong", {"optimizer": "adam"}, ["rotation"]),  # the preset's nesterov is the preset's, not the user's
        ("paper", {"freeze_bn": True}, ["layer4-from-rotation"]),
        ("paper", {"rotations_per_image": 4}, ["full-from-rotation"]),  # picks the rotation run it starts from
        ("paper", {"pretrain_dataset": "cifar100"}, ["layer4-from-rotation"]),
    ],
)
def test_a_setting_used_by_a_run_of_the_command_or_left_at_its_default_is_taken(preset, overrides, experiments):
    from rotnet.protocol import Protocol

    configs = Protocol(preset, (), tuple(overrides.items())).resolve_plan([(None, None, e) for e in experiments])
    assert all(getattr(cfg, k) == v for cfg in configs for k, v in overrides.items())


LAYER4 = ("layer4-from-rotation", "layer4-from-random")
ROTATION = ("rotation", "layer4-from-rotation", "full-from-rotation")


@pytest.mark.parametrize(
    "overrides, users",
    [
        ({"freeze_bn": True}, LAYER4),
        ({"rotations_per_image": 4}, ROTATION),
        ({"optimizer": "sgd", "momentum": 0.5, "nesterov": True}, tuple(EXPERIMENTS)),  # every run uses them
    ],
)
def test_a_run_of_a_plan_records_a_setting_only_where_it_is_used(overrides, users):
    """`reproduce --freeze-bn` recorded freeze_bn on its rotation and whole-network runs too, where it changes nothing,
    so over the runs of a plain `reproduce` it refused to reuse the rotation run ("freeze_bn: False -> True"): a
    run that leaves a command-line setting unused is the run the command without it makes."""
    from rotnet.protocol import Protocol

    plan = [(None, None, e) for e in EXPERIMENTS]
    given, plain = Protocol("paper", (), tuple(overrides.items())).resolve_plan(plan), Protocol().resolve_plan(plan)
    for cfg, cfg0 in zip(given, plain, strict=True):
        assert cfg == (replace(cfg0, **overrides) if cfg.experiment in users else cfg0), cfg.experiment


def test_a_key_set_twice_to_the_same_value_is_taken():
    from rotnet.config import parse_assignments

    assert parse_assignments(["epochs=2", "epochs=2.0", "lr=1e-3"]) == {"epochs": "2.0", "lr": "1e-3"}


def test_the_api_refuses_an_unused_setting_as_the_command_line_does(tmp_path):
    import rotnet

    with pytest.raises(RotnetError, match="momentum=0.5 changes nothing"):
        rotnet.train("rotation", momentum=0.5, runs_root=tmp_path / "runs", data_root=tmp_path, download=False)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("rule = 5\n", "must be \\[\\[rule\\]\\] tables"),
        ("[[rule]]\nwhen = 5\nset = { epochs = 1 }\n", "'when' must be a table"),
        ("[[rule]]\nwhen = { arch = 'resnet18' }\nset = 5\n", "'set' must be a table"),
        ("[[rule]]\nwhen = { colour = 'red' }\nset = { epochs = 1 }\n", "unknown configuration key 'colour'"),
        ("epochs = = 3\n", "not valid TOML"),
    ],
)
def test_bad_toml_is_one_line(tmp_path, fake_root, capsys, text, message):
    toml = write(tmp_path / "bad.toml", text)
    assert cli("train", "rotation", "--config", str(toml), root=tmp_path / "runs", data=fake_root) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err

    assert re.search(message, err), err


def test_toml_that_is_not_utf8(tmp_path, fake_root, capsys):
    (tmp_path / "latin.toml").write_bytes(b"description = '\xe9t\xe9'\n")
    assert cli("train", "rotation", "--config", str(tmp_path / "latin.toml"), root=tmp_path, data=fake_root) == 2
    assert "not UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["dir", "fifo", "device"])
@pytest.mark.parametrize("flag", ["--config", "--preset"])
def test_config_or_preset_naming_a_non_file(tmp_path, fake_root, capsys, kind, flag):
    if kind == "dir":
        path = tmp_path / "d.toml"
        path.mkdir()
    elif kind == "fifo":
        path = tmp_path / "f.toml"
        os.mkfifo(path)
    else:
        path = "/dev/null"
    value = str(path) if kind != "device" else "/dev/null"
    assert cli("train", "rotation", flag, value, root=tmp_path / "runs", data=fake_root) == 2
    assert ", not a regular file" in capsys.readouterr().err


def test_a_value_renamed_since_means_todays_value_wherever_it_comes_from(tmp_path):
    """normalization "seed" (before 0.7; it named the reference report) is "reference": in a record, TOML or --set."""
    from rotnet.config import config_diff, uses_reference_normalization, with_defaults

    assert coerce("normalization", "seed") == "reference"
    assert with_defaults({"normalization": "seed"})["normalization"] == "reference"
    today = RunConfig(normalization="reference").to_dict()
    assert config_diff(today | {"normalization": "seed"}, today) == []
    assert uses_reference_normalization("seed", "my-folder") and not uses_reference_normalization("auto", "stl10")
    assert from_toml_run(tmp_path, 'normalization = "seed"').normalization == "reference"


def from_toml_run(tmp_path, text: str):
    from rotnet.protocol import Protocol

    path = write(tmp_path / "c.toml", text)
    return Protocol(config_files=(path,)).resolve("rotation")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("epochs", "np.int64(3)", 3),
        ("epochs", "np.int32(3)", 3),
        ("epochs", "np.float64(3.0)", 3),
        ("seed", "torch.tensor(2)", 2),
        ("lr", "np.float32(0.5)", 0.5),
        ("lr", "np.int64(1)", 1.0),
        ("lr", "torch.tensor(0.25)", 0.25),
        ("nesterov", "np.bool_(True)", True),
        ("epochs", "np.float64(1.5)", "epochs must be an integer; got 1.5"),
        ("epochs", "np.array([3])", "epochs must be an integer; got array([3])"),
        ("epochs", "np.bool_(True)", "epochs must be an integer; got True"),
        ("lr", "np.float64('nan')", "lr must be a finite number; got nan"),
    ],
)
def test_a_numpy_or_torch_scalar_means_its_python_value(key, value, expected):
    """`rotnet.train(..., seed=np.int64(3))` (a loop over np.arange) was refused: "seed must be an integer; got
    np.int64(3)". A scalar is read as its Python value and then checked as one; an array is no scalar."""
    import numpy as np
    import torch

    value = eval(value, {"np": np, "torch": torch})
    if isinstance(expected, str):
        with pytest.raises(RotnetError) as e:
            coerce(key, value)
        assert str(e.value) == expected
    else:
        got = coerce(key, value)
        assert got == expected and type(got) is type(expected)
