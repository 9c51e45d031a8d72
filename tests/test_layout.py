"""The run-folder scheme (rotnet.layout): a run's folder round-trips to its identity, and runs are found through no
link."""

from pathlib import Path

import pytest

from rotnet.config import RunConfig
from rotnet.layout import RunId, parse_run_dir, run_dir


def test_run_dir_round_trips():
    cfg = RunConfig(experiment="full-from-rotation", arch="resnet34", seed=2, train_per_class=20)
    folder = run_dir(Path("root"), cfg)
    assert folder == Path("root/resnet34/full-from-rotation@20pc/seed2")
    assert parse_run_dir(folder) == RunId("resnet34", "full-from-rotation", 2, 20)
    assert parse_run_dir(Path("a/b/seedx")) is None and parse_run_dir(Path("a/b@3/seed1")) is None


@pytest.mark.parametrize("level", ["data segment", "arch", "experiment", "seed", "config.json"])
def test_runs_are_found_through_no_link(tmp_path, level):
    """Every reader finds run folders the same way, through no link (`runs/X/resnet18` -> another runs root is not a
    run)."""
    from rotnet.layout import find_runs

    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    run = Path("pets/resnet18/rotation/seed0")
    (theirs / run).mkdir(parents=True)
    (theirs / run / "config.json").write_text("{}")
    (ours / run).mkdir(parents=True)
    (ours / run / "config.json").write_text("{}")
    assert find_runs(ours) == [ours / run]
    depth = ["data segment", "arch", "experiment", "seed", "config.json"].index(level) + 1
    linked = Path(*run.parts[:depth]) if level != "config.json" else run / "config.json"
    target = ours / linked
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink()
    target.symlink_to(theirs / linked)
    assert find_runs(ours) == []
