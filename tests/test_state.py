"""A run's state on disk (rotnet.state): a run kept aside under a free name on --restart."""

import shutil

from tests.helpers import cli


def test_restart_past_a_dangling_old_name_takes_the_next_free_one(tmp_path, fake_root, tiny_runs, capsys):
    """`--restart` past a dangling `seed0.old1` link named the wrong file (it renamed onto the link's name)."""

    root = shutil.copytree(tiny_runs, tmp_path / "runs")
    seed0 = root / "resnet18/rotation/seed0"
    (seed0.parent / "seed0.old1").symlink_to(tmp_path / "nowhere")
    assert cli("train", "rotation", "--restart", root=root, data=fake_root) == 0
    assert (seed0.parent / "seed0.old1").is_symlink() and (seed0.parent / "seed0.old2" / "result.json").is_file()
    assert "seed0.old2" in capsys.readouterr().out
