"""Loggers (rotnet.loggers): TensorBoard, CSV and W&B hold the logged scalars, from a finished run's record too; a
missing package named before the data loads."""

import json
import shutil

import pytest

from rotnet.cli import main
from tests.helpers import cli, metrics


def killed_then_resumed(monkeypatch, tmp_path, fake_root, epochs: int, step: int, first: list, then: list) -> None:
    """`train rotation` (4 steps an epoch, a checkpoint after every third step of an epoch) killed inside its `step`-th
    step with `first` flags, then resumed to the end with `then`."""
    import rotnet.loop

    args = ["--epochs", str(epochs), "--batch-size", "20", "--set", "eval_batch_size=64", "--checkpoint-every", "3"]
    args += ["--runs-root", str(tmp_path), "--data-root", str(fake_root)]
    real, calls = rotnet.loop.train_step, []

    def dies(*a, **kw):
        calls.append(1)
        if len(calls) == step:
            raise MemoryError("killed")
        return real(*a, **kw)

    monkeypatch.setattr(rotnet.loop, "train_step", dies)
    with pytest.raises(MemoryError):
        main(["train", "rotation", *args, *first])
    monkeypatch.setattr(rotnet.loop, "train_step", real)
    assert main(["train", "rotation", *args, *then]) == 0


def fake_wandb(monkeypatch, init) -> None:
    """A stand-in wandb module whose init is `init` (wandb is not a test dependency)."""
    import importlib.machinery
    import sys
    import types

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = init
    monkeypatch.setitem(sys.modules, "wandb", fake)


def test_tensorboard_and_csv_hold_the_logged_scalars(tmp_path, fake_root, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import rotnet.loop

    monkeypatch.setattr(rotnet.loop, "SYNC_EVERY", 4)  # the step loss is logged at each flag read: steps 4 and 8
    args = ["--epochs", "2", "--batch-size", "20", "--set", "eval_batch_size=64"]  # 4 steps an epoch
    args += ["--logger", "tensorboard", "--logger", "csv", "--runs-root", str(tmp_path), "--data-root", str(fake_root)]
    assert main(["train", "rotation", *args]) == 0
    folder = tmp_path / "resnet18/rotation/seed0"
    history = metrics(folder)
    events = EventAccumulator(str(folder / "tensorboard")).Reload()
    for key in ("train_loss", "train_acc", "test_acc", "lr", "images_per_s", "epoch"):
        logged = [(e.step, e.value) for e in events.Scalars(f"epoch/{key}")]
        assert logged == [(4 * r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in history], key
    assert [e.step for e in events.Scalars("step/loss")] == [4, 8]
    rows = (folder / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,lr,train_loss") and len(rows) == 1 + len(history)


def test_tensorboard_shows_a_crashed_and_resumed_run_once(tmp_path, fake_root, monkeypatch):
    """A run killed mid-epoch trains again from its last checkpoint: TensorBoard showed the steps and the epoch end
    logged after that checkpoint twice, once from each life. Now a resumed writer's purge step drops the earlier
    life's points from there on, on every tag; steps and epochs share the step axis so that one purge covers both."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import rotnet.loop

    monkeypatch.setattr(rotnet.loop, "SYNC_EVERY", 1)  # a step point at every step
    # checkpoints after steps 3 and 7, killed in step 10: steps 8, 9 and epoch 2's end run again
    killed_then_resumed(
        monkeypatch, tmp_path, fake_root, 3, 10, ["--logger", "tensorboard"], ["--logger", "tensorboard"]
    )
    folder = tmp_path / "resnet18/rotation/seed0"
    events = EventAccumulator(str(folder / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("step/loss")] == list(range(1, 13))
    assert [e.step for e in events.Scalars("epoch/test_acc")] == [4, 8, 12]
    history = metrics(folder)
    assert [e.value for e in events.Scalars("epoch/train_loss")] == [pytest.approx(r["train_loss"]) for r in history]
    assert len(events.Tensors("config/text_summary")) == 1


def test_tensorboard_asked_first_of_a_resumed_run_has_its_configuration(tmp_path, fake_root, monkeypatch):
    """`--logger tensorboard` first given when a stopped run resumes: its configuration is written all the same."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    killed_then_resumed(monkeypatch, tmp_path, fake_root, 2, 5, [], ["--logger", "tensorboard"])
    events = EventAccumulator(str(tmp_path / "resnet18/rotation/seed0/tensorboard")).Reload()
    assert len(events.Tensors("config/text_summary")) == 1
    assert [e.step for e in events.Scalars("epoch/test_acc")] == [4, 8]  # resumed after step 3


def test_a_crashed_and_resumed_run_goes_on_in_one_wandb_run_at_its_steps(tmp_path, fake_root, monkeypatch):
    """Each life of a resumed run was a new W&B run (resume="allow" without an id starts one) with points at W&B's own
    counter: now the id the first life got is passed again, and every point names its training step (epochs at the
    step they ended), so that W&B drops the repeats of the steps after the checkpoint. A stand-in for wandb records
    the calls (wandb is not a test dependency)."""
    import rotnet.loop

    inits, logged = [], []

    class Run:
        def __init__(self, **kw):
            self.id, self.summary = kw.get("id") or f"id{len(inits)}", {}
            inits.append(kw)

        def log(self, data, step=None):
            logged.append((len(inits), step, sorted(data)))

        def finish(self):
            pass

    fake_wandb(monkeypatch, lambda **kw: Run(**kw))
    monkeypatch.setattr(rotnet.loop, "SYNC_EVERY", 1)
    killed_then_resumed(monkeypatch, tmp_path, fake_root, 3, 10, ["--logger", "wandb"], ["--logger", "wandb"])
    assert [(kw["id"], kw["resume"]) for kw in inits] == [(None, None), ("id0", "allow")]
    assert (tmp_path / "resnet18/rotation/seed0/wandb/rotnet-run-id").read_text() == "id0\n"
    steps = [(life, step) for life, step, keys in logged if "step/loss" in keys]
    assert steps == [(1, s) for s in range(1, 10)] + [(2, s) for s in range(8, 13)]
    epochs = [(life, step) for life, step, keys in logged if "epoch/test_acc" in keys]
    assert epochs == [(1, 4), (1, 8), (2, 8), (2, 12)]  # W&B keeps the first of each step


WRITTEN = [("tensorboard", "tensorboard", "folder"), ("csv", "metrics.csv", "file"), ("wandb", "wandb", "folder")]


@pytest.mark.parametrize("finished", [False, True])
@pytest.mark.parametrize(("logger", "written", "kind"), WRITTEN)
def test_a_file_where_a_logger_writes_its_folder_or_the_other_way_round_is_one_line(
    tmp_path, fake_root, tiny_runs, monkeypatch, capsys, logger, written, kind, finished
):
    """RUN/tensorboard as a file said "File exists: ..." after the run's record was written (and a finished run's
    replay took it for the logs); a folder named metrics.csv failed at the first epoch's end, after it trained."""
    if logger == "wandb":
        fake_wandb(monkeypatch, lambda **kw: pytest.fail("wandb.init called"))
    folder = tmp_path / "resnet18/rotation/seed0"
    if finished:
        shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / written).mkdir() if kind == "file" else (folder / written).write_text("notes\n")
    code = cli("train", "rotation", "--logger", logger, root=tmp_path, data=fake_root)
    err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("rotnet: warning")]
    if finished and logger == "wandb":  # nothing is sent for a finished run, so nothing is in its way
        assert code == 0 and err == []
        return
    other = "file" if kind == "folder" else "folder"
    assert code == 2 and err == [
        f"rotnet: error: {folder / written} is a {other}; move it away: --logger {logger} writes its {kind} there"
    ]
    assert not (folder / "metrics.jsonl").exists() or finished


def test_loggers_asked_of_a_finished_run_are_written_from_its_record(tiny_runs, tmp_path, fake_root, capsys):
    """`--logger tensorboard` (or csv) on a finished run writes the logs from its record."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    folder = tmp_path / "resnet18/rotation/seed0"
    assert cli("train", "rotation", "--logger", "tensorboard", "--logger", "csv", root=tmp_path, data=fake_root) == 0
    assert (
        "already finished; reusing it; wrote its tensorboard and csv logs from metrics.jsonl" in capsys.readouterr().out
    )
    history = metrics(folder)
    events = EventAccumulator(str(folder / "tensorboard")).Reload()
    logged = [(e.step, e.value) for e in events.Scalars("epoch/test_acc")]
    steps = -(-json.loads((folder / "result.json").read_text())["train_images"] // 32)  # TINY's batch size
    assert logged == [(steps * r["epoch"], pytest.approx(r["test_acc"], rel=1e-6)) for r in history]
    assert len((folder / "metrics.csv").read_text().splitlines()) == 1 + len(history)
    assert cli("train", "rotation", "--logger", "csv", root=tmp_path, data=fake_root) == 0  # once, not again
    assert capsys.readouterr().out.rstrip().endswith("already finished; reusing it")


def test_wandb_asked_of_a_finished_run_reuses_it_and_says_nothing_was_sent(
    tiny_runs, tmp_path, fake_root, monkeypatch, capsys
):
    """A plan that reuses a finished run failed it for `--logger wandb` (exit 2), though nothing needed sending."""
    import rotnet.lifecycle

    monkeypatch.setattr(rotnet.lifecycle, "require_logger", lambda name: None)  # as where wandb is installed
    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    assert cli("train", "rotation", "--logger", "wandb", root=tmp_path, data=fake_root) == 0
    assert "reusing it; not sent to W&B, which takes a run while it trains" in capsys.readouterr().out


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_a_missing_logger_package_is_named_before_the_data_loads(tmp_path, fake_root, monkeypatch, capsys, logger):
    """A missing wandb or tensorboard package is named before the data loads, and no run folder is left."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == logger else real(name, *a))
    assert cli("train", "rotation", "--logger", logger, root=tmp_path / "runs", data=fake_root) == 2
    captured = capsys.readouterr()
    assert f"pip install 'rotnet[{logger}]'" in captured.err and captured.err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_the_csv_holds_every_epoch_record_and_every_column(tmp_path, fake_root):
    """metrics.csv is metrics.jsonl as a table: a column that first appears after epoch 1 (test accuracy with
    eval_every 2) is there, and each epoch has one row (the file is rewritten from the run's history, so a resume
    from an earlier checkpoint repeats none)."""
    import csv

    args = ["--epochs", "2", "--set", "eval_every=2", "--logger", "csv"]
    assert main(["train", "rotation", *args, "--runs-root", str(tmp_path), "--data-root", str(fake_root)]) == 0
    folder = tmp_path / "resnet18/rotation/seed0"
    history = metrics(folder)
    assert "test_acc" not in history[0] or history[0]["test_acc"] is None  # the case this test is about
    rows = list(csv.DictReader((folder / "metrics.csv").open()))
    assert len(rows) == len(history)
    for row, record in zip(rows, history, strict=True):
        numbers = {k: v for k, v in record.items() if isinstance(v, int | float)}
        assert {k: float(row[k]) for k in numbers} == pytest.approx(numbers) and "test_acc" in row


def test_the_command_line_offers_exactly_the_loggers_there_are():
    import argparse

    from rotnet.flags import build_parser
    from rotnet.loggers import LOGGERS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    offered = next(a.choices for a in sub.choices["train"]._actions if "--logger" in a.option_strings)
    assert tuple(offered) == LOGGERS
