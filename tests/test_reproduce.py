import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import matplotlib.image
import pytest

from rotnet.cli import main
from rotnet.experiments import EXPERIMENTS, plan, reference_results
from tests.helpers import TINY_PRESET, reproduce, reseal, wait_for, with_rotation


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


def test_reproduce_writes_a_report_with_every_row(reproduced):
    report = (reproduced / "report.md").read_text()
    for e in EXPERIMENTS:
        assert f"| {e} | resnet18 |" in report
    results = json.loads((reproduced / "results.json").read_text())
    rows = {(r["experiment"], r["arch"]): r for r in results["rows"]}
    for e in EXPERIMENTS:
        assert rows[(e, "resnet18")]["n"] == 2 and rows[(e, "resnet18")]["status"] == "ok"
    assert ("rotation", "resnet34") not in rows  # a ResNet18 plan: the reference's deeper rows are not its rows
    for png in ("curves", "seed_vs_rotnet", "confusion", "rotation_examples"):
        image = matplotlib.image.imread(reproduced / "plots" / f"{png}.png")
        assert image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0.05  # a figure, not a blank
        assert f"plots/{png}.png" in report
    assert (reproduced / "results.csv").read_text().startswith("experiment,arch,data,reference")
    assert "## Provenance" in report and "differ from the official (warned)" in report


def test_report_marks_missing_and_partial_runs(reproduced, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(reproduced, root)
    shutil.rmtree(root / "resnet18/full-from-random/seed1")  # missing
    (root / "resnet18/layer4-from-random/seed1/result.json").unlink()  # partial: metrics but no result
    lines = (root / "resnet18/layer4-from-random/seed1/metrics.jsonl").read_text().splitlines()
    (root / "resnet18/layer4-from-random/seed1/metrics.jsonl").write_text(lines[0][:20])  # torn too
    (root / "resnet18/full-from-rotation/seed0/result.json").unlink()
    (root / "resnet18/full-from-rotation/seed0/failed.json").write_text('{"error": "non-finite loss"}')
    for folder in ("layer4-from-random/seed1", "full-from-rotation/seed0"):  # records as such runs leave them
        reseal(root / "resnet18" / folder)
    assert main(["report", str(root)]) == 0
    rows = {(r["experiment"], r["arch"]): r for r in json.loads((root / "results.json").read_text())["rows"]}
    assert rows[("full-from-random", "resnet18")]["status"] == "seed 1 not run"
    assert rows[("full-from-random", "resnet18")]["n"] == 1
    assert rows[("layer4-from-random", "resnet18")]["status"].startswith("seed 1 started")
    assert "seed 0 failed: non-finite loss" in rows[("full-from-rotation", "resnet18")]["status"]
    assert "| seed 1 not run |" in (root / "report.md").read_text()


def test_report_on_a_missing_folder_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "runs folder not found" in capsys.readouterr().err


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


def test_two_jobs_by_default_only_on_a_multicore_cpu_for_long_runs_that_can_go_together(monkeypatch):
    import torch

    from rotnet.experiments import Protocol
    from rotnet.plan import PARALLEL_MIN_WORK, PlanOptions, auto_jobs
    from rotnet.runner import source_for

    def jobs(experiments, device="cpu", cores=2, work=PARALLEL_MIN_WORK):
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
        protocol = Protocol(TINY_PRESET)
        configs = [protocol.resolve(e, arch=a, seed=s) for a, s, e in plan(["resnet18"], [0], experiments)]
        options = PlanOptions(Path("runs"), protocol)
        return auto_jobs(torch.device(device), [(c, source_for(c, options)) for c in configs], [work] * len(configs))

    assert jobs([]) == 2  # rotation beside the from-random runs, then the two from-rotation runs together
    assert jobs(["layer4-from-rotation", "full-from-rotation"]) == 2
    assert jobs(["rotation", "full-from-random"]) == 2
    assert jobs(["rotation"]) == 1 and jobs(["full-from-rotation"]) == 1  # the second waits for the first
    assert jobs([], cores=1) == 1 and jobs([], device="cuda") == 1
    assert jobs([], work=PARALLEL_MIN_WORK - 1) == 1  # short runs: start-up costs more than a second process saves
    assert auto_jobs(torch.device("cpu"), [], []) == 1  # nothing left to train


def test_a_partial_run_resumes_on_the_threads_it_recorded(tmp_path):
    from rotnet.checks import resume_threads

    folder = tmp_path / "resnet18/rotation/seed0"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"config": {}, "device_name": "x86_64 (2 threads)"}))
    assert resume_threads(folder) is None  # no checkpoint yet: it starts over on any count
    (folder / "checkpoints/e0001-s000000.safetensors").write_bytes(b"")
    assert resume_threads(folder) == 2
    (folder / "result.json").write_text("{}")
    assert resume_threads(folder) is None  # finished: reused, not resumed, so it holds no cores


def test_jobs_give_a_partial_run_the_cores_it_started_on(tmp_path, fake_root, monkeypatch, capsys):
    """A resumed run keeps its thread count (bit-exact resume), so a rotation run that started on 2 threads resumes
    alone on both cores, and the one-thread jobs start after it, rather than 3 threads on 2 cores."""
    import torch

    from rotnet import plan
    from rotnet.config import DataOptions
    from rotnet.datasets import load_for
    from rotnet.errors import Interrupted
    from rotnet.experiments import Protocol
    from rotnet.lifecycle import RunContext
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


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_rotation_run_another_process_holds_is_not_run_not_failed(tmp_path, fake_root, jobs):
    """Another process trains the rotation run: this plan leaves it (and its transfer runs) as not run, writes
    nothing into its folder and exits non-zero; the runs that do not need it are trained."""
    from rotnet.layout import RunLock

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
    from rotnet.layout import RunLock

    two = ("--experiments", "rotation,full-from-rotation")
    with_rotation(tiny_runs, tmp_path)
    folder = tmp_path / "resnet18/full-from-rotation/seed0"
    folder.mkdir(parents=True)
    with RunLock(folder):
        assert main(reproduce(tmp_path, fake_root, *two)) == 1
    said = json.loads((tmp_path / "reproduce.json").read_text())["outcome"]["resnet18/full-from-rotation/seed0"]
    assert said.startswith("not run:") and "in use" in said
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]


def test_a_transfer_run_is_not_reused_beside_other_rotation_weights(reproduced, fake_root, capsys):
    """The rotation run was trained again into other weights (here: its own with one tensor changed, the same
    protocol); the finished full-from-rotation run came from the old ones, so its number no longer belongs beside
    the rotation run: reproduce and train refuse to reuse it, before anything trains, and say how to train it again."""
    from rotnet.checkpoint import load_tensors, save_tensors

    weights = reproduced / "resnet18/rotation/seed0/model.safetensors"
    result = reproduced / "resnet18/full-from-rotation/seed0/result.json"
    original, before = weights.read_bytes(), result.read_text()
    tensors, meta = load_tensors(weights)
    save_tensors(weights, tensors | {"fc.bias": tensors["fc.bias"] + 1}, meta)
    reseal(weights.parent)  # a record of its own, as training it again would leave
    capsys.readouterr()
    try:
        train = ["train", "full-from-rotation", *reproduce(reproduced, fake_root, jobs=None)[1:]]
        for command in (reproduce(reproduced, fake_root, "--seeds", "0,1"), train):
            assert main(command) == 2
            err = capsys.readouterr().err
            assert "was trained from other rotation weights" in err and "-from-rotation --restart" in err
        assert result.read_text() == before
    finally:
        weights.write_bytes(original)  # the module's other tests share these runs
        reseal(weights.parent)


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


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
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


def test_the_plan_eta_counts_the_work_left_at_the_pace_of_runs_that_trained():
    from rotnet.plan import Eta

    eta = Eta([100, 100, 200])
    assert eta.text(0) == ""  # nothing trained yet: no guess
    eta.done(0, 0.5)  # a reused run (under a second) says nothing about the pace
    assert eta.text(1) == ""
    eta.done(1, 600.0)  # 100 units in 10 minutes; 200 units left
    assert eta.text(2) == "; about 20 min left in the plan"
