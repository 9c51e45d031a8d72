"""The report's experiments as data (rotnet.experiments): presets, the precedence of preset, config, --set and flags,
rules, the plan's order and the reference's numbers."""

import re
from pathlib import Path

import pytest

from rotnet.errors import RotnetError
from rotnet.experiments import EXPERIMENTS, Protocol, plan, preset_names, reference_results, resolve
from rotnet.layout import run_dir
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


def test_a_config_names_one_run_per_dataset_pair():
    rot = resolve("rotation", overrides={"dataset": "stl10", "pretrain_dataset": "stl10-unlabeled"})
    assert (rot.dataset, rot.pretrain_dataset) == ("stl10-unlabeled", "")
    full = resolve("full-from-rotation", overrides={"dataset": "stl10", "pretrain_dataset": "stl10-unlabeled"})
    scratch = resolve("full-from-random", overrides={"dataset": "stl10", "pretrain_dataset": "stl10-unlabeled"})
    assert scratch.pretrain_dataset == "" and full.pretrain_dataset == "stl10-unlabeled"
    assert run_dir(Path("R"), rot) == Path("R/stl10-unlabeled/resnet18/rotation/seed0")
    assert run_dir(Path("R"), full) == Path("R/stl10_from_stl10-unlabeled/resnet18/full-from-rotation/seed0")
    assert run_dir(Path("R"), resolve("rotation")) == Path("R/resnet18/rotation/seed0")  # CIFAR-10: as before


def test_plan_is_in_dependency_order():
    runs = plan(["resnet18", "resnet50"], [0, 1], [])
    assert runs[:5] == [("resnet18", 0, e) for e in EXPERIMENTS]
    assert ("resnet50", 1, "rotation") in runs and ("resnet50", 1, "layer4-from-random") not in runs
    for arch, seed, e in runs:
        if EXPERIMENTS[e].init == "rotation":
            assert runs.index((arch, seed, "rotation")) < runs.index((arch, seed, e))
    assert plan(["resnet18"], [0], ["full-from-rotation"]) == [
        ("resnet18", 0, "rotation"),
        ("resnet18", 0, "full-from-rotation"),
    ]


def test_seed_numbers_are_the_reports():
    rows = {(r["experiment"], r["arch"]): r["test_acc"] for r in reference_results()}
    assert rows[("rotation", "resnet18")] == 78.3 and rows[("full-from-random", "resnet18")] == 82.79
    assert rows[("full-from-rotation", "resnet50")] == 83.01 and len(rows) == 9


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


def test_a_rule_that_names_valid_values_applies(tmp_path):
    toml = tmp_path / "rules.toml"
    rule = 'when = { experiment = ["rotation"], arch = "resnet18", seed = 0 }'
    toml.write_text(f"[[rule]]\n{rule}\nset = {{ epochs = 3 }}\n")
    assert Protocol("quick", (toml,)).resolve("rotation").epochs == 3
    assert Protocol("quick", (toml,)).resolve("full-from-random").epochs != 3
