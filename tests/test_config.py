"""Configuration: one precedence rule for every key, typed values, and TOML that is refused in one line."""

import json
import os
import re

import pytest

from rotnet.config import CHOICES, RunConfig, coerce, validate
from rotnet.errors import RotnetError
from rotnet.experiments import Protocol, resolve
from tests.helpers import TINY_PRESET, cli


def write(path, text: str):
    path.write_text(text)
    return path


def test_precedence_defaults_preset_config_set_flags(tmp_path):
    toml = write(tmp_path / "a.toml", "batch_size = 64\nlr = 0.01\nseed = 3\n")
    p = Protocol("quick", (toml,), ())
    cfg = p.resolve("rotation")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed) == (6, 64, 0.01, 3)  # preset, file, file, file
    cfg = Protocol("quick", (toml,), (("lr", "0.5"), ("lr", 0.25))).resolve("rotation")
    assert cfg.lr == 0.25  # --set then a flag: the flag (later) wins
    assert Protocol("quick", (toml,), ()).resolve("rotation", seed=7).seed == 7  # an explicit --seed beats all


def test_a_rule_matches_the_arch_given_on_the_command_line():
    assert resolve("rotation", arch="resnet34").epochs == 70
    assert Protocol("paper", (), (("arch", "resnet50"),)).resolve("rotation").epochs == 70


def test_set_seed_and_config_seed_are_not_overridden_by_a_default(tmp_path, fake_root):
    """`rotnet train rotation --set seed=3` once trained seed0: the --seed default won."""
    assert cli("train", "rotation", "--set", "seed=3", root=tmp_path, data=fake_root) == 0
    assert (tmp_path / "resnet18/rotation/seed3/result.json").is_file()
    toml = write(tmp_path / "s.toml", "seed = 4\n")
    assert cli("train", "rotation", "--config", str(toml), root=tmp_path, data=fake_root) == 0
    assert (tmp_path / "resnet18/rotation/seed4/result.json").is_file()
    assert not (tmp_path / "resnet18/rotation/seed0").exists()


def test_reproduce_refuses_set_seed_with_seeds(tmp_path, fake_root, capsys):
    assert cli("reproduce", "--set", "seed=1", "--seeds", "0,1", root=tmp_path, data=fake_root) == 2
    assert "--seeds" in capsys.readouterr().err


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
    """rotnet.reproduce left its stop handler installed: in a notebook, the next Ctrl-C only set a flag no one read."""
    import os
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
    import os
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
    """TOML's `epochs = 1.0` was taken as 1, `--set epochs=1.0` refused ("epochs must be a int") and `--epochs 1.0`
    refused by argparse ("invalid int value")."""
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
    import re

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


@pytest.mark.parametrize(
    ("when", "said"),
    [
        ('{ experiment = "rotaton" }', "did you mean rotation?"),
        ('{ experiment = ["rotation", "ful-from-rotation"] }', "did you mean full-from-rotation?"),
        ('{ arch = "resnet43" }', "did you mean resnet34?"),
        ('{ task = "clasification" }', "did you mean classification?"),
        ('{ stem = "cifarr" }', "did you mean cifar?"),
        ('{ seed = "zero" }', "seed must be"),
        ("{ epochs = 1.5 }", "epochs must be"),
        ("{ arch = [] }", "matches no run"),
    ],
)
def test_a_rules_when_is_checked_like_a_flag_so_a_misspelled_rule_never_matches_nothing(tmp_path, when, said):
    """`when = { experiment = "rotaton" }` matched no run without a word, and the run trained the preset's settings."""
    toml = tmp_path / "rules.toml"
    toml.write_text(f"[[rule]]\nwhen = {when}\nset = {{ epochs = 3 }}\n")
    with pytest.raises(RotnetError, match=re.escape(said)):
        Protocol("quick", (toml,)).resolve("rotation")


def test_a_rule_that_names_valid_values_applies(tmp_path):
    toml = tmp_path / "rules.toml"
    rule = 'when = { experiment = ["rotation"], arch = "resnet18", seed = 0 }'
    toml.write_text(f"[[rule]]\n{rule}\nset = {{ epochs = 3 }}\n")
    assert Protocol("quick", (toml,)).resolve("rotation").epochs == 3
    assert Protocol("quick", (toml,)).resolve("full-from-random").epochs != 3
