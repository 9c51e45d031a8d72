"""Ctrl-C, SIGTERM and SIGHUP (rotnet.signals): one line at any moment of start-up, a checkpoint when there is work
to keep, ignored signals left ignored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from rotnet.cli import main
from tests.helpers import (
    TINY,
    cli,
    error_line,
    partial,
    wait_for,
)


def test_a_second_ctrl_c_before_any_run_began_exits_130_not_2(tmp_path, fake_root, monkeypatch, capsys):
    from rotnet import runner

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_in_turn", interrupted)
    assert cli("reproduce", "--experiments", "rotation", "--jobs", "1", root=tmp_path, data=fake_root) == 130
    assert "holds no rotnet runs" not in capsys.readouterr().err


def start(tmp_path, fake_root, *extra):
    args = ["--runs-root", str(tmp_path), "--data-root", str(fake_root), "--no-download", *TINY, *extra]
    cmd = [sys.executable, "-m", "rotnet", "train", "rotation", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigint_after_start_up_is_one_line(tmp_path, fake_root):
    """Two seconds in: the data loading or the first steps (a Ctrl-C while torch imports is the test below)."""
    proc = start(tmp_path, fake_root, "--epochs", "500")  # never done before the signal
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)  # a Ctrl-C in torch's import is held until it ends: 40 s on a busy CPU
    assert proc.returncode == 130, err
    said = [line for line in err.splitlines() if not line.startswith("rotnet: warning")]  # the fake data warns
    assert len(said) == 1 and said[0].startswith("rotnet: stopped"), err


@pytest.mark.parametrize("presses", [1, 2])
def test_sigint_while_torch_imports_is_one_line(tmp_path, fake_root, presses):
    """A Ctrl-C while torch imports (where C++ calls Python) is held until torch has loaded, then stops in one line;
    a second Ctrl-C stops at once."""
    args = ["--runs-root", str(tmp_path), "--data-root", str(fake_root), "--no-download", *TINY]
    cmd = [sys.executable, "-X", "importtime", "-m", "rotnet", "train", "rotation", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:  # -X importtime prints a line as each module finishes: a torch submodule is done,
        lines.append(line)  # so torch's own __init__ is still running
        if line.rsplit("|", 1)[-1].strip().startswith("torch."):
            for _ in range(presses):
                proc.send_signal(signal.SIGINT)
                time.sleep(0.1)
            break
    err = "".join(lines) + proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    said = [line for line in err.splitlines() if line.startswith("rotnet:")]
    at_once = ", before anything was written" if presses == 2 else "; checkpoints already written are kept"
    assert said == [f"rotnet: stopped at once{at_once}"], said
    assert "Traceback" not in err and "terminate called" not in err


def test_ctrl_c_in_verify_does_not_speak_of_checkpoints(monkeypatch, tmp_path, capsys):
    """A Ctrl-C in verify, which writes nothing, says only that it stopped."""
    import rotnet.verify

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rotnet.verify, "verify", interrupted)
    assert main(["verify", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "rotnet: stopped at once"


def test_signals_held_while_torch_loads_arrive_after():
    from rotnet.signals import signals_held

    reached = []
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # Python runs a handler between bytecodes: the default one would have raised by now
            reached.append(True)
    assert reached and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_double_sigint_within_50ms_is_one_line(tmp_path, fake_root):
    proc = start(tmp_path, fake_root, "--epochs", "500")

    wait_for("resnet18/rotation/seed0/metrics.jsonl", tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if not line.startswith("rotnet: warning")]  # the fake data warns
    assert len(lines) == 1 and lines[0].startswith("rotnet: "), err


def test_stop_signals_the_process_was_started_ignoring_stay_ignored():
    """A rotnet started with Ctrl-C ignored (a shell's background job `cmd &`) keeps ignoring it, while preparing,
    training, and after torch loaded."""
    from rotnet.signals import StopFlag, raise_on_stop, signals_held, stop_handlers

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stop = StopFlag()
        for block in (signals_held(), stop_handlers(stop), raise_on_stop("stopped")):
            with block:
                assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert not stop.requested
    finally:
        signal.signal(signal.SIGINT, before)


def sigint_at_final_outputs(monkeypatch):
    """Ctrl-C once the last step is done, as the first run's weights are written."""
    import rotnet.run

    real, sent = rotnet.run.weights_meta, []

    def meta_then_ctrl_c(*a, **kw):
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))
        return real(*a, **kw)

    monkeypatch.setattr(rotnet.run, "weights_meta", meta_then_ctrl_c)


def test_ctrl_c_after_the_last_step_finishes_the_run_and_stops(capsys, monkeypatch, tmp_path, fake_root):
    """A Ctrl-C after a run's last step keeps the finished run whole and stops the command with 130 (`a && b` does
    not go on; reproduce starts no next run)."""
    sigint_at_final_outputs(monkeypatch)
    line = error_line(capsys, "train", "rotation", root=tmp_path / "one", data=fake_root, code=130)
    folder = tmp_path / "one/resnet18/rotation/seed0"
    assert line == f"rotnet: stopped after the last step; {folder} finished"
    assert (folder / "result.json").is_file()

    sigint_at_final_outputs(monkeypatch)
    root = tmp_path / "plan"
    argv = ["--runs-root", str(root), "--data-root", str(fake_root), "--no-download", "--jobs", "1", *TINY]
    assert main(["reproduce", *argv]) == 130
    assert (root / "resnet18/rotation/seed0/result.json").is_file()
    assert sorted(p.name for p in (root / "resnet18").iterdir()) == ["rotation"]  # no other run began
    assert "stopped; 4 of 5 runs not finished" in capsys.readouterr().err


def test_a_run_started_with_ctrl_c_ignored_trains_through_it(monkeypatch, tmp_path, fake_root):
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert partial("train", "rotation", root=tmp_path, data=fake_root, monkeypatch=monkeypatch) == 0
    finally:
        signal.signal(signal.SIGINT, before)
    assert (tmp_path / "resnet18/rotation/seed0/result.json").is_file()
