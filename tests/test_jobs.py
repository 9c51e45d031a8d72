"""Parallel runs (rotnet.jobs): `rotnet job` children from job files carrying every option, dependencies respected,
cores given, stops forwarded, none outliving its parent."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest

from rotnet.cli import main
from tests.helpers import TINY_PRESET, reproduce, wait_for, with_rotation


def test_jobs_run_experiments_side_by_side_respecting_dependencies(tmp_path, fake_root, monkeypatch, capsys):
    from rotnet import plan

    # Without --jobs, a 2-core CPU runs two at once (when the runs are long; these tiny ones count as long here).
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(plan, "PARALLEL_MIN_WORK", 0)
    three = ("rotation", "layer4-from-rotation", "full-from-random")  # one of each kind: a child process each
    assert main(reproduce(tmp_path, fake_root, "--experiments", ",".join(three), jobs=None)) == 0
    for e in three:
        assert (tmp_path / "resnet18" / e / "seed0" / "result.json").is_file()
    rotation_done = (tmp_path / "resnet18/rotation/seed0/result.json").stat().st_mtime
    config = json.loads((tmp_path / "resnet18/layer4-from-rotation/seed0/config.json").read_text())
    assert config["init_weights"].endswith("rotation/seed0/model.safetensors")
    assert (tmp_path / "resnet18/layer4-from-rotation/seed0/config.json").stat().st_mtime >= rotation_done
    assert len(list((tmp_path / "logs").glob("*.log"))) == 3
    assert "| full-from-random | resnet18 |" in (tmp_path / "report.md").read_text()
    out = capsys.readouterr().out  # each child's epoch lines, named by run, before its result
    for e in three:
        assert out.index(f"   resnet18/{e}/seed0 epoch 1/") < out.index(f"== resnet18/{e}/seed0: done")
    # each job's time left on its epoch lines, and the plan's as runs finish (the main job said neither)
    assert "   resnet18/rotation/seed0 epoch 1/2: " in out and out.split("resnet18/rotation/seed0 epoch 1/2: ")[
        1
    ].split("\n")[0].endswith(" left")
    done_lines = [line for line in out.splitlines() if line.startswith("== resnet18/") and ": done" in line]
    assert "; 1 of 3 runs done, about " in done_lines[0] and done_lines[0].endswith(" left in the plan")
    assert "runs done" not in done_lines[-1]  # the last one: nothing left to estimate


def test_jobs_give_a_partial_run_the_cores_it_started_on(tmp_path, fake_root, monkeypatch, capsys):
    """A resumed run keeps its thread count (bit-exact resume), so a rotation run that started on 2 threads resumes
    alone on both cores, and the one-thread jobs start after it, rather than 3 threads on 2 cores."""
    import torch

    from rotnet import plan
    from rotnet.config import DataOptions
    from rotnet.datasets import load_for
    from rotnet.errors import Interrupted
    from rotnet.lifecycle import RunContext
    from rotnet.protocol import Protocol
    from rotnet.run import run
    from rotnet.runtime import cpu_threads
    from rotnet.signals import StopFlag

    cfg = Protocol(TINY_PRESET).resolve("rotation")
    with cpu_threads(2), pytest.raises(Interrupted):  # a stop requested from the start: one step, a checkpoint
        run(
            cfg,
            load_for(cfg, DataOptions(fake_root, False)),
            RunContext(torch.device("cpu"), tmp_path, stop=StopFlag(True)),
        )
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(plan, "PARALLEL_MIN_WORK", 0)
    assert main(reproduce(tmp_path, fake_root, "--experiments", "rotation,full-from-random", jobs=None)) == 0
    out = capsys.readouterr().out
    assert "== started resnet18/rotation/seed0 on cpu (2 threads)" in out
    assert "== started resnet18/full-from-random/seed0 on cpu (1 thread)" in out, out
    assert out.index("== resnet18/rotation/seed0: done") < out.index("== started resnet18/full-from-random/")
    record = json.loads((tmp_path / "resnet18/rotation/seed0/config.json").read_text())
    assert record["device_name"].endswith("(2 threads)") and len(record["resumes"]) == 1


def test_a_job_file_carries_every_option_its_run_uses(tmp_path):
    """A child job rebuilt its runtime from the file key by key: an option added to one side only was ignored."""
    import torch

    from rotnet.config import DataOptions, RunConfig
    from rotnet.jobs import job_options, write_job
    from rotnet.layout import read_json
    from rotnet.lifecycle import RunOptions
    from rotnet.plan import PlanOptions
    from rotnet.signals import StopFlag

    data = DataOptions(tmp_path / "data", False, tmp_path / "cache", True)
    run_options = RunOptions(7, 2.5, 3, (2, 5), ("csv", "tensorboard"), True, deterministic=False)
    assert all(
        getattr(run_options, f.name) != getattr(RunOptions(), f.name) for f in fields(RunOptions)
    )  # every field travels
    options = PlanOptions(tmp_path, data=data, run_options=run_options, command="rotnet reproduce --x")
    write_job(tmp_path / "job.json", RunConfig(), None, options, "cpu")
    back = job_options(read_json(tmp_path / "job.json"))
    stop, cpu = StopFlag(), torch.device("cpu")
    assert back.context(cpu, None, stop) == options.context(cpu, None, stop) and back.data == options.data


def test_restart_reaches_the_jobs(tiny_runs, tmp_path, fake_root, capsys):
    two = ("--experiments", "rotation,full-from-random")
    assert main(reproduce(with_rotation(tiny_runs, tmp_path), fake_root, *two)) == 0
    assert main(reproduce(tmp_path, fake_root, *two, "--restart", jobs="2")) == 0
    for e in ("rotation", "full-from-random"):  # each run kept aside and trained again, none reused
        assert (tmp_path / "resnet18" / e / "seed0.old1/result.json").is_file()
        assert (tmp_path / "resnet18" / e / "seed0/result.json").is_file()


def lock_pids(root) -> list[int]:
    return [int(p.read_text()) for p in root.glob("*/*/seed*/.lock") if p.read_text().strip()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (Path(f"/proc/{pid}/stat").read_text().split()[2]) != "Z"


def start_jobs(root, data):
    """reproduce --jobs 2 with runs long enough to be caught training; returns the parent and the children's pids."""
    cmd = [sys.executable, "-m", "rotnet", *reproduce(root, data, "--jobs", "2"), "--epochs", "400"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 120
    while len(lock_pids(root)) < 2 or not all(alive(p) for p in lock_pids(root)):
        assert time.time() < deadline and proc.poll() is None, "the jobs never started"
        time.sleep(0.2)
    wait_for("resnet18/rotation/seed0/metrics.jsonl", root, proc)
    return proc, lock_pids(root)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_to_reproduce_jobs_stops_every_child_and_reports_what_did_not_run(tmp_path, fake_root, sig, code):
    proc, children = start_jobs(tmp_path, fake_root)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, out
    assert "not run" in out
    assert not any(alive(p) for p in children)
    outcome = json.loads((tmp_path / "reproduce.json").read_text())["outcome"]
    assert not any(v.startswith("done") for v in outcome.values())


def test_children_die_with_a_killed_parent(tmp_path, fake_root):
    proc, children = start_jobs(tmp_path, fake_root)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 60
    while any(alive(p) for p in children):
        assert time.time() < deadline, "an orphan kept training"
        time.sleep(0.2)


@pytest.mark.parametrize("planted", ["logs", "logs/resnet18_rotation_seed0.log"])  # a job file: test_files' places
def test_the_jobs_logs_and_job_files_are_written_through_no_link(tmp_path, fake_root, planted, capsys):
    """A link planted in the runs root at logs/, or at a job's log, received what the jobs wrote, outside the folder
    the user named: now such a link is refused, naming it, and nothing is written outside (a link at a job file's
    name is replaced, as at every file rotnet writes whole: test_files' places)."""
    root, outside = tmp_path / "runs", tmp_path / "outside"
    outside.mkdir()
    (outside / "resnet18_rotation_seed0.log").write_text("theirs")
    (outside / "resnet18_rotation_seed0.job.json").write_text("theirs")
    link = root / planted
    link.parent.mkdir(parents=True)
    link.symlink_to(outside if planted == "logs" else outside / link.name)
    before = {p.name: p.read_text() for p in outside.iterdir()}
    code = main(reproduce(root, fake_root, "--experiments", "rotation", jobs="2"))
    assert {p.name: p.read_text() for p in outside.iterdir()} == before
    assert code == 2 and f"{link} is a link rotnet did not make" in capsys.readouterr().err
