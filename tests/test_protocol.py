"""Where a configuration comes from (rotnet.protocol): every preset resolves, the precedence of experiment, preset,
config files, --set and flags, and rules checked like flags."""

import re

import pytest

from rotnet.errors import RotnetError
from rotnet.experiments import EXPERIMENTS
from rotnet.protocol import Protocol, preset_names, resolve
from tests.helpers import write


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_resolves_for_every_experiment(name):
    """Each shipped preset gives a valid configuration of each experiment and arch, with the experiment's own
    identity, and its own settings: paper's ResNet34 rule, and for the others something the paper's lacks."""
    for experiment in EXPERIMENTS:
        for arch in ("resnet18", "resnet50"):
            cfg = resolve(experiment, arch=arch, preset=name)
            assert (cfg.experiment, cfg.arch) == (experiment, arch)
            assert cfg.task == ("rotation" if experiment == "rotation" else "classification")
    if name == "paper":
        assert resolve("rotation", arch="resnet34", preset=name).epochs == 70
    else:
        assert any(resolve(e, preset=name) != resolve(e, preset="paper") for e in EXPERIMENTS)


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


@pytest.mark.parametrize(
    "rule",
    [
        'when = { experiment = "rotation" }',  # its set left out
        'when = { experiment = "rotation" }\nset = {}',  # left empty
        "set = {}",  # a rule for every run, setting nothing
        "",  # an empty [[rule]]
    ],
)
def test_a_rule_that_sets_nothing_is_refused(tmp_path, rule):
    """A [[rule]] without a set (or with an empty one) changed nothing without a word."""
    toml = tmp_path / "rules.toml"
    toml.write_text(f"[[rule]]\n{rule}\n")
    with pytest.raises(RotnetError, match=re.escape("rules.toml: a [[rule]] sets nothing; give it a set table")):
        Protocol("quick", (toml,)).resolve("rotation")


def test_a_rule_that_names_valid_values_applies(tmp_path):
    toml = tmp_path / "rules.toml"
    rule = 'when = { experiment = ["rotation"], arch = "resnet18", seed = 0 }'
    toml.write_text(f"[[rule]]\n{rule}\nset = {{ epochs = 3 }}\n")
    assert Protocol("quick", (toml,)).resolve("rotation").epochs == 3
    assert Protocol("quick", (toml,)).resolve("full-from-random").epochs != 3
