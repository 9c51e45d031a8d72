"""A plan run in dependency order (rotnet.runner): interrupted plans continue without redoing, runs another process
holds are left to it, someone else's report and a plan naming one run twice refused before training."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from rotnet.cli import main
from rotnet.errors import RotnetError
from tests.helpers import (
    TINY_PRESET,
    cli,
    reproduce,
    wait_for,
    with_rotation,
)


def test_a_short_class_is_named_once_per_plan_not_before_every_run(tmp_path, fake_root, capsys):
    """Seen in the README walk-through on 500 images: the same warning before each of the five smoke runs."""
    from rotnet.cli import main

    args = ("--experiments", "layer4-from-random,full-from-random", "--set", "train_per_class=20")
    assert main(reproduce(tmp_path, fake_root, *args)) == 0  # one epoch each
    assert capsys.readouterr().err.count("fewer than 20 training images per class") == 1


def test_reproduce_refuses_a_folder_with_someone_elses_report_before_training(tmp_path, fake_root, capsys):
    (tmp_path / "report.md").write_text("my notes\n")
    assert main(reproduce(tmp_path, fake_root)) == 2
    assert "report.md that rotnet report did not write" in capsys.readouterr().err
    assert not (tmp_path / "resnet18").exists()  # refused before anything trained, not after
    assert (tmp_path / "report.md").read_text() == "my notes\n"


def test_interrupted_reproduce_continues_without_redoing(tmp_path, fake_root):
    two = ("--experiments", "rotation,layer4-from-rotation")
    cmd = [sys.executable, "-m", "rotnet", *reproduce(tmp_path, fake_root, *two)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("resnet18/rotation/seed0/result.json", tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    weights = tmp_path / "resnet18/rotation/seed0/model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "rotation/seed0: already finished" in again.stdout
    assert weights.stat().st_mtime_ns == stamp
    assert (tmp_path / "resnet18/layer4-from-rotation/seed0/result.json").is_file()
    # The record keeps the killed invocation (which never wrote its wall time) and the report says so.
    record = json.loads((tmp_path / "reproduce.json").read_text())
    assert [e["wall_seconds"] for e in record["earlier"]] == [None] and record["wall_seconds"] > 0
    assert "resumed from 1 earlier invocation" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_rotation_run_another_process_holds_is_not_run_not_failed(tmp_path, fake_root, jobs):
    """Another process trains the rotation run: this plan leaves it (and its transfer runs) as not run, writes
    nothing into its folder and exits non-zero; the runs that do not need it are trained."""
    from rotnet.lock import RunLock

    folder = tmp_path / "resnet18/rotation/seed0"
    folder.mkdir(parents=True)
    three = ("--experiments", "rotation,full-from-rotation,full-from-random")
    with RunLock(folder):
        assert main(reproduce(tmp_path, fake_root, *three, jobs=jobs)) == 1
    outcome = json.loads((tmp_path / "reproduce.json").read_text())["outcome"]
    assert outcome["resnet18/rotation/seed0"].startswith("not run:") and "in use" in outcome["resnet18/rotation/seed0"]
    assert outcome["resnet18/full-from-rotation/seed0"].startswith("not run: its rotation run is in use")
    assert outcome["resnet18/full-from-random/seed0"].startswith("done")
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # no FAILED mark in another process's run


def test_a_transfer_run_another_process_holds_is_not_run_once_its_rotation_run_finished(tiny_runs, tmp_path, fake_root):
    """The same as a locked run met later in the plan, not a refusal of the whole plan before it starts."""
    from rotnet.lock import RunLock

    two = ("--experiments", "rotation,full-from-rotation")
    with_rotation(tiny_runs, tmp_path)
    folder = tmp_path / "resnet18/full-from-rotation/seed0"
    folder.mkdir(parents=True)
    with RunLock(folder):
        assert main(reproduce(tmp_path, fake_root, *two)) == 1
    said = json.loads((tmp_path / "reproduce.json").read_text())["outcome"]["resnet18/full-from-rotation/seed0"]
    assert said.startswith("not run:") and "in use" in said
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]


@pytest.mark.parametrize(
    "command, extra",
    [
        ("reproduce", ("--seeds", "5,5", "--experiments", "rotation")),
        ("reproduce", ("--seeds", "5,05", "--experiments", "rotation")),  # two spellings of one seed
        ("reproduce", ("--archs", "resnet18,resnet18", "--experiments", "rotation")),
        ("reproduce", ("--experiments", "rotation,rotation")),
        ("reproduce", ("--experiments", "layer4-from-random,rotation,layer4-from-random")),
        ("label-efficiency", ("--per-class", "4,4", "--min-steps", "1")),
        ("label-efficiency", ("--seeds", "1,1", "--per-class", "4", "--min-steps", "1")),
        ("api", ()),  # rotnet.reproduce(seeds=(5, 5))
    ],
)
def test_a_plan_naming_one_run_twice_is_refused_before_anything_is_written(tmp_path, fake_root, capsys, command, extra):
    """`--seeds 5,5 --jobs 2` started the run in two jobs: one failed on the other's lock, and the plan still said
    done and exited 0 (its outcome kept by name). Every plan passes runner.execute, which now refuses it."""
    root = tmp_path / "runs"
    if command == "api":
        import rotnet

        with pytest.raises(RotnetError, match=r"names resnet18/rotation/seed5 twice"):
            rotnet.reproduce(preset=TINY_PRESET, runs_root=root, data_root=fake_root, download=False, seeds=(5, 5),
                             experiments="rotation")  # fmt: skip
    else:
        args = reproduce(root, fake_root, *extra, jobs="2" if command == "reproduce" else None)
        assert main([command, *args[1:]]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("rotnet: warning")]
        assert len(err) == 1 and "twice" in err[0] and "Traceback" not in err[0], err
    assert not root.exists()


@pytest.mark.parametrize("command", ["reproduce", "label-efficiency"])
def test_a_plan_run_beside_another_on_one_runs_root_stays_in_its_log(tmp_path, fake_root, monkeypatch, command):
    """Two terminals, one runs root (`--seeds 1` in one, `--seeds 2` in the other): each plan wrote the log it had
    read at its start, so the one to end last dropped the other's invocation, its command and the runs it planned.
    Here the second plan runs whole while the first trains (inside the first's run_in_turn)."""
    from rotnet import runner
    from rotnet.cli import main
    from rotnet.layout import invocations, read_json

    root = tmp_path / "runs"
    own = {"reproduce": ["--experiments", "rotation", "--jobs", "1"], "label-efficiency": ["--per-class", "1"]}
    args = [command, "--preset", TINY_PRESET, "--runs-root", str(root), "--data-root", str(fake_root),
            "--no-download", *own[command]]  # fmt: skip
    args += ["--min-steps", "1"] if command == "label-efficiency" else []  # not 300 optimizer steps a run
    in_turn = runner.run_in_turn

    def beside(*a, **k):
        monkeypatch.setattr(runner, "run_in_turn", in_turn)
        assert main([*args, "--seeds", "2"]) == 0
        return in_turn(*a, **k)

    monkeypatch.setattr(runner, "run_in_turn", beside)
    assert main([*args, "--seeds", "1"]) == 0
    log = read_json(root / f"{command}.json")
    assert [e["command"].split("--seeds ")[1] for e in invocations(log)] == ["1", "2"]
    assert all(e["finished"] for e in invocations(log)) and log["command"].endswith("--seeds 2")


ORDERS = {  # the writes of two plans' logs (a: started first; 0 at its start, 1 at its end)
    "one after the other": ["a0", "a1", "b0", "b1"],
    "b inside a": ["a0", "b0", "b1", "a1"],
    "overlapping": ["a0", "b0", "a1", "b1"],
    "a written again": ["a0", "a1", "b0", "b1", "a1"],
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_every_order_of_two_plans_writes_leaves_both_in_the_log_finished(tmp_path, order):
    """plan.log_invocation, the one writer of a plan's log: whatever order two plans on one root write in, the log
    holds each once, finished, oldest first, the later-started plan on top with its whole record."""
    from rotnet.layout import invocations, read_json
    from rotnet.plan import log_invocation

    path = tmp_path / "reproduce.json"
    records = {"a0": {"command": "a", "started": 1.0, "runs": ["x"], "preset": "paper"}}
    records["a1"] = records["a0"] | {"finished": 5.0, "wall_seconds": 4.0, "outcome": {"x": "done"}}
    records["b0"] = {"command": "b", "started": 2.0, "runs": ["y"], "preset": "paper"}
    records["b1"] = records["b0"] | {"finished": 4.0, "wall_seconds": 2.0, "outcome": {"y": "done"}}
    for write in ORDERS[order]:
        log_invocation(path, records[write])
    log = read_json(path)
    assert [(e["command"], e["finished"]) for e in invocations(log)] == [("a", 5.0), ("b", 4.0)]
    assert log == records["b1"] | {"earlier": [invocations(records["a1"])[-1]]}


@pytest.mark.parametrize("there", ['{"started": "yesterday", "earlier": ["x", {"started": null}]}', "[]", "{", ""])
def test_a_plan_writes_its_log_over_an_edited_or_foreign_one_without_a_traceback(tmp_path, there):
    """The log there is read and merged: an entry without a time of its own is kept as it is, never compared."""
    from rotnet.layout import read_json
    from rotnet.plan import log_invocation

    path = tmp_path / "reproduce.json"
    path.write_text(there)
    log_invocation(path, {"command": "a", "started": 1.0})
    log = read_json(path)
    assert log["command"] == "a" and all(isinstance(e, dict) for e in log.get("earlier", []))


@pytest.mark.parametrize("command", ["reproduce", "label-efficiency"])
@pytest.mark.parametrize("there", ['{"my": "notes"}', "[1, 2]", "not json", ""])
def test_a_file_in_place_of_the_plans_log_that_rotnet_did_not_write_is_refused_untouched(tmp_path, fake_root, capsys,
                                                                                          command, there):  # fmt: skip
    """The plan writes its history to RUNS_ROOT/reproduce.json (label-efficiency.json): a file there that no rotnet
    wrote (no rotnet_version) was written over; it is refused before anything trains, and left as it was."""
    from rotnet.cli import main

    root = tmp_path / "runs"
    root.mkdir()
    (root / f"{command}.json").write_text(there)
    args = [command, "--preset", TINY_PRESET, "--runs-root", str(root), "--data-root", str(fake_root), "--no-download"]
    args += ["--per-class", "1"] if command == "label-efficiency" else []  # sizes the 80 fake images hold
    assert main(args) == 2
    said = f"rotnet: error: {root / command}.json is not a rotnet plan's log; move it away or name another runs root"
    assert capsys.readouterr().err.strip().splitlines()[-1] == said
    assert (root / f"{command}.json").read_text() == there and [p.name for p in root.iterdir()] == [f"{command}.json"]


@pytest.mark.parametrize(
    "command, there",
    [("reproduce", "finished"), ("reproduce", "stopped"), ("label-efficiency", "finished")],
)
def test_a_plan_over_a_run_trained_on_other_data_is_refused_before_anything_trains(
    tiny_runs, tiny_partial, tmp_path, fake_root, capsys, command, there
):
    """A plan on another copy of the data over a runs root whose rotation run was trained on the first copy failed
    that run at its turn, after training the plan's other runs on the second copy beside it (and the transfers from
    it "not run"); check_plan, which loads each run's data anyway, now asks the data question of every run there."""
    import shutil

    from tests.conftest import write_fake_cifar

    shutil.copytree(tiny_runs if there == "finished" else tiny_partial, tmp_path / "runs")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "runs").rglob("*"))
    other = write_fake_cifar(tmp_path / "copy", seed=1)  # the same layout, other pixels
    extra = ["--per-class", "2", "--min-steps", "1"] if command == "label-efficiency" else []
    capsys.readouterr()
    assert cli(command, *extra, root=tmp_path / "runs", data=other) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("rotnet: error: resnet18/rotation/seed0: ") and "was trained on other data" in err, err
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "runs").rglob("*")) == before  # nothing trained


@pytest.mark.parametrize("through", ["the command line", "the API"])
def test_jobs_under_torchrun_is_refused_not_ignored(through, tmp_path, fake_root, monkeypatch, capsys):
    """Under torchrun the ranks share each run of a plan, in turn: `--jobs 2` (experiments side by side, each in a
    process of its own) ran the plan in turn without a word. It is refused, in every rank, before anything is
    written."""
    import torch

    import rotnet
    import rotnet.runner
    from rotnet.distributed import World

    monkeypatch.setattr(rotnet.runner, "setup_device", lambda name: (torch.device("cpu"), World(0, 2, 0)))
    said = "--jobs 2 runs experiments side by side, each in a process of its own; under torchrun the 2 processes"
    if through == "the API":
        with pytest.raises(RotnetError, match=re.escape(said)):
            rotnet.reproduce(preset=TINY_PRESET, runs_root=tmp_path, data_root=fake_root, download=False, jobs=2)
    else:
        assert main(reproduce(tmp_path, fake_root, jobs="2")) == 2
        assert said in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
