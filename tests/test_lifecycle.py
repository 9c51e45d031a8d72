"""How a run runs (rotnet.lifecycle): RunOptions checked alike wherever they come from, and carried through a job
file's JSON unchanged."""

import json
from dataclasses import asdict

import pytest

from rotnet.errors import RotnetError
from rotnet.lifecycle import RunOptions


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"checkpoint_every": -1}, "--checkpoint-every"),
        ({"checkpoint_every": 1.5}, "--checkpoint-every"),
        ({"keep_checkpoints": True}, "--keep-checkpoints"),
        ({"checkpoint_minutes": float("nan")}, "--checkpoint-minutes"),
        ({"checkpoint_minutes": -1}, "--checkpoint-minutes"),
        ({"keep_epochs": (0,)}, "--keep-epoch"),
        ({"keep_epochs": ("3",)}, "--keep-epoch"),
        ({"loggers": ("nope",)}, "nope"),
    ],
)
def test_an_impossible_option_is_refused_naming_its_flag(given, named):
    with pytest.raises(RotnetError, match=named):
        RunOptions(**given)


def test_options_survive_a_job_files_json():
    options = RunOptions(checkpoint_every=7, checkpoint_minutes=0.5, keep_epochs=(1, 3), restart=True)
    assert RunOptions.from_dict(json.loads(json.dumps(asdict(options)))) == options
    assert RunOptions.from_dict({"unknown_key": 1}) == RunOptions()
