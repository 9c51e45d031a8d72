"""The command line's grammar (rotnet.flags): every flag parsed and range-checked in one line before anything is
written."""

from __future__ import annotations

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
        (["reproduce", "--seeds", ""], "--seeds expects comma-separated integers"),
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
