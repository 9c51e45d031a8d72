"""The command line's grammar (rotnet.flags): every flag parsed and range-checked in one line before anything is
written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import (
    TINY_PRESET,
)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["reproduce", "--archs", ""], "the list of archs is empty"),
        (["reproduce", "--archs", " , "], "the list of archs is empty"),
        (["reproduce", "--experiments", ""], "the list of experiments is empty"),
        (["reproduce", "--seeds", ""], "the list of --seeds values is empty"),
        (["reproduce", "--seeds", "3,"], "'3,' has an empty item"),  # "3,$NEXT", NEXT unset: ran seed 3 alone
        (["reproduce", "--seeds", ",1"], "',1' has an empty item"),
        (["reproduce", "--archs", "resnet18,,resnet34"], "has an empty item (a comma too many, or an unset"),
        (["reproduce", "--experiments", "rotation,"], "has an empty item"),
        (["label-efficiency", "--per-class", "4,"], "has an empty item"),
        (["label-efficiency", "--seeds", "0, "], "has an empty item"),
        (["reproduce", "--jobs", "-3"], "--jobs (jobs) must be zero (auto) or a positive number"),
        (["train", "rotation", "--keep-epoch", "0"], "--keep-epoch (keep_epochs) must name epochs, 1 or more"),
        (["train", "rotation", "--keep-epoch", "99"], "--keep-epoch 99: .* trains 2 epoch"),
        (["train", "rotation", "--keep-checkpoints", "-1"], "--keep-checkpoints (keep_checkpoints) must be"),
        (["train", "rotation", "--checkpoint-minutes", "nan"], "--checkpoint-minutes (checkpoint_minutes) must be"),
    ],
)
def test_a_flag_out_of_range_is_refused_in_one_line_leaving_nothing(tmp_path, fake_root, capsys, args, named):
    """An empty list (`--archs ""`), a negative count or an epoch past the run's end is refused in one line, and
    nothing is written."""
    import re

    from rotnet.cli import main

    root = tmp_path / "runs"
    common = ["--preset", TINY_PRESET, "--runs-root", str(root), "--data-root", str(fake_root), "--no-download"]
    assert main([*args, *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(named if ".*" in named else re.escape(named), err[0]), err
    assert not root.exists() or not any(root.rglob("*"))  # nothing started, nothing left


def path_arguments() -> list[tuple[str, str]]:
    """(command, option or positional) for every path a user gives on the command line, read from the parser."""
    import argparse

    from rotnet.flags import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    return [
        (name, a.option_strings[0] if a.option_strings else a.dest)
        for name, p in commands.items()
        for a in p._actions
        if name != "job" and getattr(a.type, "__name__", "") in ("Path", "path")
    ]


@pytest.mark.parametrize(("command", "argument"), path_arguments())
def test_an_empty_path_is_refused_never_read_as_the_current_folder(command, argument, tmp_path, monkeypatch, capsys):
    """`--runs-root "$ROOT"` with ROOT unset trained into the current folder (`report ""` wrote report.md there): an
    empty path is refused in one line, whichever argument of whichever command it is."""
    import argparse

    from rotnet.cli import main
    from rotnet.flags import build_parser

    monkeypatch.chdir(tmp_path)
    parser = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    given = {"experiment": "rotation", "dataset": "cifar10"}
    args = [command]
    for a in parser._actions:
        if not a.option_strings and a.dest != "help":
            args.append("" if a.dest == argument else given.get(a.dest, "x"))
    if argument.startswith("--"):
        args += [argument, ""]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty" in err[0], err
    assert not any(tmp_path.iterdir())


def test_an_empty_rotnet_data_is_unset(monkeypatch):
    from rotnet.data import default_data_root

    monkeypatch.setenv("ROTNET_DATA", "")
    assert default_data_root() == Path("data")


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--archs", "resnet18,resnet18"],  # measured once, without a word
        ["bench", "--archs", "resnet18,resnet34,resnet18"],
        ["reproduce", "--archs", "resnet34,resnet34"],
        ["reproduce", "--seeds", "2,02"],
        ["reproduce", "--experiments", "rotation,rotation"],
        ["label-efficiency", "--per-class", "4,4"],
        ["label-efficiency", "--seeds", "1,1"],
    ],
)
def test_a_list_flag_naming_an_item_twice_is_refused_while_parsing(tmp_path, capsys, argv):
    """Every comma-separated flag passes flags.list_items; bench had no plan to refuse a repeated arch."""
    from rotnet.cli import main

    quick = ["--steps", "1", "--warmup", "0", "--batch-size", "2", "--device", "cpu"]  # were it measured after all
    where = ["--out", str(tmp_path / "out"), *quick] if argv[0] == "bench" else ["--runs-root", str(tmp_path / "out")]
    data = ["--data-root", str(tmp_path / "none"), *(["--no-download"] if argv[0] != "bench" else [])]
    assert main([*argv, *where, *data]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "twice; name each of the" in err[0], err
    assert not (tmp_path / "out").exists()
